#include "core/secret_mask.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include <string.h>

/* A window of up to 8 bytes is one 64-bit number: a secret's windows are a
 * set of numbers, and a body is scanned once, byte by byte, with the window
 * rolled along (no hashing of strings, no false matches). A secret holds no
 * NUL, so no window of it is 0, which marks an empty slot. */
typedef struct {
    const char *text;
    apr_size_t len;
    apr_size_t run; /* min(8, len) */
    apr_uint64_t *slots;
    apr_size_t slot_mask; /* slots - 1, a power of two minus one */
} secret;

struct oaip_secret_mask {
    apr_pool_t *pool;
    apr_array_header_t *secrets; /* secret */
    char byte;
};

#define MARKER_MIN 3

static apr_size_t slot_of(apr_uint64_t window, apr_size_t slot_mask)
{
    return (apr_size_t)((window * 0x9E3779B97F4A7C15ULL) >> 32) & slot_mask;
}

static apr_uint64_t window_bits(apr_size_t run)
{
    return run >= 8 ? ~(apr_uint64_t)0 : (((apr_uint64_t)1 << (8 * run)) - 1);
}

static void insert(secret *s, apr_uint64_t window)
{
    apr_size_t i = slot_of(window, s->slot_mask);

    while (s->slots[i] != 0 && s->slots[i] != window) {
        i = (i + 1) & s->slot_mask;
    }
    s->slots[i] = window;
}

static int contains(const secret *s, apr_uint64_t window)
{
    apr_size_t i = slot_of(window, s->slot_mask);

    while (s->slots[i] != 0) {
        if (s->slots[i] == window) {
            return 1;
        }
        i = (i + 1) & s->slot_mask;
    }
    return 0;
}

apr_size_t oaip_secret_mask_run(apr_size_t len)
{
    return len < OAIP_MASK_RUN ? len : OAIP_MASK_RUN;
}

static int in_any_secret(const oaip_secret_mask *mask, char c)
{
    int i;

    for (i = 0; i < mask->secrets->nelts; i++) {
        const secret *s = &APR_ARRAY_IDX(mask->secrets, i, secret);
        if (memchr(s->text, c, s->len) != NULL) {
            return 1;
        }
    }
    return 0;
}

/* '*' unless a secret holds it; never '"' or '\' (JSON strings). */
static char pick_byte(const oaip_secret_mask *mask)
{
    int c;

    if (!in_any_secret(mask, '*')) {
        return '*';
    }
    for (c = 0x21; c < 0x7f; c++) {
        if (c != '"' && c != '\\' && !in_any_secret(mask, (char)c)) {
            return (char)c;
        }
    }
    return '*'; /* the secrets hold every visible byte: rule 1 still applies */
}

oaip_secret_mask *oaip_secret_mask_make(apr_pool_t *p)
{
    oaip_secret_mask *mask = apr_pcalloc(p, sizeof(*mask));

    mask->pool = p;
    mask->secrets = apr_array_make(p, 2, sizeof(secret));
    mask->byte = '*';
    return mask;
}

void oaip_secret_mask_add(oaip_secret_mask *mask, const char *text)
{
    secret *s;
    apr_size_t windows, slots = 16, i;
    apr_uint64_t window = 0, bits;

    if (text == NULL || *text == '\0' || mask->secrets->nelts >= OAIP_MASK_MAX_SECRETS) {
        return;
    }
    s = apr_array_push(mask->secrets);
    s->text = text;
    s->len = strlen(text);
    s->run = oaip_secret_mask_run(s->len);
    windows = s->len - s->run + 1;
    while (slots < 2 * windows) { /* at most half full: short probes */
        slots *= 2;
    }
    s->slots = apr_pcalloc(mask->pool, slots * sizeof(*s->slots));
    s->slot_mask = slots - 1;
    bits = window_bits(s->run);
    for (i = 0; i < s->len; i++) {
        window = ((window << 8) | (unsigned char)text[i]) & bits;
        if (i + 1 >= s->run) {
            insert(s, window);
        }
    }
    mask->byte = pick_byte(mask);
}

