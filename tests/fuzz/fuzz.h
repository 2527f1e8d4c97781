/* Shared helpers of the libFuzzer targets of the core (tests/fuzz/run.sh
 * builds and runs them). Each input gets a fresh APR pool; a broken invariant
 * aborts with a message, which libFuzzer reports as a crash and saves. */
#ifndef OAIP_FUZZ_H
#define OAIP_FUZZ_H

#include <apr_general.h>
#include <apr_pools.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Not assert(): it must hold in every build, NDEBUG or not. */
#define FUZZ_CHECK(cond, ...)                                                            \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "invariant broken at %s:%d: %s\n  ", __FILE__, __LINE__,     \
                    #cond);                                                              \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                       \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* The pool every input allocates from, created once and cleared per input. */
static apr_pool_t *fuzz_root_pool;

static inline apr_pool_t *fuzz_pool(void)
{
    if (fuzz_root_pool == NULL) {
        if (apr_initialize() != APR_SUCCESS ||
            apr_pool_create(&fuzz_root_pool, NULL) != APR_SUCCESS) {
            abort();
        }
    }
    apr_pool_clear(fuzz_root_pool);
    return fuzz_root_pool;
}

/* The input as a C string (cut at its first NUL, as a directive or a
 * header value would be), malloc'd so that ASan sees a read past its end.
 * Valid until the next call (kept in a global, so LeakSanitizer does not
 * count the last one). */
static char *fuzz_last_cstring;

static inline char *fuzz_cstring(apr_pool_t *p, const uint8_t *data, size_t size)
{
    (void)p;
    free(fuzz_last_cstring);
    fuzz_last_cstring = malloc(size + 1);
    if (fuzz_last_cstring == NULL) {
        abort();
    }
    memcpy(fuzz_last_cstring, data, size);
    fuzz_last_cstring[size] = '\0';
    return fuzz_last_cstring;
}

/* A malloc'd copy of exactly `len` bytes (NULL stays NULL), for the calls
 * whose reads past the end must be seen: APR pools allocate from large
 * blocks, so ASan sees no end of a pool copy. Release with free(). */
static inline char *fuzz_exact_copy(const char *data, size_t len)
{
    char *copy;

    if (data == NULL) {
        return NULL;
    }
    copy = malloc(len); /* ASan's malloc(0) is a valid pointer to no bytes */
    if (copy == NULL) {
        abort();
    }
    if (len > 0) {
        memcpy(copy, data, len);
    }
    return copy;
}

/* A pool copy that is never NULL, for comparing. */
static inline const char *fuzz_pool_copy(apr_pool_t *p, const char *data, size_t len)
{
    char *copy = apr_palloc(p, len + 1);

    if (len > 0) {
        memcpy(copy, data, len);
    }
    copy[len] = '\0';
    return copy;
}

/* Parses JSON text of `len` bytes, NULL when it is not valid JSON. The caller
 * releases it with json_decref. */
static inline json_t *fuzz_json(const char *text, size_t len, size_t flags)
{
    return json_loadb(text, len, flags | JSON_DECODE_ANY, NULL);
}

/* The split points of a stream input: byte 0 gives how many (0-15), each
 * taken from the next two bytes, the rest is the stream. Fills splits[]
 * (at most FUZZ_MAX_SPLITS, sorted, the stream's end last) and *stream /
 * *len; returns how many, 0 when the input is too short. */
#define FUZZ_MAX_SPLITS 17

static inline int fuzz_compare_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;

    return x < y ? -1 : x > y;
}

static inline size_t fuzz_stream_splits(const uint8_t *data, size_t size,
                                        size_t splits[FUZZ_MAX_SPLITS],
                                        const char **stream, size_t *len)
{
    size_t n, header, i;

    if (size == 0) {
        return 0;
    }
    n = data[0] % 16;
    header = 1 + 2 * n;
    if (size < header) {
        return 0;
    }
    *stream = (const char *)data + header;
    *len = size - header;
    for (i = 0; i < n; i++) {
        size_t at = (size_t)data[1 + 2 * i] | ((size_t)data[2 + 2 * i] << 8);
        splits[i] = *len ? at % (*len + 1) : 0;
    }
    splits[n++] = *len;
    qsort(splits, n, sizeof(splits[0]), fuzz_compare_size);
    return n;
}

#endif
