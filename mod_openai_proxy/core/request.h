/* JSON request bodies: validation, defaults and the limits the proxy writes
 * into them (core: APR + jansson). */
#ifndef OAIP_REQUEST_H
#define OAIP_REQUEST_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>

#include "core/errors.h"
#include "core/model_family.h"

/* One OpenAIProxyDefault: `json` is the value's JSON text, or NULL when the
 * operator removed the default with "none". */
typedef struct {
    const char *name;
    const char *json;
} oaip_default;

/* A validated JSON request body, for any JSON endpoint, and what the
 * handler needs to know about it. */
typedef struct {
    const char *body; /* the body to send upstream */
    apr_size_t body_len;
    int stream;               /* "stream": true after defaults */
    const char *model;        /* after defaults; NULL when not a string */
    int usage_added;          /* the proxy asked for the stream's usage chunk */
    int has_stream_options;   /* the body has stream_options (client's or default) */
    oaip_model_family family; /* of `model` */
    /* the top-level fields the proxy put in that the client did not send
     * (const char *: defaults, the cap written where none was named,
     * stream_options); only these may ever be taken back */
    apr_array_header_t *added;
} oaip_json_request;

/* The fields the proxy would add that an upstream is known to refuse
 * (OpenAIProxyDefault values, token limit fields), asked per model (NULL:
 * the request's model is not a string) and field. */
typedef struct {
    int (*refused)(void *ctx, const char *model, const char *field);
    void *ctx;
} oaip_refused_fields;

/* Validates a client body and applies defaults, each only where the client
 * did not send the field: the built-in ones as overridden or removed by
 * `configured` (an array of oaip_default, later entries win). The
 * built-ins depend on the model's family (after a model default): model
 * gpt-3.5-turbo and stream false for all; temperature 0.7 and max_tokens
 * 1000 for chat models; no temperature and max_completion_tokens 1000 for
 * reasoning models. One token limit at most is added, in the field the
 * family takes (a configured max_tokens goes as max_completion_tokens to a
 * reasoning model), and none when the client named either. `refused` (may
 * be NULL) leaves out the defaults an upstream refuses (never model or
 * stream) and moves the token limit to the other field when only its own
 * is refused. The client's own bytes are kept as they are; the defaults
 * are appended to the object. On failure returns the error kind and sets
 * *detail to a sentence for the client. */
int oaip_json_request_prepare_chat(apr_pool_t *p, const char *body, apr_size_t len,
                                   const apr_array_header_t *configured,
                                   const oaip_refused_fields *refused,
                                   oaip_json_request *out, oaip_error_kind *kind,
                                   const char **detail);

/* The field OpenAIProxyMaxTokens writes into a request that names no
 * limit: for an endpoint whose field is max_tokens (chat, completions),
 * the one the model's family takes, or the other when only that one is
 * `refused`; any other endpoint field as it is (NULL stays NULL). */
const char *oaip_json_request_limit_field(const oaip_json_request *req,
                                          const char *endpoint_field,
                                          const oaip_refused_fields *refused);

/* Which of `candidates` (const char *) an upstream's error answer names
 * as the cause: its error's "param" when that is a string (also
 * "name.sub" or "name[0]" for name), else a whole-word mention in its
 * message (error.message, an error string, message, a FastAPI detail's
 * loc or msg) or, for a body that is not JSON, in its text. A new array,
 * empty when none is named. */
apr_array_header_t *oaip_refusal_names(apr_pool_t *p, const char *body, apr_size_t len,
                                       const apr_array_header_t *candidates);

/* Checks a body for an endpoint other than Chat Completions: a JSON object,
 * forwarded as it is. Notes its model (NULL when not a string) and its
 * "stream": true (on any endpoint: an upstream may stream what the proxy
 * does not know to stream). Same errors as for chat, without the messages
 * check. */
int oaip_json_request_prepare(apr_pool_t *p, const char *body, apr_size_t len,
                              oaip_json_request *out, oaip_error_kind *kind,
                              const char **detail);

/* OpenAIProxyMaxTokens: lowers max_tokens, max_completion_tokens and
 * max_output_tokens of a prepared request (client's or default) to `cap`
 * where they are larger or null; when none is present and `missing_field`
 * is not NULL (an endpoint whose upstream default is "no limit"), writes
 * the cap there (noted in `added`). The body is re-encoded only when it
 * changes. Returns 1 when it did. */
int oaip_json_request_cap_tokens(apr_pool_t *p, oaip_json_request *req, json_int_t cap,
                                 const char *missing_field);

/* For a stream request: asks the upstream for the usage chunk
 * (stream_options.include_usage) when the client did not, whatever its
 * stream_options said (absent, null, include_usage false or null). Returns
 * 1 when it added it, so that the relay hides that chunk from the client.
 * A stream_options member the proxy appends is noted in `added`; the
 * client's own, changed or not, is not. */
int oaip_json_request_ask_usage(apr_pool_t *p, oaip_json_request *req);

/* Parses an OpenAIProxyDefault value: JSON, or a bare word taken as a string
 * (so `OpenAIProxyDefault model gpt-4o-mini` works), or "none". Sets *json to
 * the JSON text (NULL for "none"). Returns NULL or an error sentence. */
const char *oaip_default_value_parse(apr_pool_t *p, const char *name, const char *value,
                                     const char **json);

/* Whether `model` (NULL: not a string) is in `allowed`, an array of model
 * names where a trailing '*' matches any rest ("gpt-4o*"). */
int oaip_model_allowed(const apr_array_header_t *allowed, const char *model);

/* Adds or replaces `name` in a defaults array (later directives override). */
void oaip_defaults_set(apr_array_header_t *defaults, const char *name, const char *json);

/* `base` overlaid with `add`, as a new array. */
apr_array_header_t *oaip_defaults_merge(apr_pool_t *p, const apr_array_header_t *base,
                                        const apr_array_header_t *add);

#endif
