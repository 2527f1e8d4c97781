/* JSON request bodies: validation, defaults and the limits the proxy writes
 * into them (core: APR + jansson). */
#ifndef OAIP_REQUEST_H
#define OAIP_REQUEST_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>

#include "core/errors.h"

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
    int stream;             /* "stream": true after defaults */
    const char *model;      /* after defaults; NULL when not a string */
    int usage_added;        /* the proxy asked for the stream's usage chunk */
    int has_stream_options; /* the body has stream_options (client's or default) */
} oaip_json_request;

/* Validates a client body and applies defaults: the built-in ones (model,
 * temperature, max_tokens, stream) as overridden or removed by `configured`
 * (an array of oaip_default, later entries win), each only where the client
 * did not send the field. The client's own bytes are kept as they are; the
 * defaults are appended to the object. On failure returns the error kind and
 * sets *detail to a sentence for the client. */
int oaip_json_request_prepare_chat(apr_pool_t *p, const char *body, apr_size_t len,
                                   const apr_array_header_t *configured,
                                   oaip_json_request *out, oaip_error_kind *kind,
                                   const char **detail);

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
 * the cap there. The body is re-encoded only when it changes. Returns 1
 * when it did. */
int oaip_json_request_cap_tokens(apr_pool_t *p, oaip_json_request *req, json_int_t cap,
                                 const char *missing_field);

/* For a stream request: asks the upstream for the usage chunk
 * (stream_options.include_usage) when the client did not, whatever its
 * stream_options said (absent, null, include_usage false or null). Returns
 * 1 when it added it, so that the relay hides that chunk from the client. */
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
