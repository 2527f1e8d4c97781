/* The configuration: per directory and per virtual host, created, merged
 * and read through the getters (the directives: httpd/directives.c). */
#ifndef OAIP_CONFIG_H
#define OAIP_CONFIG_H

#include <httpd.h>
#include <http_config.h>

#include "core/errors.h"
#include "core/limit_spec.h"

/* What a field holds until a directive sets it; only config.c looks: the
 * getters below say what unset means. */
#define OAIP_UNSET -1

/* One OpenAIProxyRateLimit or OpenAIProxyTokenBudget. */
typedef struct {
    oaip_limit limit;
    const char *text;  /* as written, for messages */
    const char *scope; /* where it was written and how: keeps counters apart */
} oaip_configured_limit;

/* OpenAIProxyBackend: one named upstream of a server or virtual host
 * (httpd/backend_directives.c); the same object wherever it is seen. */
typedef struct {
    const char *name;
    const char *url;            /* base URL, no trailing slash */
    const char *key;            /* NULL: key=none, no auth header */
    const char *auth_name;      /* "" for bearer, else the header's name */
    apr_array_header_t *query;  /* encoded NAME=VALUE (const char *); NULL: none */
    apr_array_header_t *models; /* patterns (const char *); NULL: every model */
    int weight;                 /* 1 or more */
    const char *file;           /* where it was written, for messages */
    unsigned line;
    int slot; /* its counters in shared memory (httpd/backend_state.c); -1: none */
} oaip_backend;

/* OpenAIProxyRoute as written: the names are looked up in the request's
 * server (check_config checks every server that sees the route). */
typedef struct {
    apr_array_header_t *names; /* const char *, in order */
    const char *file;          /* where it was written, for messages */
    unsigned line;
} oaip_route;

/* OpenAIProxyBalance. */
typedef enum {
    OAIP_BALANCE_FAILOVER,  /* in route order */
    OAIP_BALANCE_WEIGHTED,  /* the first at random by weight, then the rest */
    OAIP_BALANCE_LEAST_BUSY /* fewest attempts in flight over every process */
} oaip_balance;

/* OpenAIProxyFailover: what makes a backend fail a request. */
typedef struct {
    int connect;               /* DNS, TCP, TLS: the request never left */
    int timeout;               /* no first byte within the timeout */
    unsigned char status[600]; /* 1: an answer with this status */
} oaip_failover_set;

#define OAIP_ROUTE_MAX 8 /* backends of one route */

typedef struct {
    /* the upstream key; NULL when unset. Never logged, never in an error. */
    const char *api_key;
    const char *upstream;         /* base URL, no trailing slash; NULL: unset */
    const char *ca_file;          /* NULL: unset (system store) */
    apr_array_header_t *origins;  /* oaip_origin_rule; NULL: unset */
    apr_array_header_t *defaults; /* oaip_default, merged by name */
    apr_array_header_t *models;   /* allowed model names (const char *); NULL: any */
    apr_off_t max_body;           /* OAIP_UNSET */
    int allow_client_key;         /* OAIP_UNSET, 0, 1 */
    int allow_credentials;        /* OpenAIProxyAllowCredentials: OAIP_UNSET, 0, 1 */
    int error_format;             /* oaip_error_format; OAIP_UNSET */
    apr_interval_time_t connect_timeout;    /* OAIP_UNSET */
    apr_interval_time_t first_byte_timeout; /* until the upstream's answer begins */
    apr_interval_time_t idle_timeout;       /* silence allowed within an answer */
    apr_interval_time_t heartbeat;          /* between SSE comments; 0: Off */
    int max_tokens;                         /* OpenAIProxyMaxTokens; OAIP_UNSET: no cap */
    int stream_usage; /* OpenAIProxyStreamUsage: oaip_stream_usage; OAIP_UNSET: auto */
    /* oaip_configured_limit; NULL: unset; empty: "none" */
    apr_array_header_t *rate_limits;
    apr_array_header_t *token_budgets;
    /* OpenAIProxyUpstreamAuth: "" for bearer, else the header's name;
     * NULL: unset (bearer) */
    const char *auth_name;
    /* OpenAIProxyEndpoints: const oaip_endpoint *; NULL: chat/completions */
    apr_array_header_t *endpoints;
    /* OpenAIProxyUpstreamQuery: encoded name=value; NULL: unset */
    apr_array_header_t *upstream_query;
    const oaip_route *route; /* OpenAIProxyRoute; NULL: the single upstream */
    int balance;             /* oaip_balance; OAIP_UNSET: failover */
    /* OpenAIProxyFailover; NULL: unset (connect 429 500 502 503 504) */
    const oaip_failover_set *failover_on;
    apr_interval_time_t cooldown; /* OpenAIProxyCooldown; OAIP_UNSET: 30 s; 0: none */
    /* OpenAIProxyModelAlias: oaip_model_alias, merged by name; NULL: none */
    apr_array_header_t *model_aliases;
} oaip_dir_conf;

