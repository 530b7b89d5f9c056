/* Unit tests of submit-ca's pure helpers (ca-tools/ca_util.c). */
#include "unit.h"

#include "../../ca-tools/ca_util.h"
#include "db.h"
#include "sqlite/db_sqlite_test.h"

TEST(hostname_accepts_dns_names)
{
    CHECK(ca_valid_hostname("mail.example.com"));
    CHECK(ca_valid_hostname("localhost"));
    CHECK(ca_valid_hostname("a-b.c0"));
    CHECK(ca_valid_hostname("*.example.com"));
    CHECK(ca_valid_hostname("xn--bcher-kva.example"));
}

TEST(hostname_rejects_malformed)
{
    char longlabel[80];

    memset(longlabel, 'a', 64);
    longlabel[64] = '\0';
    CHECK(!ca_valid_hostname(""));
    CHECK(!ca_valid_hostname("bad host"));
    CHECK(!ca_valid_hostname("a..b"));
    CHECK(!ca_valid_hostname(".a"));
    CHECK(!ca_valid_hostname("a."));
    CHECK(!ca_valid_hostname("-a.b"));
    CHECK(!ca_valid_hostname("a-.b"));
    CHECK(!ca_valid_hostname("a,DNS:evil.example"));
    CHECK(!ca_valid_hostname("a.*.b"));
    CHECK(!ca_valid_hostname("*"));
    CHECK(!ca_valid_hostname(longlabel));
    longlabel[63] = '\0';
    CHECK(ca_valid_hostname(longlabel));
}

TEST(email_accepts_mailboxes)
{
    CHECK(ca_valid_email("alice@example.com"));
    CHECK(ca_valid_email("Alice.Smith+tag@Example.COM"));
    CHECK(ca_valid_email("o'brien@example.org"));
}

TEST(email_rejects_injection_and_garbage)
{
    CHECK(!ca_valid_email(""));
    CHECK(!ca_valid_email("alice"));
    CHECK(!ca_valid_email("@example.com"));
    CHECK(!ca_valid_email("alice@"));
    CHECK(!ca_valid_email("a@b@c.d"));
    CHECK(!ca_valid_email("a,email:b@c.d"));
    CHECK(!ca_valid_email("a b@c.d"));
    CHECK(!ca_valid_email("<a@c.d>"));
    CHECK(!ca_valid_email("a\"b@c.d"));
    CHECK(!ca_valid_email("a@*.d"));
    CHECK(!ca_valid_email("a@c.d\n"));
    CHECK(!ca_valid_email("\xc3\xa9@c.d"));
}

TEST(serial_normalizes_every_spelling)
{
    char out[CA_SERIAL_HEX_MAX + 1];

    CHECK(ca_serial_normalize("6e:0f:6c:6e:cb", out, sizeof(out)) == 0);
    CHECK_STR(out, "6E0F6C6ECB");
    CHECK(ca_serial_normalize("6E0F6C6ECB", out, sizeof(out)) == 0);
    CHECK_STR(out, "6E0F6C6ECB");
    CHECK(ca_serial_normalize("00:80", out, sizeof(out)) == 0);
    CHECK_STR(out, "80");
    CHECK(ca_serial_normalize("abc", out, sizeof(out)) == 0);
    CHECK_STR(out, "0ABC");
    CHECK(ca_serial_normalize("1", out, sizeof(out)) == 0);
    CHECK_STR(out, "01");
}

TEST(serial_rejects_non_hex)
{
    char out[CA_SERIAL_HEX_MAX + 1];
    char big[CA_SERIAL_HEX_MAX + 4];

    CHECK(ca_serial_normalize("", out, sizeof(out)) != 0);
    CHECK(ca_serial_normalize("00", out, sizeof(out)) != 0);
    CHECK(ca_serial_normalize("0x12", out, sizeof(out)) != 0);
    CHECK(ca_serial_normalize("12g4", out, sizeof(out)) != 0);
    CHECK(ca_serial_normalize("-12", out, sizeof(out)) != 0);
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK(ca_serial_normalize(big, out, sizeof(out)) != 0);
    CHECK(ca_serial_normalize("ABCDEF", out, 6) != 0);
    CHECK(ca_serial_normalize("ABCDEF", out, 7) == 0);
}

