/* What upstreams refused of the fields the proxy adds to requests (a
 * default such as temperature or max_tokens, stream_options), remembered
 * for OAIP_REFUSAL_MEMORY_SECONDS in one small table of shared memory that
 * every process reads and writes without a lock, so that later requests
 * go without those fields in one attempt. Forgotten when httpd
 * (re)starts. */
#ifndef OAIP_REFUSAL_MEMORY_H
#define OAIP_REFUSAL_MEMORY_H

#include <httpd.h>

#define OAIP_REFUSAL_MEMORY_SECONDS 600
/* entries in the table: a full table remembers nothing more until an entry
 * expires (the requests then take their second attempt again) */
#define OAIP_REFUSAL_MEMORY_SLOTS 1024

/* post_config: the shared table. Without it (no shared memory), nothing
 * is remembered; requests still work. */
void oaip_refusal_memory_post_config(apr_pool_t *pconf, server_rec *s);

/* That the upstream `upstream` (a URL) refused `field` for `model` (NULL:
 * for every model of that upstream), from now on for
 * OAIP_REFUSAL_MEMORY_SECONDS. Returns 0 when the table had no room. */
int oaip_refusal_memory_remember(const char *upstream, const char *model,
                                 const char *field);

/* Whether that refusal is remembered and not yet expired. */
int oaip_refusal_memory_known(const char *upstream, const char *model, const char *field);

#endif
