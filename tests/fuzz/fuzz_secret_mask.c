/* Fuzzes the key masker (oaip_secret_mask_apply) with one or two secrets
 * and any body.
 *
 * Input: byte 0 the first secret's length (0-63), byte 1 the second's
 * (0-31, 0: none); then the secrets' bytes (a NUL becomes 'A': a secret is
 * a C string), the rest is the body.
 *
 * Invariants: the length never changes; the count returned is the number
 * of bytes that changed, each into the mask byte; every run of
 * min(8, len) bytes of the input that occurs in a secret is masked whole;
 * when the mask byte is in no secret, no such run of a secret is left in
 * the output at all; without secrets nothing changes; the string helper
 * masks a C string as apply does. */
#include "fuzz.h"

#include "core/secret_mask.h"

static char *take_secret(apr_pool_t *p, const uint8_t **data, size_t *size, size_t len)
{
    char *s;
    size_t i;

    if (len > *size) {
        len = *size;
    }
    s = apr_palloc(p, len + 1);
    for (i = 0; i < len; i++) {
        s[i] = (*data)[i] ? (char)(*data)[i] : 'A';
    }
    s[len] = '\0';
    *data += len;
    *size -= len;
    return s;
}

static int occurs_in(const char *secret, const char *piece, size_t n)
{
    size_t len = strlen(secret), i;

    for (i = 0; i + n <= len; i++) {
        if (memcmp(secret + i, piece, n) == 0) {
            return 1;
        }
    }
    return 0;
}

static void check_runs(const char *secret, const char *in, const char *out, size_t len,
                       char byte, int byte_in_secrets)
{
    size_t run = oaip_secret_mask_run(strlen(secret)), i, j;

    if (run == 0) {
        return;
    }
    FUZZ_CHECK(run == (strlen(secret) < OAIP_MASK_RUN ? strlen(secret) : OAIP_MASK_RUN),
               "run length");
    for (i = 0; i + run <= len; i++) {
        if (occurs_in(secret, in + i, run)) {
            for (j = i; j < i + run; j++) {
                FUZZ_CHECK(out[j] == byte, "a run of the secret at %zu is not masked", i);
            }
        }
        if (!byte_in_secrets) {
            FUZZ_CHECK(!occurs_in(secret, out + i, run),
                       "a run of the secret is left at %zu", i);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    oaip_secret_mask *mask;
    const char *secrets[2];
    char *body, byte, *as_string, *copy;
    size_t len, changed, differ = 0, i, n_secrets;
    int byte_in_secrets = 0;

    if (size < 2) {
        return 0;
    }
    len = data[0] % 64;
    i = data[1] % 32;
    data += 2;
    size -= 2;
    secrets[0] = take_secret(p, &data, &size, len);
    secrets[1] = take_secret(p, &data, &size, i);
    mask = oaip_secret_mask_make(p);
    oaip_secret_mask_add(mask, secrets[0]);
    oaip_secret_mask_add(mask, i > 0 ? secrets[1] : NULL);
    n_secrets = (size_t)oaip_secret_mask_count(mask);
    FUZZ_CHECK(n_secrets == (size_t)(*secrets[0] != '\0') + (size_t)(*secrets[1] != '\0'),
               "secret count %zu", n_secrets);
    byte = oaip_secret_mask_byte(mask);
    FUZZ_CHECK(byte > 0x20 && byte < 0x7f && byte != '"' && byte != '\\',
               "mask byte 0x%02x", (unsigned char)byte);
    byte_in_secrets =
        strchr(secrets[0], byte) != NULL || strchr(secrets[1], byte) != NULL;

    body = fuzz_exact_copy((const char *)data, size);
    changed = oaip_secret_mask_apply(mask, body, size);
    for (i = 0; i < size; i++) {
        if (body[i] != (char)data[i]) {
            differ++;
            FUZZ_CHECK(body[i] == byte, "byte %zu changed into 0x%02x", i,
                       (unsigned char)body[i]);
        }
    }
    FUZZ_CHECK(changed == differ, "returned %zu, changed %zu", changed, differ);
    if (n_secrets == 0) {
        FUZZ_CHECK(changed == 0, "no secret, yet %zu bytes changed", changed);
    }
    for (i = 0; i < 2; i++) {
        if (*secrets[i] != '\0') {
            check_runs(secrets[i], (const char *)data, body, size, byte, byte_in_secrets);
        }
    }

    /* the string helper: the same as apply on the input's first C string */
    as_string = fuzz_cstring(p, data, size);
    copy = oaip_secret_mask_string(p, mask, as_string);
    FUZZ_CHECK(strlen(copy) == strlen(as_string), "string length changed");
    oaip_secret_mask_apply(mask, as_string, strlen(as_string));
    FUZZ_CHECK(strcmp(copy, as_string) == 0, "string helper differs from apply");
    free(body);
    return 0;
}