TEST(reason_names_round_trip)
{
    static const char *const names[] = {
        "unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
        "cessationOfOperation", "certificateHold", "removeFromCRL", "privilegeWithdrawn",
        "aACompromise",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int code = ca_reason_parse(names[i]);
        CHECK(code != CA_REASON_NONE);
        CHECK_STR(ca_reason_name(code), names[i]);
    }
    CHECK(ca_reason_parse("keyCompromise") == 1);
    CHECK(ca_reason_parse("removeFromCRL") == 8);
    CHECK(ca_reason_parse("aACompromise") == 10);
    CHECK(ca_reason_parse("keycompromise") == CA_REASON_NONE);
    CHECK(ca_reason_parse("") == CA_REASON_NONE);
    CHECK(ca_reason_name(7) == NULL);
}

TEST(iso_parse_reads_database_times)
{
    long long t = -1;

    CHECK(ca_iso_parse("1970-01-01T00:00:00Z", &t) == 0);
    CHECK(t == 0);
    CHECK(ca_iso_parse("2024-02-29T12:34:56Z", &t) == 0);
    CHECK(t == 1709210096LL);
    CHECK(ca_iso_parse("2050-01-01T00:00:00Z", &t) == 0);
    CHECK(t == 2524608000LL);
}

TEST(iso_parse_rejects_other_forms)
{
    long long t;

    CHECK(ca_iso_parse("", &t) != 0);
    CHECK(ca_iso_parse("2024-02-29 12:34:56Z", &t) != 0);
    CHECK(ca_iso_parse("2024-02-29T12:34:56", &t) != 0);
    CHECK(ca_iso_parse("2024-02-29T12:34:56.123Z", &t) != 0);
    CHECK(ca_iso_parse("2024-13-01T00:00:00Z", &t) != 0);
    CHECK(ca_iso_parse("2024-04-31T00:00:00Z", &t) != 0);
    CHECK(ca_iso_parse("2024-01-01T24:00:00Z", &t) != 0);
    CHECK(ca_iso_parse("2024-01-0xT00:00:00Z", &t) != 0);
    CHECK(ca_iso_parse("+024-01-01T00:00:00Z", &t) != 0);
}

TEST(password_uses_unambiguous_alphabet)
{
    unsigned char rnd[256];
    char pw[17];

    for (int i = 0; i < 256; i++)
        rnd[i] = (unsigned char)i;
    CHECK(ca_password_from_bytes(rnd, sizeof(rnd), pw, sizeof(pw), 16) == 0);
    CHECK(strlen(pw) == 16);
    CHECK_STR(pw, "23456789abcdefgh");
    for (size_t i = 0; i < 16; i++)
        CHECK(strchr("0O1lIio", pw[i]) == NULL);
}

TEST(password_skips_biased_bytes)
{
    /* 55 characters: 220 is the largest multiple below 256, so 220..255 are skipped. */
    unsigned char rnd[20];
    char pw[5];

    memset(rnd, 255, sizeof(rnd));
    CHECK(ca_password_from_bytes(rnd, sizeof(rnd), pw, sizeof(pw), 4) != 0);
    rnd[3] = 0;
    rnd[7] = 54;
    rnd[9] = 55;
    rnd[19] = 219;
    CHECK(ca_password_from_bytes(rnd, sizeof(rnd), pw, sizeof(pw), 4) == 0);
    CHECK_STR(pw, "2Z2Z");
    CHECK(ca_password_from_bytes(rnd, sizeof(rnd), pw, 4, 4) != 0);
}

/* ---- the ca_log table (db.c) ----------------------------------------------------- */

struct log_rows {
    int n;
    struct db_ca_log_row last;
};

