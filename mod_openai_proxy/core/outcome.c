#include "core/outcome.h"

static const char *const engine_names[OAIP_OUTCOME_ERRORS] = {
    [OAIP_OUTCOME_OK] = "ok",
    [OAIP_OUTCOME_UPSTREAM_ERROR] = "upstream_error",
    [OAIP_OUTCOME_CLIENT_GONE] = "client_gone",
    [OAIP_OUTCOME_TIMEOUT] = "timeout",
    [OAIP_OUTCOME_UPSTREAM_FAILED] = "upstream_failed",
    [OAIP_OUTCOME_PREFLIGHT] = "preflight",
};

oaip_outcome oaip_outcome_of_error(oaip_error_kind kind)
{
    if ((int)kind < 0 || kind >= OAIP_ERR__COUNT) {
        kind = OAIP_ERR_INTERNAL;
    }
    return (oaip_outcome)(OAIP_OUTCOME_ERRORS + (int)kind);
}

const char *oaip_outcome_name(oaip_outcome outcome)
{
    if (outcome < 0 || outcome >= OAIP_OUTCOME__COUNT) {
        return NULL;
    }
    if (outcome < OAIP_OUTCOME_ERRORS) {
        return engine_names[outcome];
    }
    if (outcome == OAIP_OUTCOME_OTHER) {
        return "other";
    }
    return oaip_error_info_get((oaip_error_kind)(outcome - OAIP_OUTCOME_ERRORS))->code;
}
