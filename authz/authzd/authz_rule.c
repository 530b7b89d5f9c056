/* Rule maps of enterprise CAs (see authz_rule.h). */
#include "authz_rule.h"

#include "authz.h"
#include "cert_field.h"

#include "log.h"
#include "util.h"

#include <string.h>

/* The field numbers of db.h and cert_field.h are one list. */
_Static_assert((int)DB_RULE_EMAIL == (int)CERT_FIELD_EMAIL &&
                   (int)DB_RULE_SAN_EMAIL == (int)CERT_FIELD_SAN_EMAIL &&
                   (int)DB_RULE_UPN == (int)CERT_FIELD_UPN && (int)DB_RULE_CN == (int)CERT_FIELD_CN,
               "rule fields differ between db.h and cert_field.h");

static enum rule_outcome refuse(struct rule_answer *out, const char *why, const char *detail)
{
    str_fmt(out->reply, sizeof(out->reply), "535 5.7.8 Not authorized: %s", why);
    str_fmt(out->reason, sizeof(out->reason), "%s (%s)", detail, out->via);
    out->user[0] = '\0';
    return RULE_REFUSED;
}

struct owners {
    int n;
    char user[128];
};

static int exact_owner(void *arg, const char *user, const char *address, int domain_owner)
{
    struct owners *o = arg;

    (void)address;
    if (domain_owner)
        return 1;     /* exact owners come first: the rest are domain owners */
    if (o->n++ == 0)
        str_lcpy(o->user, user, sizeof(o->user));
    return o->n > 1;
}

enum rule_outcome rule_identity(const struct cert_result *cr, struct rule_answer *out)
{
    struct db_map_rule rule;
    struct cert_field_rule fr;
    enum cert_field f;
    enum cert_field_status s;
    char mapped[CERT_FIELD_SIZE], detail[400];
    const char *value;
    int rc;

    memset(out, 0, sizeof(*out));
    if (cr->ca_canon[0] == '\0')
        return RULE_NONE;
    rc = db_map_rule_get(db, cr->ca_canon, &rule);
    if (rc == DB_ERROR) {
        log_err("rule lookup failed: %s", db_errmsg(db));
        return RULE_ERROR;
    }
    if (rc != DB_OK)
        return RULE_NONE;
    f = (enum cert_field)rule.field;
    value = cr->field_value[f];
    str_fmt(out->via, sizeof(out->via), "rule %s of %s: %s", cert_field_name(f),
            rule.issuer_text, value[0] ? value : "-");
    s = (enum cert_field_status)cr->field_status[f];
    if (s != CERT_FIELD_OK)
        return refuse(out, cert_field_reason(f, s), cert_field_reason(f, s));
    fr.field = f;
    fr.strip_domain = rule.strip_domain;
    fr.require_domain = rule.require_domain;
    s = cert_field_domain(value, &fr, mapped);
    if (s != CERT_FIELD_OK)
        return refuse(out, cert_field_reason(f, s), cert_field_reason(f, s));
    if ((f == CERT_FIELD_EMAIL || f == CERT_FIELD_SAN_EMAIL) && rule.strip_domain[0] == '\0') {
        /* An address names the one user who owns exactly it; an address shared by
         * several users names nobody, and a domain owner does not count. */
        struct owners o = { 0, "" };

        if (!db_sender_address_valid(mapped)) {
            str_fmt(detail, sizeof(detail), "no user owns %s", mapped);
            return refuse(out, "unknown user", detail);
        }
        rc = db_sender_owners(db, mapped, exact_owner, &o);
        if (rc == DB_ERROR) {
            log_err("sender owner lookup failed: %s", db_errmsg(db));
            return RULE_ERROR;
        }
        if (o.n == 0) {
            str_fmt(detail, sizeof(detail), "no user owns %s", mapped);
            return refuse(out, "unknown user", detail);
        }
        if (o.n > 1) {
            str_fmt(detail, sizeof(detail), "%s is owned by several users", mapped);
            return refuse(out, "address owned by several users", detail);
        }
        str_lcpy(out->user, o.user, sizeof(out->user));
    } else {
        if (!db_user_name_valid(mapped)) {
            str_fmt(detail, sizeof(detail), "%s is not a user name", mapped);
            return refuse(out, "unknown user", detail);
        }
        str_lcpy(out->user, mapped, sizeof(out->user));
    }
    str_fmt(out->reason, sizeof(out->reason), "certificate mapped by %s", out->via);
    return RULE_USER;
}
