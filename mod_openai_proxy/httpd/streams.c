#include "httpd/streams.h"

#include <ap_mpm.h>
#include <apr_atomic.h>
#include <apr_shm.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "httpd/config.h"
#include "mod_openai_proxy.h"

/* One row per process (the MPM's hard limit), one counter per virtual
 * host. A process only changes its own row, so a crashed child's streams
 * are forgotten when its successor claims the row. */
typedef struct {
    apr_uint32_t pid;
    apr_uint32_t counts[1]; /* [servers] */
} process_row;

static apr_shm_t *shm;
static char *rows;
static apr_size_t row_size;
static int process_rows;
static int server_count;
static process_row *my_row;

static process_row *row_at(int i)
{
    return (process_row *)(rows + (apr_size_t)i * row_size);
}

apr_status_t oaip_streams_post_config(apr_pool_t *pconf, server_rec *s)
{
    int limit_daemons = 0, any_limit = 0;
    apr_status_t rv;
    server_rec *vs;

    server_count = 0;
    for (vs = s; vs != NULL; vs = vs->next) {
        oaip_server_conf *conf =
            ap_get_module_config(vs->module_config, &openai_proxy_module);
        conf->index = server_count++;
        any_limit |= oaip_server_max_streams(conf) > 0;
    }
    rows = NULL;
    if (!any_limit) {
        return APR_SUCCESS;
    }
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit_daemons);
    process_rows = limit_daemons > 0 ? limit_daemons : 1;
    row_size = APR_ALIGN_DEFAULT(sizeof(process_row) +
                                 sizeof(apr_uint32_t) * (apr_size_t)server_count);
    rv = apr_shm_create(&shm, row_size * (apr_size_t)process_rows, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot create shared memory for OpenAIProxyMaxStreams");
        return rv;
    }
    rows = apr_shm_baseaddr_get(shm);
    memset(rows, 0, row_size * (apr_size_t)process_rows);
    return APR_SUCCESS;
}

static int process_alive(apr_uint32_t pid)
{
    return pid != 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH);
}

void oaip_streams_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_uint32_t me = (apr_uint32_t)getpid();
    int i;

    (void)pchild;
    my_row = NULL;
    for (i = 0; rows != NULL && i < process_rows && my_row == NULL; i++) {
        process_row *row = row_at(i);
        apr_uint32_t owner = apr_atomic_read32(&row->pid);
        if (!process_alive(owner) && apr_atomic_cas32(&row->pid, me, owner) == owner) {
            memset(row->counts, 0, sizeof(apr_uint32_t) * (apr_size_t)server_count);
            my_row = row;
        }
    }
    if (rows != NULL && my_row == NULL) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "no free stream counter row: OpenAIProxyMaxStreams is not "
                     "enforced in process %u",
                     (unsigned)me);
    }
}

/* Streams open in every process; `check_alive` also leaves out rows of
 * processes that died without releasing theirs (only worth its system calls
 * when the limit seems reached). */
static apr_uint32_t streams_open(int index, int check_alive)
{
    apr_uint32_t total = 0;
    int i;

    for (i = 0; i < process_rows; i++) {
        process_row *row = row_at(i);
        apr_uint32_t pid = apr_atomic_read32(&row->pid);
        if (pid != 0 && (!check_alive || process_alive(pid))) {
            total += apr_atomic_read32(&row->counts[index]);
        }
    }
    return total;
}

static apr_status_t release(void *counter)
{
    apr_atomic_dec32(counter);
    return APR_SUCCESS;
}

/* Seconds a refused client is asked to wait. */
#define RETRY_AFTER 2

int oaip_streams_acquire(request_rec *r, oaip_refusal *refusal)
{
    const oaip_server_conf *conf =
        ap_get_module_config(r->server->module_config, &openai_proxy_module);
    int max = oaip_server_max_streams(conf);
    apr_uint32_t *counter;

    if (max <= 0 || my_row == NULL || conf->index < 0 || conf->index >= server_count) {
        return 1;
    }
    /* count ourselves first, then look: two racing requests may both be
     * refused for the last slot, but the limit is never exceeded */
    counter = &my_row->counts[conf->index];
    apr_atomic_inc32(counter);
    if (streams_open(conf->index, 0) > (apr_uint32_t)max &&
        streams_open(conf->index, 1) > (apr_uint32_t)max) {
        apr_atomic_dec32(counter);
        refusal->kind = OAIP_ERR_TOO_MANY_STREAMS;
        refusal->detail = "Too many streams are open on this server; retry shortly";
        refusal->retry_after = RETRY_AFTER;
        return 0;
    }
    apr_pool_cleanup_register(r->pool, counter, release, apr_pool_cleanup_null);
    return 1;
}
