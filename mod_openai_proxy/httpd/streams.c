#include "httpd/streams.h"

#include <ap_mpm.h>
#include <apr_atomic.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "httpd/config.h"
#include "mod_openai_proxy.h"

/* One row per process (the MPM's hard limit), one counter per column; a
 * column is one virtual host's, named by a hash of who it is (ServerName,
 * port, addresses). A process only changes its own row, so a crashed
 * child's streams are forgotten when its successor claims the row.
 *
 * The segment lives in the parent's process pool, made once: over a
 * graceful restart the old generation's children, which keep their
 * mapping, go on counting their open streams in the columns of their
 * virtual hosts, and the new generation, which finds each virtual host's
 * column by its name, counts them against its limit (a restart must not
 * let twice the streams in). */
typedef struct {
    apr_uint32_t pid;
    apr_uint32_t counts[1]; /* [columns] */
} process_row;

#define SEGMENT_KEY "openai_proxy:streams"
#define MIN_COLUMNS 64

typedef struct {
    int process_rows;
    int columns;
    apr_size_t row_size;
    apr_uint64_t *names; /* [columns]: 0 free */
    char *rows;
} segment;

static char *rows;
static apr_size_t row_size;
static int process_rows;
static int server_count;
static int column_count;
static process_row *my_row;

static process_row *row_at(int i)
{
    return (process_row *)(rows + (apr_size_t)i * row_size);
}

/* FNV-1a over who the virtual host is: what stays the same when a reload
 * changes anything else. `ordinal` tells apart hosts that look alike. */
static apr_uint64_t name_of(server_rec *vs, int ordinal)
{
    apr_uint64_t h = APR_UINT64_C(14695981039346656037);
    const char *parts[2] = {vs->server_hostname ? vs->server_hostname : "", ""};
    char numbers[64];
    server_addr_rec *addr;
    int i;

    apr_snprintf(numbers, sizeof(numbers), "%u/%d", (unsigned)vs->port, ordinal);
    parts[1] = numbers;
    for (i = 0; i < 2; i++) {
        const unsigned char *c = (const unsigned char *)parts[i];
        do {
            h ^= *c;
            h *= APR_UINT64_C(1099511628211);
        } while (*c++ != '\0');
    }
    for (addr = vs->addrs; addr != NULL; addr = addr->next) {
        const unsigned char *c =
            (const unsigned char *)(addr->virthost ? addr->virthost : "");
        do {
            h ^= *c;
            h *= APR_UINT64_C(1099511628211);
        } while (*c++ != '\0');
        h ^= addr->host_port;
        h *= APR_UINT64_C(1099511628211);
    }
    return h ? h : 1;
}

static int process_alive(apr_uint32_t pid)
{
    return pid != 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH);
}

/* Streams open in `column` in the processes alive. */
static apr_uint32_t column_total(const segment *seg, int column)
{
    apr_uint32_t total = 0;
    int i;

    for (i = 0; i < seg->process_rows; i++) {
        process_row *row = (process_row *)(seg->rows + (apr_size_t)i * seg->row_size);
        if (process_alive(apr_atomic_read32(&row->pid))) {
            total += apr_atomic_read32(&row->counts[column]);
        }
    }
    return total;
}

/* The column named `name`, or a free one claimed for it: never used, or
 * named by a virtual host that is gone from the configuration and has no
 * stream left in any process. -1: none. */
static int column_for(segment *seg, apr_uint64_t name, const apr_uint64_t *current,
                      int current_count)
{
    int i, j;

    for (i = 0; i < seg->columns; i++) {
        if (seg->names[i] == name) {
            return i;
        }
    }
    for (i = 0; i < seg->columns; i++) {
        int in_use = 0;
        for (j = 0; j < current_count && seg->names[i] != 0; j++) {
            in_use |= seg->names[i] == current[j];
        }
        if (seg->names[i] == 0 || (!in_use && column_total(seg, i) == 0)) {
            seg->names[i] = name;
            return i;
        }
    }
    return -1;
}

