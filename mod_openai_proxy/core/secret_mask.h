/* Masks secrets (the upstream key, the client's own key) in bytes relayed
 * from the upstream's error answers, which some APIs fill with the
 * credential they rejected, whole or in part (core: APR + standard C only).
 *
 * The rule, applied in place (the length never changes):
 * 1. Runs: every run of at least OAIP_MASK_RUN (8) consecutive bytes of
 *    the input that also occur consecutively in a secret (a prefix, a
 *    suffix, an inner piece, the whole) is overwritten with the mask byte;
 *    a secret shorter than 8 bytes is masked wherever it occurs whole.
 * 2. Around a redaction: a run of at least 3 bytes of '*', '.' or the mask
 *    byte is how APIs show a redacted key ("sk-abc1***...wxyz"); the
 *    secret's first 4 to 7 bytes right before such a run, and its last 4 to
 *    7 bytes right after it, are overwritten too.
 * The mask byte is '*', or another visible ASCII byte when a secret holds
 * '*' (so no masked output can ever spell out a piece of a secret again).
 * It is valid inside JSON strings, so a JSON body stays valid JSON. */
#ifndef OAIP_SECRET_MASK_H
#define OAIP_SECRET_MASK_H

#include <apr_pools.h>

/* The shortest run of a secret's bytes that rule 1 masks. */
#define OAIP_MASK_RUN 8
/* The shortest prefix or suffix next to a redaction that rule 2 masks. */
#define OAIP_MASK_AFFIX 4
/* An exchange has two keys at most (the configured one, the client's). */
#define OAIP_MASK_MAX_SECRETS 8

typedef struct oaip_secret_mask oaip_secret_mask;

oaip_secret_mask *oaip_secret_mask_make(apr_pool_t *p);

/* Adds a secret (NUL-terminated; NULL, "" and any past the
 * OAIP_MASK_MAX_SECRETS-th are ignored). The mask keeps a pointer to it: it
 * must live as long as the mask. */
void oaip_secret_mask_add(oaip_secret_mask *mask, const char *secret);

/* How many secrets were added. */
int oaip_secret_mask_count(const oaip_secret_mask *mask);

/* The byte masked bytes become. */
char oaip_secret_mask_byte(const oaip_secret_mask *mask);

/* The run length of rule 1 for a secret of `len` bytes: min(8, len). */
apr_size_t oaip_secret_mask_run(apr_size_t len);

/* Masks `len` bytes of `data` in place (any bytes, NULs included); returns
 * how many bytes it overwrote. */
apr_size_t oaip_secret_mask_apply(const oaip_secret_mask *mask, char *data,
                                  apr_size_t len);

/* A masked pool copy of a NUL-terminated string (NULL stays NULL). */
char *oaip_secret_mask_string(apr_pool_t *p, const oaip_secret_mask *mask,
                              const char *text);

#endif
