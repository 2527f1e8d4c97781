/* Fuzzes the tree-free content scan of stream events (content_scan.c)
 * against jansson's tree (token_estimate.c), which it stands in for.
 *
 * Input: any bytes, read as one event's data.
 *
 * Invariants: when the scan says it read the data, jansson parses it too
 * (strictly, as oaip_content_count_event does), and both count the same
 * content bytes; the count is never above the input's length. */
#include "fuzz.h"

#include "core/content_scan.h"
#include "core/token_estimate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    oaip_content_count count = {0, 0, 0};
    apr_int64_t bytes = -1;
    json_t *root;

    if (!oaip_content_scan(text, size, &bytes)) {
        return 0;
    }
    root = json_loadb(text, size, 0, NULL);
    FUZZ_CHECK(json_is_object(root), "the scan read %zu bytes jansson refuses", size);
    json_decref(root);
    oaip_content_count_event(&count, text, size);
    FUZZ_CHECK(count.bytes == (bytes > 0 ? bytes : 0), "scan %ld, jansson %ld bytes",
               (long)bytes, (long)count.bytes);
    FUZZ_CHECK(bytes >= 0 && (size_t)bytes <= size, "%ld bytes of %zu", (long)bytes,
               size);
    return 0;
}