static int count_log_cb(void *arg, const struct db_ca_log_row *r)
{
    struct log_rows *lr = arg;

    lr->n++;
    lr->last = *r;
    return 0;
}

static struct db *ca_mem_db(void)
{
    char err[512] = "";
    struct db *db = db_open(":memory:", err, sizeof(err));

    if (db == NULL)
        printf("  db_open(:memory:): %s\n", err);
    return db;
}

TEST(ca_log_records_and_filters)
{
    struct db *db = ca_mem_db();
    struct db_ca_log e = { 0, "root", "alice", "issue", "0A1B", "bob", "email=bob@example.com" };
    struct db_ca_log crl = { 1000, "ops", NULL, "crl", NULL, NULL, "number=7" };
    struct log_rows lr;

    CHECK(db != NULL);
    if (db == NULL)
        return;
    CHECK(db_ca_log_insert(db, &e) == DB_OK);
    CHECK(db_ca_log_insert(db, &crl) == DB_OK);
    memset(&lr, 0, sizeof(lr));
    CHECK(db_ca_log_list(db, NULL, NULL, count_log_cb, &lr) == DB_OK);
    CHECK(lr.n == 2);
    CHECK_STR(lr.last.command, "crl");
    CHECK_STR(lr.last.sudo_user, "");
    CHECK_STR(lr.last.serial, "");
    CHECK(lr.last.uid == 1000);
    CHECK(lr.last.ts.sec > 1700000000 && lr.last.ts.msec >= 0 && lr.last.ts.msec < 1000);
    memset(&lr, 0, sizeof(lr));
    CHECK(db_ca_log_list(db, "bob", NULL, count_log_cb, &lr) == DB_OK);
    CHECK(lr.n == 1);
    CHECK_STR(lr.last.unix_user, "root");
    CHECK_STR(lr.last.sudo_user, "alice");
    CHECK_STR(lr.last.detail, "email=bob@example.com");
    memset(&lr, 0, sizeof(lr));
    /* Serials are stored upper-case; a lower-case filter finds them. */
    CHECK(db_ca_log_list(db, NULL, "0a1b", count_log_cb, &lr) == DB_OK);
    CHECK(lr.n == 1);
    memset(&lr, 0, sizeof(lr));
    CHECK(db_ca_log_list(db, "nobody", NULL, count_log_cb, &lr) == DB_OK);
    CHECK(lr.n == 0);
    db_close(db);
}

TEST(ca_log_is_append_only)
{
    struct db *db = ca_mem_db();
    struct db_ca_log e = { 0, "root", NULL, "init", "01", NULL, "" };
    struct log_rows lr;

    CHECK(db != NULL);
    if (db == NULL)
        return;
    CHECK(db_ca_log_insert(db, &e) == DB_OK);
    CHECK(db_sqlite_exec_for_test(db, "UPDATE ca_log SET command = 'x'") == DB_ERROR);
    CHECK(strstr(db_errmsg(db), "append-only") != NULL);
    CHECK(db_sqlite_exec_for_test(db, "DELETE FROM ca_log") == DB_ERROR);
    memset(&lr, 0, sizeof(lr));
    CHECK(db_ca_log_list(db, NULL, NULL, count_log_cb, &lr) == DB_OK);
    CHECK(lr.n == 1);
    CHECK_STR(lr.last.command, "init");
    db_close(db);
}

int main(void)
{
    RUN(hostname_accepts_dns_names);
    RUN(hostname_rejects_malformed);
    RUN(email_accepts_mailboxes);
    RUN(email_rejects_injection_and_garbage);
    RUN(serial_normalizes_every_spelling);
    RUN(serial_rejects_non_hex);
    RUN(reason_names_round_trip);
    RUN(iso_parse_reads_database_times);
    RUN(iso_parse_rejects_other_forms);
    RUN(password_uses_unambiguous_alphabet);
    RUN(password_skips_biased_bytes);
    RUN(ca_log_records_and_filters);
    RUN(ca_log_is_append_only);
    return UNIT_DONE();
}
