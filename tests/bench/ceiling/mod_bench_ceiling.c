/*
 * mod_bench_ceiling: the benchmark's ceiling for any module in httpd. A
 * handler that reads the request body and answers a fixed body from memory,
 * without any upstream: what httpd itself costs per request, so that the
 * table can show how much of it a proxy spends on the upstream exchange.
 * Built by tests/bench/lib.sh with apxs into the run's temp dir; never
 * installed.
 *
 *   <Location /ceiling_sse>
 *       SetHandler bench-ceiling
 *       BenchCeilingBody /path/to/sse.txt
 *       BenchCeilingType text/event-stream
 *   </Location>
 *
 * A text/event-stream answer ends with a flush bucket before EOS, as a
 * streaming proxy's last write does (so it goes out chunked, without a
 * Content-Length); any other type is one bucket and EOS (Content-Length).
 */
#include "apr_file_io.h"
#include "apr_strings.h"
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

module AP_MODULE_DECLARE_DATA bench_ceiling_module;

typedef struct {
    const char *body; /* the whole fixed answer, read once at config time */
    apr_size_t len;
    const char *type;
    int is_sse;
} ceiling_conf;

static void *create_conf(apr_pool_t *p, char *dir)
{
    (void)dir;
    return apr_pcalloc(p, sizeof(ceiling_conf));
}

static const char *set_body(cmd_parms *cmd, void *cfg, const char *path)
{
    ceiling_conf *conf = cfg;
    apr_file_t *f;
    apr_finfo_t info;
    char *buf;
    apr_size_t n;

    if (apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, cmd->pool) !=
            APR_SUCCESS ||
        apr_file_info_get(&info, APR_FINFO_SIZE, f) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "BenchCeilingBody: cannot read %s", path);
    }
    n = (apr_size_t)info.size;
    buf = apr_palloc(cmd->pool, n + 1);
    if (apr_file_read_full(f, buf, n, NULL) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "BenchCeilingBody: short read of %s", path);
    }
    apr_file_close(f);
    conf->body = buf;
    conf->len = n;
    return NULL;
}

static const char *set_type(cmd_parms *cmd, void *cfg, const char *type)
{
    ceiling_conf *conf = cfg;
    (void)cmd;
    conf->type = type;
    conf->is_sse = strcmp(type, "text/event-stream") == 0;
    return NULL;
}

/* reads and drops the request body, as any proxy must read it */
static int discard_body(request_rec *r)
{
    char buf[8192];
    long n;
    int rv = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK);

    if (rv != OK) {
        return rv;
    }
    if (ap_should_client_block(r)) {
        while ((n = ap_get_client_block(r, buf, sizeof(buf))) > 0) {
        }
        if (n < 0) {
            return HTTP_BAD_REQUEST;
        }
    }
    return OK;
}

static int ceiling_handler(request_rec *r)
{
    ceiling_conf *conf;
    apr_bucket_brigade *bb;
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    int rv;

    if (!r->handler || strcmp(r->handler, "bench-ceiling") != 0) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &bench_ceiling_module);
    if (!conf->body || !conf->type) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if ((rv = discard_body(r)) != OK) {
        return rv;
    }
    ap_set_content_type(r, conf->type);
    bb = apr_brigade_create(r->pool, ba);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_immortal_create(conf->body, conf->len, ba));
    if (conf->is_sse) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(ba));
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    rv = ap_pass_brigade(r->output_filters, bb);
    return rv == APR_SUCCESS || r->connection->aborted ? OK : AP_FILTER_ERROR;
}

static const command_rec ceiling_cmds[] = {
    AP_INIT_TAKE1("BenchCeilingBody", set_body, NULL, OR_ALL,
                  "file whose bytes are the fixed answer"),
    AP_INIT_TAKE1("BenchCeilingType", set_type, NULL, OR_ALL,
                  "Content-Type of the fixed answer"),
    {NULL}};

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(ceiling_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(bench_ceiling) = {STANDARD20_MODULE_STUFF,
                                    create_conf,
                                    NULL,
                                    NULL,
                                    NULL,
                                    ceiling_cmds,
                                    register_hooks,
                                    0};
