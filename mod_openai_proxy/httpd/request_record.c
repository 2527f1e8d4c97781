#include "httpd/request_record.h"

#include <apr_strings.h>

#include "mod_openai_proxy.h"

oaip_request_record *oaip_request_record_find(request_rec *r)
{
    return ap_get_module_config(r->request_config, &openai_proxy_module);
}

oaip_request_record *oaip_request_record_of(request_rec *r)
{
    oaip_request_record *record = oaip_request_record_find(r);

    if (record == NULL) {
        record = apr_pcalloc(r->pool, sizeof(*record));
        record->outcome = OAIP_OUTCOME_NONE;
        record->stream = -1;
        record->first_byte_ms = -1;
        oaip_usage_init(&record->usage);
        ap_set_module_config(r->request_config, &openai_proxy_module, record);
    }
    return record;
}

void oaip_request_record_end(request_rec *r, oaip_outcome outcome)
{
    oaip_request_record *record = oaip_request_record_of(r);

    if (record->outcome == OAIP_OUTCOME_NONE) {
        record->outcome = outcome;
    }
}

static void note_count(request_rec *r, const char *name, long value)
{
    if (value >= 0) {
        apr_table_setn(r->notes, name, apr_ltoa(r->pool, value));
    }
}

void oaip_request_record_notes(request_rec *r, const oaip_request_record *record)
{
    const char *outcome = record->outcome == OAIP_OUTCOME_OTHER && record->outcome_text
                              ? record->outcome_text
                              : oaip_outcome_name(record->outcome);

    if (outcome != NULL) {
        apr_table_setn(r->notes, "OPENAI_OUTCOME", outcome);
    }
    if (record->model != NULL) {
        apr_table_setn(r->notes, "OPENAI_MODEL", record->model);
    }
    if (record->stream >= 0) {
        apr_table_setn(r->notes, "OPENAI_STREAM", record->stream ? "1" : "0");
    }
    note_count(r, "OPENAI_UPSTREAM_STATUS",
               record->upstream_status > 0 ? record->upstream_status : -1);
    note_count(r, "OPENAI_TTFB_MS", record->first_byte_ms);
    if (record->backend != NULL) {
        apr_table_setn(r->notes, "OPENAI_BACKEND", record->backend);
    }
    note_count(r, "OPENAI_ATTEMPTS", record->attempts > 0 ? record->attempts : -1);
    note_count(r, "OPENAI_PROMPT_TOKENS", record->usage.prompt_tokens);
    note_count(r, "OPENAI_COMPLETION_TOKENS", record->usage.completion_tokens);
    note_count(r, "OPENAI_TOTAL_TOKENS", record->usage.total_tokens);
    if (record->usage_estimated) {
        apr_table_setn(r->notes, "OPENAI_USAGE_ESTIMATED", "1");
    }
}
