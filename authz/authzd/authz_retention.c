/* The daily prune of old audit rows (see authz_retention.h). */
#include "authz_retention.h"

#include "authz.h"

#include "log.h"
#include "util.h"

#define RETENTION_INTERVAL 86400
#define RETENTION_RETRY 3600

void retention_tick(time_t now)
{
    static time_t next;
    char before[32], oldest[DB_TIME_TEXT_LEN], newest[DB_TIME_TEXT_LEN];
    struct db_stamp first, last;
    struct db_admin_log who = { 0 };
    struct db_actor actor;
    long long count = 0, cutoff = (long long)now - cfg.audit_retention * 86400LL;

    if (cfg.audit_retention <= 0 || now < next)
        return;
    iso_time_utc(before, sizeof(before), cutoff);
    db_actor_get(&actor);
    db_actor_fill(&who, &actor, "submitd-authz");
    if (db_audit_prune(db, cutoff, &who, &count, &first, &last) != DB_OK) {
        log_err("audit_retention: the audit rows before %s could not be pruned: %s; "
                "tried again in an hour", before, db_errmsg(db));
        next = now + RETENTION_RETRY;
        return;
    }
    next = now + RETENTION_INTERVAL;
    if (count > 0)
        log_info("audit_retention %d days: %lld audit row%s before %s removed (%s to %s)",
                 cfg.audit_retention, count, count == 1 ? "" : "s", before,
                 db_stamp_text(&first, oldest, sizeof(oldest)),
                 db_stamp_text(&last, newest, sizeof(newest)));
    else
        log_info("audit_retention %d days: no audit rows before %s", cfg.audit_retention,
                 before);
}
