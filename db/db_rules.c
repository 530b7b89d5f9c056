/*
 * The rules of the database that hold for any backend (db.h, db_rules.h): what a
 * user name and a sender address may be, when a certificate is in force, the minutes
 * of the rate window, and the text form of stored times. No SQL here.
 */
#include "db_rules.h"
#include "util.h"

#include <string.h>

#define DB_ADDRESS_MAX 320

/* ---- names and addresses ----------------------------------------------------- */

int db_user_name_valid(const char *name)
{
    size_t n = 0;

    if (name == NULL || name[0] == '.' || name[0] == '-')
        return 0;
    for (const char *p = name; *p != '\0'; p++, n++) {
        char c = *p;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return n >= 1 && n <= 64;
}

/* RFC 5322 atext, plus '.' between atoms. */
static int local_char_valid(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL);
}

int db_sender_address_valid(const char *address)
{
    const char *at, *p;
    size_t label = 0;

    if (address == NULL || strlen(address) > DB_ADDRESS_MAX)
        return 0;
    at = strchr(address, '@');
    if (at == NULL || strchr(at + 1, '@') != NULL)
        return 0;
    for (p = address; p < at; p++)
        if (!local_char_valid(*p))
            return 0;
    if (at > address && (address[0] == '.' || at[-1] == '.' || strstr(address, "..") != NULL))
        return 0;
    if (at[1] == '\0')
        return 0;
    for (p = at + 1; *p != '\0'; p++) {
        char c = *p;

        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0;
}

/* ---- certificates ------------------------------------------------------------- */

const char *db_cert_status_name(enum cert_status status)
{
    return status == CERT_VALID ? "valid" : "revoked";
}

int db_cert_status_parse(const char *name, enum cert_status *out)
{
    if (name != NULL && strcmp(name, "valid") == 0)
        *out = CERT_VALID;
    else if (name != NULL && strcmp(name, "revoked") == 0)
        *out = CERT_REVOKED;
    else
        return DB_ERROR;
    return DB_OK;
}

/* A certificate is no longer in force from the second its notAfter names. */
int db_cert_in_force(const struct db_cert *c, int64_t now)
{
    return c->status == CERT_VALID && now < c->not_after;
}

/* ---- rule maps -------------------------------------------------------------------- */

static const char *const rule_field_names[] = { "email", "san-email", "upn", "cn" };

const char *db_rule_field_name(enum db_rule_field f)
{
    return (unsigned)f < sizeof(rule_field_names) / sizeof(rule_field_names[0])
               ? rule_field_names[f] : "?";
}

int db_rule_field_parse(const char *name, enum db_rule_field *out)
{
    for (unsigned i = 0; name != NULL && i < sizeof(rule_field_names) / sizeof(rule_field_names[0]);
         i++)
        if (strcmp(name, rule_field_names[i]) == 0) {
            *out = (enum db_rule_field)i;
            return DB_OK;
        }
    return DB_ERROR;
}

/* A device's row is written again only when it was last written this long ago. */
int64_t db_device_rewrite_before(int64_t now)
{
    return now - 3600;
}

/* ---- rate window ----------------------------------------------------------------- */

int64_t db_rate_minute(int64_t now)
{
    return now / 60;
}

int64_t db_rate_window_after(int64_t now)
{
    return db_rate_minute(now) - 60;
}

int db_rate_prune_due(int64_t now)
{
    return now % 600 == 0;
}

int64_t db_rate_prune_before(int64_t now)
{
    return db_rate_minute(now) - 120;
}

/* ---- times ------------------------------------------------------------------------ */

void db_time_iso(int64_t t, char out[DB_ISO_LEN])
{
    iso_time_utc(out, DB_ISO_LEN, (long long)t);
    if (strlen(out) != 20)
        out[0] = '\0';
}

void db_time_key(int64_t t, char out[DB_ISO_LEN])
{
    db_time_iso(t, out);
    out[out[0] != '\0' ? 19 : 0] = '\0';
}

int db_time_parse(const char *s, struct db_stamp *out)
{
    const char *dot;
    long long sec;
    int ms = 0;

    if (s == NULL || iso_time_parse(s, &sec) != 0)
        return DB_ERROR;
    /* iso_time_parse keeps whole seconds; the first three decimals are the milliseconds. */
    dot = strchr(s, '.');
    if (dot != NULL) {
        int n = 0;

        for (const char *p = dot + 1; n < 3 && *p >= '0' && *p <= '9'; p++, n++)
            ms = ms * 10 + (*p - '0');
        for (; n < 3; n++)
            ms *= 10;
    }
    out->sec = sec;
    out->msec = ms;
    return DB_OK;
}

void db_stamp_or_none(const char *s, struct db_stamp *out)
{
    if (out == NULL)
        return;
    if (db_time_parse(s, out) != DB_OK) {
        out->sec = DB_TIME_NONE;
        out->msec = 0;
    }
}

int db_prune_key(int64_t before, char key[DB_ISO_LEN])
{
    db_time_key(before, key);
    if (before == DB_TIME_NONE || strlen(key) != 19)
        return DB_ERROR;
    memcpy(key + 19, ".000Z", 6);
    return DB_OK;
}

const char *db_time_text(int64_t t, char *out, size_t outlen)
{
    char iso[DB_ISO_LEN] = "";

    if (t != DB_TIME_NONE)
        db_time_iso(t, iso);
    str_lcpy(out, iso, outlen);
    return out;
}

const char *db_stamp_text(const struct db_stamp *s, char *out, size_t outlen)
{
    char t[DB_ISO_LEN];

    db_time_iso(s->sec, t);
    if (t[0] == '\0') {
        str_lcpy(out, "", outlen);
        return out;
    }
    t[19] = '\0';
    (void)str_fmt(out, outlen, "%s.%03dZ", t, s->msec >= 0 && s->msec <= 999 ? s->msec : 0);
    return out;
}