int oaip_secret_mask_count(const oaip_secret_mask *mask)
{
    return mask->secrets->nelts;
}

char oaip_secret_mask_byte(const oaip_secret_mask *mask)
{
    return mask->byte;
}

static apr_size_t overwrite(char *data, apr_size_t from, apr_size_t to, char byte)
{
    apr_size_t changed = 0;

    for (; from < to; from++) {
        if (data[from] != byte) {
            data[from] = byte;
            changed++;
        }
    }
    return changed;
}

/* Rule 1, for every secret in one pass over the original bytes: each
 * byte goes into every secret's window before any run that ends at it is
 * overwritten, so a run of one secret that overlaps another's is masked
 * whole too. */
static apr_size_t mask_runs(const oaip_secret_mask *mask, char *data, apr_size_t len)
{
    apr_uint64_t windows[OAIP_MASK_MAX_SECRETS] = {0};
    int n = mask->secrets->nelts, k;
    apr_size_t i, changed = 0;

    for (i = 0; i < len; i++) {
        for (k = 0; k < n; k++) {
            const secret *s = &APR_ARRAY_IDX(mask->secrets, k, secret);
            windows[k] =
                ((windows[k] << 8) | (unsigned char)data[i]) & window_bits(s->run);
        }
        for (k = 0; k < n; k++) {
            const secret *s = &APR_ARRAY_IDX(mask->secrets, k, secret);
            if (i + 1 >= s->run && windows[k] != 0 && contains(s, windows[k])) {
                changed += overwrite(data, i + 1 - s->run, i + 1, mask->byte);
            }
        }
    }
    return changed;
}

static int is_marker(char c, char byte)
{
    return c == '*' || c == '.' || c == byte;
}

/* Rule 2: the longest prefix of 4 to run-1 bytes that ends at `end`, the
 * longest suffix that starts at `start`. Pieces of `run` bytes and more are
 * rule 1's. */
static apr_size_t mask_affixes(const secret *s, char *data, apr_size_t len, char byte)
{
    apr_size_t longest = s->run > 0 ? s->run - 1 : 0, i = 0, start, end, n, changed = 0;

    if (longest < OAIP_MASK_AFFIX) {
        return 0;
    }
    while (i < len) {
        if (!is_marker(data[i], byte)) {
            i++;
            continue;
        }
        start = i;
        while (i < len && is_marker(data[i], byte)) {
            i++;
        }
        end = i;
        if (end - start < MARKER_MIN) {
            continue;
        }
        for (n = start < longest ? start : longest; n >= OAIP_MASK_AFFIX; n--) {
            if (memcmp(data + start - n, s->text, n) == 0) {
                changed += overwrite(data, start - n, start, byte);
                break;
            }
        }
        for (n = len - end < longest ? len - end : longest; n >= OAIP_MASK_AFFIX; n--) {
            if (memcmp(data + end, s->text + s->len - n, n) == 0) {
                changed += overwrite(data, end, end + n, byte);
                i = end + n;
                break;
            }
        }
    }
    return changed;
}

apr_size_t oaip_secret_mask_apply(const oaip_secret_mask *mask, char *data,
                                  apr_size_t len)
{
    apr_size_t changed = 0;
    int i;

    changed += mask_runs(mask, data, len);
    for (i = 0; i < mask->secrets->nelts; i++) {
        changed +=
            mask_affixes(&APR_ARRAY_IDX(mask->secrets, i, secret), data, len, mask->byte);
    }
    return changed;
}

char *oaip_secret_mask_string(apr_pool_t *p, const oaip_secret_mask *mask,
                              const char *text)
{
    char *copy;

    if (text == NULL) {
        return NULL;
    }
    copy = apr_pstrdup(p, text);
    oaip_secret_mask_apply(mask, copy, strlen(copy));
    return copy;
}
