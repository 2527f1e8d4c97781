/* Model families: which request fields a model takes, so that the fields
 * the proxy adds (OpenAIProxyDefault's built-ins, OpenAIProxyMaxTokens'
 * cap) are ones it accepts (core: the C library and APR only). */
#ifndef OAIP_MODEL_FAMILY_H
#define OAIP_MODEL_FAMILY_H

#include <apr.h>

typedef enum {
    /* gpt-3.5, gpt-4, gpt-4o, gpt-4.1, and any name the proxy does not
     * know (other vendors' models, Azure deployment names): they take
     * temperature and max_tokens */
    OAIP_FAMILY_CHAT,
    /* OpenAI's reasoning models: o1, o3, o4-mini, gpt-5 and later, their
     * -mini/-nano/-pro variants and dated names (o3-2025-04-16). They
     * refuse a temperature other than 1 and refuse max_tokens (they take
     * max_completion_tokens, which counts the reasoning tokens too) */
    OAIP_FAMILY_REASONING
} oaip_model_family;

/* The family of a model name; NULL (no model, or not a string) is
 * OAIP_FAMILY_CHAT. Case-insensitive; a fine-tune ("ft:o4-mini-...:org::id")
 * or a router's vendor prefix ("openai/o3") counts as its base model. */
oaip_model_family oaip_model_family_of(const char *model);

/* "chat" or "reasoning", for logs. */
const char *oaip_model_family_name(oaip_model_family family);

/* The Chat Completions field for an output token limit the proxy writes:
 * max_tokens (chat) or max_completion_tokens (reasoning). */
const char *oaip_model_family_limit_field(oaip_model_family family);

/* Whether `name` is one of the two Chat Completions token limits; the
 * other one is then *other. */
int oaip_chat_limit_field(const char *name, const char **other);

#endif
