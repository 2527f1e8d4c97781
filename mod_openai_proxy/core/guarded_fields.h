/* The request fields the proxy's limits read (token limits, stream,
 * stream_options, model): each must mean to the upstream what it means to
 * the proxy, whatever parser the upstream has (core: APR + jansson). */
#ifndef OAIP_GUARDED_FIELDS_H
#define OAIP_GUARDED_FIELDS_H

#include <apr_pools.h>
#include <jansson.h>

#include "core/errors.h"

/* Refuses (returns 0 with OAIP_ERR_BAD_REQUEST and a sentence) a body
 * object whose guarded fields a lenient upstream could read otherwise:
 * - max_tokens, max_completion_tokens, max_output_tokens, n and best_of
 *   that are not null or an integer of at least 1 (a string, a float, a
 *   negative "unlimited");
 * - stream that is not a boolean or null; stream_options that is not an
 *   object or null, or whose include_usage is not a boolean or null;
 * - a key that is not one of these names but that a case-insensitive
 *   parser takes for one ("MAX_TOKENS", "Stream", "model" with a Kelvin
 *   sign or a long s, as Go's encoding/json folds them), at the top level
 *   and inside stream_options.
 * Duplicate keys are refused by the parser itself (JSON_REJECT_DUPLICATES). */
int oaip_guarded_fields_check(apr_pool_t *p, json_t *object, oaip_error_kind *kind,
                              const char **detail);

/* Whether `key` is a look-alike of `name`: not equal, but equal once both
 * are case-folded the way lenient JSON decoders do. */
int oaip_guarded_lookalike(const char *key, apr_size_t key_len, const char *name);

#endif