/* OpenAIProxyStreamUsage: whether streams ask for the usage chunk. */
typedef enum {
    OAIP_STREAM_USAGE_AUTO, /* ask, unless the upstream is known to refuse it */
    OAIP_STREAM_USAGE_ON,   /* always ask; a refusal is relayed */
    OAIP_STREAM_USAGE_OFF   /* never ask: usage of streams is estimated */
} oaip_stream_usage;

/* Per virtual host. */
typedef struct {
    int max_streams; /* OAIP_UNSET: no limit */
    int index;       /* this server_rec's column in the shared stream counters */
    const oaip_store_spec *store; /* OpenAIProxyCounterStore; NULL: shm */
    const char *store_ca_file;    /* OpenAIProxyCounterStoreCAFile; NULL: system's */
    int store_fail_closed;        /* OpenAIProxyCounterStoreFail; OAIP_UNSET: open */
    struct oaip_counter_client *counter_client; /* this process's, from child_init */
    /* OpenAIProxyBackend (oaip_backend *): the virtual host's own, then the
     * main server's it does not name itself; NULL: none */
    apr_array_header_t *backends;
} oaip_server_conf;

extern const command_rec oaip_directives[];

void *oaip_create_dir_conf(apr_pool_t *p, char *dir);
void *oaip_merge_dir_conf(apr_pool_t *p, void *base, void *add);
void *oaip_create_server_conf(apr_pool_t *p, server_rec *s);
void *oaip_merge_server_conf(apr_pool_t *p, void *base, void *add);

/* Effective values: what an unset field means (the defaults, in one place). */
const char *oaip_conf_upstream(const oaip_dir_conf *conf);
apr_off_t oaip_conf_max_body(const oaip_dir_conf *conf);
/* OpenAIProxyErrorFormat where set (at any level); unset: seed, the
 * Worker's shape, at the Location itself (`sub_path`, the request path
 * below it, "" or "/"; NULL: not known), where the Worker's clients call,
 * and openai below it (/chat/completions, /responses, /models, ...), where
 * SDKs call and read error.message. */
oaip_error_format oaip_conf_error_format(const oaip_dir_conf *conf, const char *sub_path);
apr_interval_time_t oaip_conf_connect_timeout(const oaip_dir_conf *conf);
apr_interval_time_t oaip_conf_first_byte_timeout(const oaip_dir_conf *conf);
apr_interval_time_t oaip_conf_idle_timeout(const oaip_dir_conf *conf);
apr_interval_time_t oaip_conf_heartbeat(const oaip_dir_conf *conf); /* 0: Off */
int oaip_conf_max_tokens(const oaip_dir_conf *conf);                /* 0: no cap */
oaip_stream_usage oaip_conf_stream_usage(const oaip_dir_conf *conf);
int oaip_conf_allows_client_key(const oaip_dir_conf *conf);
int oaip_conf_allows_credentials(const oaip_dir_conf *conf);
int oaip_server_max_streams(const oaip_server_conf *conf); /* 0: no limit */
oaip_balance oaip_conf_balance(const oaip_dir_conf *conf);
const oaip_failover_set *oaip_conf_failover_on(const oaip_dir_conf *conf);
apr_interval_time_t oaip_conf_cooldown(const oaip_dir_conf *conf); /* 0: none */
/* The backend of that name `conf`'s server sees; NULL: none. */
const oaip_backend *oaip_server_backend(const oaip_server_conf *conf, const char *name);
int oaip_server_store_fails_closed(const oaip_server_conf *conf);

/* The upstream's default in OpenAIProxyUpstream's help text. */
#define OAIP_DEFAULT_UPSTREAM "https://api.openai.com/v1"

/* check_config: refuses OpenAIProxyAllowCredentials On where the origins that
 * apply include "*" (server, virtual hosts, their <Location>/<Directory>). */
int oaip_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                      server_rec *s);

#endif
