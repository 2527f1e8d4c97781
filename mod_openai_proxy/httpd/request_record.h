/* One record per request the module serves (r->request_config): how it
 * ended, what the upstream said and cost, and what the budgets hold of it.
 * The handler and the engine write it; limits, stats and the status page
 * read it; the OPENAI_* notes are written from it once, for mod_log_config
 * (%{OPENAI_OUTCOME}n ...). */
#ifndef OAIP_REQUEST_RECORD_H
#define OAIP_REQUEST_RECORD_H

#include <httpd.h>

#include "core/outcome.h"
#include "core/sse.h"

typedef struct {
    int served;               /* the handler took the request (not only an error page) */
    oaip_outcome outcome;     /* OAIP_OUTCOME_NONE until known; the first one stays */
    const char *outcome_text; /* for OAIP_OUTCOME_OTHER: httpd's status in words */
    const char *model;        /* as the client named it; NULL: none */
    int stream;               /* 1/0; -1: not known (refused before the body was read) */
    long upstream_status;     /* 0: no answer from the upstream */
    long first_byte_ms;       /* until the upstream's first byte; -1: none came */
    int attempts;             /* upstream attempts made (engine/upstream.h); 0: none */
    const char *backend;      /* OpenAIProxyBackend that answered; NULL: no route */
    oaip_usage usage;         /* reported (or estimated) tokens; -1: none */
    int usage_estimated;      /* usage is the proxy's estimate, not the upstream's */
    /* what the token budgets hold of this request until it is settled */
    apr_array_header_t *budget_charges;
    struct oaip_counter_client *store;
} oaip_request_record;

/* The record of `r`, made on first use. */
oaip_request_record *oaip_request_record_of(request_rec *r);

/* The record of `r`; NULL when the module never saw the request. */
oaip_request_record *oaip_request_record_find(request_rec *r);

/* How the request ended, unless that is already known. */
void oaip_request_record_end(request_rec *r, oaip_outcome outcome);

/* log_transaction, before mod_log_config: the record as OPENAI_* notes of
 * `r`. */
void oaip_request_record_notes(request_rec *r, const oaip_request_record *record);

#endif
