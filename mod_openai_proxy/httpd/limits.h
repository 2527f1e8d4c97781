/* OpenAIProxyRateLimit and OpenAIProxyTokenBudget at request time: who the
 * caller is, whether they may go on, and the tokens they spent. */
#ifndef OAIP_LIMITS_H
#define OAIP_LIMITS_H

#include <httpd.h>

#include "core/errors.h"
#include "engine/upstream.h"
#include "httpd/config.h"
#include "httpd/request_record.h"

/* Before anything reaches the upstream: counts the request against every
 * rate limit and looks at every token budget of `conf`. Returns 1 when the
 * request may go on, else 0 with `refusal` filled in. */
int oaip_limits_check(request_rec *r, const oaip_dir_conf *conf, oaip_refusal *refusal);

/* Once the body that goes upstream is known, before anything else may
 * refuse the request: reserves its worst case (token_estimate.h) in every
 * budget the check looked at, counted then compared, so that parallel
 * requests see each other. Refused (0, `refusal` filled in, the
 * reservations given back) when a budget was already spent or reserved up
 * before this one. Nothing to reserve without a JSON body. */
int oaip_limits_reserve(request_rec *r, const oaip_upstream_request *req,
                        oaip_refusal *refusal);

/* After the answer (log_transaction), exactly once: settles each budget to
 * the tokens the upstream reported or the proxy estimated (`record`'s usage;
 * 0 without any), adding real - reserved. */
void oaip_limits_charge(request_rec *r, oaip_request_record *record);

#endif