static segment *segment_make(apr_pool_t *kept_in, server_rec *s, int rows_wanted,
                             int columns)
{
    apr_size_t row_bytes = APR_ALIGN_DEFAULT(sizeof(process_row) +
                                             sizeof(apr_uint32_t) * (apr_size_t)columns);
    apr_size_t names_bytes =
        APR_ALIGN_DEFAULT(sizeof(apr_uint64_t) * (apr_size_t)columns);
    apr_size_t size = names_bytes + row_bytes * (apr_size_t)rows_wanted;
    segment *seg = apr_pcalloc(kept_in, sizeof(*seg));
    apr_shm_t *shm;
    apr_status_t rv = apr_shm_create(&shm, size, NULL, kept_in);

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot create shared memory for OpenAIProxyMaxStreams");
        return NULL;
    }
    seg->process_rows = rows_wanted;
    seg->columns = columns;
    seg->row_size = row_bytes;
    seg->names = apr_shm_baseaddr_get(shm);
    seg->rows = (char *)seg->names + names_bytes;
    memset(seg->names, 0, size);
    apr_pool_userdata_set(seg, SEGMENT_KEY, apr_pool_cleanup_null, kept_in);
    return seg;
}

/* Gives each limited virtual host its column; 0 when they do not all fit. */
static int assign_columns(apr_pool_t *ptemp, segment *seg, server_rec *s)
{
    apr_uint64_t *names =
        apr_pcalloc(ptemp, sizeof(apr_uint64_t) * (apr_size_t)server_count);
    int n = 0, limited, i;
    server_rec *vs;

    for (vs = s; vs != NULL; vs = vs->next) {
        oaip_server_conf *conf =
            ap_get_module_config(vs->module_config, &openai_proxy_module);
        int ordinal = 0;
        if (oaip_server_max_streams(conf) <= 0) {
            conf->index = -1;
            continue;
        }
        do {
            names[n] = name_of(vs, ordinal++);
            for (i = 0; i < n && names[i] != names[n]; i++) {
            }
        } while (i < n);
        n++;
    }
    limited = n;
    n = 0;
    for (vs = s; vs != NULL; vs = vs->next) {
        oaip_server_conf *conf =
            ap_get_module_config(vs->module_config, &openai_proxy_module);
        if (oaip_server_max_streams(conf) <= 0) {
            continue;
        }
        conf->index = column_for(seg, names[n++], names, limited);
        if (conf->index < 0) {
            return 0;
        }
    }
    return 1;
}

apr_status_t oaip_streams_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_pool_t *kept_in = s->process->pool;
    int limit_daemons = 0, any_limit = 0, wanted_rows, limited = 0;
    segment *seg = NULL;
    void *kept = NULL;
    apr_pool_t *ptemp;
    server_rec *vs;
    int fits;

    server_count = 0;
    for (vs = s; vs != NULL; vs = vs->next) {
        oaip_server_conf *conf =
            ap_get_module_config(vs->module_config, &openai_proxy_module);
        conf->index = -1;
        server_count++;
        if (oaip_server_max_streams(conf) > 0) {
            any_limit = 1;
            limited++;
        }
    }
    rows = NULL;
    if (!any_limit) {
        return APR_SUCCESS;
    }
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit_daemons);
    wanted_rows = limit_daemons > 0 ? limit_daemons : 1;
    apr_pool_userdata_get(&kept, SEGMENT_KEY, kept_in);
    seg = kept;
    if (seg != NULL && seg->process_rows != wanted_rows) {
        seg = NULL; /* a new MPM hard limit: only after a full stop, in practice */
    }
    if (seg == NULL) {
        seg = segment_make(kept_in, s, wanted_rows,
                           limited * 2 > MIN_COLUMNS ? limited * 2 : MIN_COLUMNS);
    }
    if (seg == NULL) {
        return APR_ENOMEM;
    }
    apr_pool_create(&ptemp, pconf);
    fits = assign_columns(ptemp, seg, s);
    if (!fits) {
        /* more virtual hosts than columns: a new segment, in which the old
         * generation's open streams are not counted */
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                     "OpenAIProxyMaxStreams: new stream counters for %d virtual hosts; "
                     "streams still open from before this restart are not counted",
                     limited);
        seg = segment_make(kept_in, s, wanted_rows, limited * 2);
        fits = seg != NULL && assign_columns(ptemp, seg, s);
    }
    apr_pool_destroy(ptemp);
    if (!fits) {
        return APR_ENOMEM;
    }
    rows = seg->rows;
    row_size = seg->row_size;
    process_rows = seg->process_rows;
    column_count = seg->columns;
    return APR_SUCCESS;
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
            memset(row->counts, 0, sizeof(apr_uint32_t) * (apr_size_t)column_count);
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

    if (max <= 0 || my_row == NULL || conf->index < 0 || conf->index >= column_count) {
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
