/* Errors httpd answers itself for a path below one of the proxy's Locations
 * (an encoded slash or NUL byte in the path, auth 401/403, LimitRequestBody's
 * 413, a header line too long, ...) would be HTML pages without CORS
 * headers: a browser page could not even read their status. httpd runs the
 * insert_error_filter hook before it writes such a page; here the page is
 * replaced by the module's JSON error (in the Location's
 * OpenAIProxyErrorFormat) and the CORS headers of an allowed origin are
 * added. httpd keeps the status and its other headers (WWW-Authenticate,
 * Allow). An ErrorDocument with a URL is served by httpd instead (it never
 * reaches this hook). */
#include "httpd/error_pages.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <http_protocol.h>
#include <http_request.h>
#include <util_filter.h>

#include "core/errors.h"
#include "httpd/config.h"
#include "httpd/cors_headers.h"
#include "httpd/handler.h"
#include "httpd/request_record.h"
#include "mod_openai_proxy.h"

#define FILTER_NAME "OAIP_JSON_ERROR"

typedef struct {
    const char *body;
    int started;
} json_error_ctx;

/* Some errors come before httpd walked the <Location>s (it rejects an
 * encoded slash or a NUL byte while decoding the path, with the server's
 * defaults in force): walk them here, as the request would have, so the
 * Location's own settings (error format, origins) apply. */
static int location_is_ours(request_rec *r)
{
    if (oaip_location_is_ours(r)) {
        return 1;
    }
    if (r->uri == NULL || r->uri[0] != '/' || r->per_dir_config == NULL) {
        return 0;
    }
    return ap_location_walk(r) == OK && oaip_location_is_ours(r);
}

/* The module's own error where httpd's status means the same. */
static int known_kind(int status, oaip_error_kind *kind, const char **detail)
{
    switch (status) {
    case HTTP_BAD_REQUEST:
        *kind = OAIP_ERR_BAD_REQUEST;
        *detail = "The request is malformed (its path, headers or body framing)";
        return 1;
    case HTTP_NOT_FOUND:
        *kind = OAIP_ERR_NOT_FOUND;
        *detail = "No API endpoint at this path";
        return 1;
    case HTTP_METHOD_NOT_ALLOWED:
        *kind = OAIP_ERR_METHOD_NOT_ALLOWED;
        *detail = NULL;
        return 1;
    case HTTP_REQUEST_TIME_OUT:
        *kind = OAIP_ERR_BODY_TIMEOUT;
        *detail = "The request did not arrive in time";
        return 1;
    case HTTP_REQUEST_ENTITY_TOO_LARGE:
        *kind = OAIP_ERR_BODY_TOO_LARGE;
        *detail = "The request body is larger than this server accepts";
        return 1;
    case HTTP_INTERNAL_SERVER_ERROR:
        *kind = OAIP_ERR_INTERNAL;
        *detail = NULL;
        return 1;
    default:
        return 0;
    }
}

/* Any other status: its reason phrase as title, and as code in snake case
 * ("Unauthorized" -> "unauthorized"). */
static const oaip_error_info *status_info(apr_pool_t *p, int status)
{
    oaip_error_info *info = apr_pcalloc(p, sizeof(*info));
    const char *line = ap_get_status_line(status); /* "401 Unauthorized" */
    char *code, *c;

    info->status = status;
    info->title = strlen(line) > 4 ? line + 4 : "Error";
    info->type = status >= 500 ? "server_error" : "invalid_request_error";
    code = apr_pstrdup(p, info->title);
    for (c = code; *c; c++) {
        *c = apr_isalnum(*c) ? (char)apr_tolower(*c) : '_';
    }
    info->code = code;
    return info;
}

static const char *status_detail(int status)
{
    switch (status) {
    case HTTP_UNAUTHORIZED:
        return "Authentication is required to use this API";
    case HTTP_FORBIDDEN:
        return "Access to this API is denied";
    default:
        return NULL; /* the title */
    }
}

static const char *error_body(request_rec *r, const oaip_dir_conf *conf, int status)
{
    oaip_error_format fmt = oaip_conf_error_format(conf, oaip_path_below_location(r));
    oaip_error_kind kind;
    const char *detail;

    if (known_kind(status, &kind, &detail)) {
        oaip_request_record_end(r, oaip_outcome_of_error(kind));
        return oaip_error_body(r->pool, fmt, kind, detail);
    }
    {
        const oaip_error_info *info = status_info(r->pool, status);
        oaip_request_record *record = oaip_request_record_of(r);
        if (record->outcome == OAIP_OUTCOME_NONE) {
            record->outcome = OAIP_OUTCOME_OTHER;
            record->outcome_text = info->code;
        }
        return oaip_error_body_info(r->pool, fmt, info, status_detail(status));
    }
}

void oaip_error_pages_insert(request_rec *r)
{
    const oaip_dir_conf *conf;
    json_error_ctx *ctx;

    if (!ap_is_HTTP_ERROR(r->status) || r->assbackwards || !location_is_ours(r)) {
        return;
    }
    conf = ap_get_module_config(r->per_dir_config, &openai_proxy_module);
    if (conf == NULL) {
        return;
    }
    /* err_headers_out becomes the error answer's headers_out */
    oaip_cors_apply(r, conf, apr_table_get(r->headers_in, "Origin"));
    ctx = apr_pcalloc(r->pool, sizeof(*ctx));
    ctx->body = error_body(r, conf, r->status);
    ap_add_output_filter(FILTER_NAME, ctx, r, r->connection);
}

/* Drops httpd's HTML and puts the JSON body in its place; metadata buckets
 * (EOS, flush, error) go on. */
static apr_status_t json_error_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    json_error_ctx *ctx = f->ctx;
    request_rec *r = f->r;
    apr_bucket *b, *next;

    for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb); b = next) {
        next = APR_BUCKET_NEXT(b);
        if (!APR_BUCKET_IS_METADATA(b)) {
            apr_bucket_delete(b);
        }
    }
    if (!ctx->started) {
        apr_size_t len = strlen(ctx->body);
        ctx->started = 1;
        ap_set_content_type(r, "application/json");
        r->content_languages = NULL;
        apr_table_setn(r->headers_out, "Cache-Control", "no-store");
        ap_set_content_length(r, (apr_off_t)len);
        if (!r->header_only) {
            APR_BRIGADE_INSERT_HEAD(
                bb, apr_bucket_immortal_create(ctx->body, len, f->c->bucket_alloc));
        }
    }
    return ap_pass_brigade(f->next, bb);
}

void oaip_error_pages_register(apr_pool_t *p)
{
    (void)p;
    ap_register_output_filter(FILTER_NAME, json_error_filter, NULL, AP_FTYPE_RESOURCE);
}
