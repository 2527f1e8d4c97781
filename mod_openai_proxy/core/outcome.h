/* How a request ended, for the access log (OPENAI_OUTCOME) and the status
 * page: the engine's words, then one outcome per error the proxy answers
 * with itself (their code, core/errors.h), then "other" (an error httpd
 * answered itself with a status the proxy has no kind for). */
#ifndef OAIP_OUTCOME_H
#define OAIP_OUTCOME_H

#include "core/errors.h"

typedef enum {
    OAIP_OUTCOME_NONE = -1,       /* not known yet */
    OAIP_OUTCOME_OK = 0,          /* the upstream answered 2xx, relayed whole */
    OAIP_OUTCOME_UPSTREAM_ERROR,  /* the upstream's own error answer, relayed */
    OAIP_OUTCOME_CLIENT_GONE,     /* the client left before the end */
    OAIP_OUTCOME_TIMEOUT,         /* a connect, first-byte or idle timeout */
    OAIP_OUTCOME_UPSTREAM_FAILED, /* no usable answer (unreachable, broken) */
    OAIP_OUTCOME_PREFLIGHT,       /* a CORS preflight answered by the proxy */
    OAIP_OUTCOME_ERRORS,          /* + oaip_error_kind: the proxy's own errors */
    OAIP_OUTCOME_OTHER = OAIP_OUTCOME_ERRORS + OAIP_ERR__COUNT,
    OAIP_OUTCOME__COUNT
} oaip_outcome;

/* The outcome of answering with the proxy's own error `kind`. */
oaip_outcome oaip_outcome_of_error(oaip_error_kind kind);

/* Its name ("ok", "rate_limit_exceeded", "other"); NULL for NONE or out of
 * range. */
const char *oaip_outcome_name(oaip_outcome outcome);

#endif
