/* The generated content of one stream event, read without building a JSON
 * tree (core: APR only). A chat chunk is parsed once per event for the
 * budgets' estimate of a stream that ends without usage; jansson's tree
 * (a hash table per object, a copy per string) made that parse the
 * largest cost per relayed chunk. */
#ifndef OAIP_CONTENT_SCAN_H
#define OAIP_CONTENT_SCAN_H

#include <apr.h>

/* The content bytes of an event's data, as oaip_content_count_event counts
 * them from jansson's tree (token_estimate.h: the chat delta's or message's
 * texts, tool-call and function-call arguments, the audio transcript, a
 * legacy choice's text, a Responses *.delta event's delta; decoded UTF-8
 * lengths). Returns 1 with *bytes when it read the data as a whole JSON
 * object the way jansson does, 0 when it cannot be sure and the caller
 * must parse it with jansson: invalid or unusual JSON (escapes in keys, a
 * duplicated key on the path, \u0000, integers jansson would refuse,
 * non-ASCII that is not plain UTF-8, deep nesting). */
int oaip_content_scan(const char *data, apr_size_t len, apr_int64_t *bytes);

#endif
