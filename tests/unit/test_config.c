/*
 * Unit tests of submitd/lib/config.c: config_load() on temporary files (defaults,
 * relative paths, errors naming file:line and key), host:port and list helpers.
 */
#include "config.h"
#include "log.h"
#include "unit.h"
#include "util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];     /* as created */
static char realdir[PATH_MAX];    /* its canonical form, what config_load reports */
static char conf[PATH_MAX];       /* tmpdir/etc/submitd.conf */
static struct config cfg;         /* large: not on the stack */
static char err[2048];

static int write_conf(const char *text)
{
    int fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), rc;

    if (fd < 0)
        return -1;
    rc = write_all(fd, text, strlen(text));
    close(fd);
    return rc;
}

/* Loads text as the configuration; returns config_load's result, err holds the message. */
static int load_text(const char *text)
{
    err[0] = '\0';
    if (write_conf(text) != 0) {
        printf("  cannot write %s\n", conf);
        return 99;
    }
    return config_load(&cfg, conf, err, sizeof(err));
}

/* Checks that loading text fails with exactly "conf:LINE: rest". */
static int load_fails_with(const char *text, int line, const char *rest)
{
    char want[PATH_MAX + 512];

    if (line > 0)
        str_fmt(want, sizeof(want), "%s:%d: %s", conf, line, rest);
    else
        str_fmt(want, sizeof(want), "%s: %s", conf, rest);
    if (load_text(text) != -1) {
        printf("  accepted: %s", text);
        return 0;
    }
    if (strcmp(err, want) != 0) {
        printf("  error \"%s\"\n  wanted \"%s\"\n", err, want);
        return 0;
    }
    return 1;
}

static const char *in_dir(const char *rel)
{
    static char buf[PATH_MAX];

    str_fmt(buf, sizeof(buf), "%s/etc/%s", realdir, rel);
    return buf;
}

TEST(test_defaults)
{
    CHECK(load_text("upstream = mx.example.com:25\n") == 0);
    CHECK_STR(err, "");
    CHECK_STR(cfg.path, in_dir("submitd.conf"));
    {
        char dir[PATH_MAX];
        str_fmt(dir, sizeof(dir), "%s/etc", realdir);
        CHECK_STR(cfg.dir, dir);
    }
    CHECK_STR(cfg.listen, "0.0.0.0:587");
    CHECK_STR(cfg.listen_tls, "");
    CHECK_STR(cfg.upstream, "mx.example.com:25");
    /* Default relative paths are relative to the configuration's directory. */
    CHECK_STR(cfg.tls_cert, in_dir("server.crt"));
    CHECK_STR(cfg.tls_key, in_dir("server.key"));
    CHECK_STR(cfg.ca_dir, in_dir("ca"));
    CHECK_STR(cfg.client_ca, in_dir("ca/ca.crt"));
    CHECK_STR(cfg.crl, in_dir("ca/crl.pem"));
    CHECK_STR(cfg.database, in_dir("submitd.db"));
    CHECK_STR(cfg.spool, in_dir("spool"));
    CHECK_STR(cfg.upstream_ca, "");
    CHECK_STR(cfg.upstream_cert, "");
    CHECK_STR(cfg.upstream_key, "");
    CHECK_STR(cfg.pam_confdir, "");
    CHECK(cfg.upstream_tls == UPSTREAM_TLS_VERIFY);
    CHECK_STR(cfg.user, "submitd");
    CHECK_STR(cfg.pam_service, "submitd");
    CHECK(cfg.pam_account_check == 1);
    CHECK(cfg.auth_password == AUTH_PASSWORD_NO);
    CHECK(cfg.max_message_size == 26214400);
    CHECK(cfg.max_header_size == 1048576);
    CHECK(cfg.max_recipients == 100);
    CHECK(cfg.max_sessions == 1000);
    CHECK(cfg.max_sessions_per_ip == 50);
    CHECK(cfg.rate_messages_per_hour == 500);
    CHECK(cfg.timeout == 300);
    CHECK(cfg.tls_handshake_timeout == 30);
    CHECK(cfg.check_header_from == 1);
    CHECK(cfg.hide_client == 0);
    CHECK(cfg.retry_min == 60);
    CHECK(cfg.retry_max == 3600);
    CHECK(cfg.queue_lifetime == 432000);
    CHECK(cfg.log_level == LOG_LVL_INFO);
    CHECK(cfg.smtp_workers == 0);
    CHECK(cfg.hostname[0] != '\0');
    CHECK(config_check_required(&cfg, err, sizeof(err)) == 0);
}

TEST(test_all_keys_set)
{
    static const char text[] =
        "# a full configuration\n"
        "hostname = mail.example.com\n"
        "listen = 127.0.0.1:2587, [::1]:2587\n"
        "listen_tls = 127.0.0.1:2465\n"
        "tls_cert = certs/server.pem\n"
        "tls_key = /etc/ssl/private/server.key\n"
        "ca_dir = ../ca\n"
        "client_ca = ca/clients.pem\n"
        "crl =\n"
        "database = /var/lib/submitd/submitd.db\n"
        "spool = queue\n"
        "upstream = mx1.example.com:25,mx2.example.com:587\n"
        "upstream_tls = encrypt\n"
        "upstream_ca = upstream-ca.pem\n"
        "upstream_cert = up.crt\n"
        "upstream_key = up.key\n"
        "user = mail\n"
        "pam_service = smtp\n"
        "pam_confdir = pam.d\n"
        "pam_account_check = no\n"
        "auth_password = fallback\n"
        "max_message_size = 10M\n"
        "max_recipients = 7\n"
        "max_sessions = 20\n"
        "max_sessions_per_ip = 2\n"
        "rate_messages_per_hour = 0\n"
        "timeout = 30\n"
        "tls_handshake_timeout = 20s\n"
        "check_header_from = off\n"
        "hide_client = true\n"
        "retry_min = 10\n"
        "retry_max = 10\n"
        "queue_lifetime = 3600\n"
        "log_level = debug\n"
        "smtp_workers = 4\n";

    CHECK(load_text(text) == 0);
    CHECK_STR(err, "");
    CHECK_STR(cfg.hostname, "mail.example.com");
    CHECK_STR(cfg.listen, "127.0.0.1:2587, [::1]:2587");
    CHECK_STR(cfg.listen_tls, "127.0.0.1:2465");
    CHECK_STR(cfg.tls_cert, in_dir("certs/server.pem"));
    CHECK_STR(cfg.tls_key, "/etc/ssl/private/server.key");
    CHECK_STR(cfg.ca_dir, in_dir("../ca"));
    CHECK_STR(cfg.client_ca, in_dir("ca/clients.pem"));
    CHECK_STR(cfg.crl, "");                 /* empty: no CRL check */
    CHECK_STR(cfg.database, "/var/lib/submitd/submitd.db");
    CHECK_STR(cfg.spool, in_dir("queue"));
    CHECK_STR(cfg.upstream, "mx1.example.com:25,mx2.example.com:587");
    CHECK(cfg.upstream_tls == UPSTREAM_TLS_ENCRYPT);
    CHECK_STR(cfg.upstream_ca, in_dir("upstream-ca.pem"));
    CHECK_STR(cfg.upstream_cert, in_dir("up.crt"));
    CHECK_STR(cfg.upstream_key, in_dir("up.key"));
    CHECK_STR(cfg.user, "mail");
    CHECK_STR(cfg.pam_service, "smtp");
    CHECK_STR(cfg.pam_confdir, in_dir("pam.d"));
    CHECK(cfg.pam_account_check == 0);
    CHECK(cfg.auth_password == AUTH_PASSWORD_FALLBACK);
    CHECK(cfg.max_message_size == 10 * 1024 * 1024);
    CHECK(cfg.max_recipients == 7);
    CHECK(cfg.max_sessions == 20);
    CHECK(cfg.max_sessions_per_ip == 2);
    CHECK(cfg.rate_messages_per_hour == 0);
    CHECK(cfg.timeout == 30);
    CHECK(cfg.tls_handshake_timeout == 20);
    CHECK(cfg.check_header_from == 0);
    CHECK(cfg.hide_client == 1);
    CHECK(cfg.retry_min == 10 && cfg.retry_max == 10);
    CHECK(cfg.queue_lifetime == 3600);
    CHECK(cfg.log_level == LOG_LVL_DEBUG);
    CHECK(cfg.smtp_workers == 4);
}

TEST(test_comments_and_spacing)
{
    CHECK(load_text("\n# comment = x\n   # indented comment\n\t\n"
                    "timeout=7   # trailing comment\n"
                    "  hide_client\t=\tyes  \r\n"
                    "upstream = mx:25#no space before the comment\n") == 0);
    CHECK_STR(err, "");
    CHECK(cfg.timeout == 7);
    CHECK(cfg.hide_client == 1);
    CHECK_STR(cfg.upstream, "mx:25");
    /* A file without a final newline. */
    CHECK(load_text("timeout = 8") == 0);
    CHECK(cfg.timeout == 8);
    /* An empty file gives the defaults. */
    CHECK(load_text("") == 0);
    CHECK(cfg.timeout == 300);
}

TEST(test_unknown_key)
{
    CHECK(load_fails_with("timeout = 5\n\nbogus_key = 1\n", 3, "bogus_key: unknown key"));
    /* Keys are case-sensitive and exact. */
    CHECK(load_fails_with("Timeout = 5\n", 1, "Timeout: unknown key"));
    CHECK(load_fails_with("# x\ntime out = 5\n", 2, "time out: unknown key"));
    CHECK(load_fails_with("= 5\n", 1, ": unknown key"));
}

TEST(test_not_key_value)
{
    CHECK(load_fails_with("timeout 5\n", 1, "expected \"key = value\", got \"timeout 5\""));
}

TEST(test_bad_integers)
{
    CHECK(load_fails_with("max_recipients = 0\n", 1,
                          "max_recipients: expected an integer from 1 to 100000, got \"0\""));
    CHECK(load_fails_with("max_recipients = 5s\n", 1,
                          "max_recipients: expected an integer from 1 to 100000, got \"5s\""));
    CHECK(load_fails_with("max_recipients =\n", 1,
                          "max_recipients: expected an integer from 1 to 100000, got \"\""));
    CHECK(load_fails_with("max_recipients = 100001\n", 1,
                          "max_recipients: expected an integer from 1 to 100000, got \"100001\""));
    CHECK(load_fails_with("rate_messages_per_hour = -1\n", 1,
                          "rate_messages_per_hour: expected an integer from 0 to 100000000, got \"-1\""));
    CHECK(load_fails_with("smtp_workers = 99999999999999999999\n", 1,
                          "smtp_workers: expected an integer from 0 to 256, got \"99999999999999999999\""));
    CHECK(load_text("timeout = 86400\n") == 0 && cfg.timeout == 86400);
    CHECK(load_text("timeout = 1\n") == 0 && cfg.timeout == 1);
}

#define DURATION_ERR(key, lo, hi, v) \
    key ": expected a duration from " lo " to " hi " seconds (suffix s, m, h or d allowed), got \"" v "\""

/* Durations (DESIGN §6): seconds, or s, m, h, d suffixes, within each key's range. */
TEST(test_durations)
{
    CHECK(load_text("tls_handshake_timeout = 45\n") == 0 && cfg.tls_handshake_timeout == 45);
    CHECK(load_text("tls_handshake_timeout = 45s\n") == 0 && cfg.tls_handshake_timeout == 45);
    CHECK(load_text("tls_handshake_timeout = 2m\n") == 0 && cfg.tls_handshake_timeout == 120);
    CHECK(load_text("tls_handshake_timeout = 1h\n") == 0 && cfg.tls_handshake_timeout == 3600);
    CHECK(load_text("tls_handshake_timeout = 1d\n") == 0 && cfg.tls_handshake_timeout == 86400);
    CHECK(load_text("timeout = 5m\n") == 0 && cfg.timeout == 300 && cfg.tls_handshake_timeout == 30);
    CHECK(load_text("queue_lifetime = 5d\nretry_min = 30s\nretry_max = 2h\npam_timeout = 1m\n") == 0);
    CHECK(cfg.queue_lifetime == 432000 && cfg.retry_min == 30 && cfg.retry_max == 7200);
    CHECK(cfg.pam_timeout == 60);
    CHECK(load_fails_with("tls_handshake_timeout = 0\n", 1,
                          DURATION_ERR("tls_handshake_timeout", "1", "86400", "0")));
    CHECK(load_fails_with("tls_handshake_timeout = 0s\n", 1,
                          DURATION_ERR("tls_handshake_timeout", "1", "86400", "0s")));
    CHECK(load_fails_with("tls_handshake_timeout = 2d\n", 1,
                          DURATION_ERR("tls_handshake_timeout", "1", "86400", "2d")));
    CHECK(load_fails_with("tls_handshake_timeout = 1441m\n", 1,
                          DURATION_ERR("tls_handshake_timeout", "1", "86400", "1441m")));
    CHECK(load_fails_with("tls_handshake_timeout = 10w\n", 1,
                          DURATION_ERR("tls_handshake_timeout", "1", "86400", "10w")));
    CHECK(load_fails_with("tls_handshake_timeout = 10ss\n", 1,
                          DURATION_ERR("tls_handshake_timeout", "1", "86400", "10ss")));
    CHECK(load_fails_with("tls_handshake_timeout = s\n", 1,
                          DURATION_ERR("tls_handshake_timeout", "1", "86400", "s")));
    CHECK(load_fails_with("tls_handshake_timeout = -5s\n", 1,
                          DURATION_ERR("tls_handshake_timeout", "1", "86400", "-5s")));
    CHECK(load_fails_with("tls_handshake_timeout =\n", 1,
                          DURATION_ERR("tls_handshake_timeout", "1", "86400", "")));
    CHECK(load_fails_with("timeout = 99999999999999999999d\n", 1,
                          DURATION_ERR("timeout", "1", "86400", "99999999999999999999d")));
    CHECK(load_fails_with("pam_timeout = 6m\n", 1, DURATION_ERR("pam_timeout", "1", "300", "6m")));
}

TEST(test_bad_bools)
{
    static const char *const yes[] = { "yes", "true", "1", "on" };
    static const char *const no[] = { "no", "false", "0", "off" };
    char text[128];

    for (size_t i = 0; i < 4; i++) {
        str_fmt(text, sizeof(text), "hide_client = %s\n", yes[i]);
        CHECK(load_text(text) == 0 && cfg.hide_client == 1);
        str_fmt(text, sizeof(text), "check_header_from = %s\n", no[i]);
        CHECK(load_text(text) == 0 && cfg.check_header_from == 0);
    }
    CHECK(load_fails_with("hide_client = maybe\n", 1,
                          "hide_client: expected yes or no, got \"maybe\""));
    CHECK(load_fails_with("hide_client = 2\n", 1, "hide_client: expected yes or no, got \"2\""));
    CHECK(load_fails_with("pam_account_check =\n", 1,
                          "pam_account_check: expected yes or no, got \"\""));
}

TEST(test_enums)
{
    CHECK(load_text("upstream_tls = verify\n") == 0 && cfg.upstream_tls == UPSTREAM_TLS_VERIFY);
    CHECK(load_text("upstream_tls = encrypt\n") == 0 && cfg.upstream_tls == UPSTREAM_TLS_ENCRYPT);
    CHECK(load_text("upstream_tls = none\n") == 0 && cfg.upstream_tls == UPSTREAM_TLS_NONE);
    CHECK(load_fails_with("upstream_tls = yes\n", 1,
                          "upstream_tls: expected verify, encrypt or none, got \"yes\""));
    CHECK(load_fails_with("upstream_tls = VERIFY\n", 1,
                          "upstream_tls: expected verify, encrypt or none, got \"VERIFY\""));
    CHECK(load_text("auth_password = second-factor\n") == 0 &&
          cfg.auth_password == AUTH_PASSWORD_SECOND_FACTOR);
    CHECK(load_text("auth_password = no\n") == 0 && cfg.auth_password == AUTH_PASSWORD_NO);
    CHECK(load_fails_with("auth_password = yes\n", 1,
                          "auth_password: expected no, fallback or second-factor, got \"yes\""));
    CHECK(load_text("log_level = error\n") == 0 && cfg.log_level == LOG_LVL_ERR);
    CHECK(load_text("log_level = warning\n") == 0 && cfg.log_level == LOG_LVL_WARN);
    CHECK(load_fails_with("log_level = loud\n", 1,
                          "log_level: expected error, warning, info or debug, got \"loud\""));
}

TEST(test_proxy_keys)
{
    CHECK(load_text("upstream = mx:25\n") == 0 && cfg.proxy_protocol == PROXY_PROTOCOL_NO &&
          cfg.proxy_trusted[0] == '\0');
    CHECK(load_text("proxy_protocol = v2\nproxy_trusted = 10.0.0.0/8, 2001:db8::/32,192.0.2.7\n") ==
              0 &&
          cfg.proxy_protocol == PROXY_PROTOCOL_V2 &&
          strcmp(cfg.proxy_trusted, "10.0.0.0/8, 2001:db8::/32,192.0.2.7") == 0);
    CHECK(load_text("proxy_protocol = no\n") == 0 && cfg.proxy_protocol == PROXY_PROTOCOL_NO);
    CHECK(load_fails_with("proxy_protocol = v1\n", 1,
                          "proxy_protocol: expected no or v2, got \"v1\""));
    CHECK(load_fails_with("proxy_protocol = yes\n", 1,
                          "proxy_protocol: expected no or v2, got \"yes\""));
    CHECK(load_fails_with("proxy_trusted = 10.0.0.0/33\n", 1,
                          "proxy_trusted: \"10.0.0.0/33\" is not a network in CIDR notation"));
    CHECK(load_fails_with("proxy_trusted = 10.0.0.0/8, haproxy\n", 1,
                          "proxy_trusted: \"haproxy\" is not a network in CIDR notation"));
    CHECK(load_fails_with("proxy_trusted = 10.0.0.0/8,,10.1.0.0/16\n", 1,
                          "proxy_trusted: entry 2 is empty or too long"));
    CHECK(load_fails_with("proxy_protocol = v2\n", 0,
                          "proxy_trusted: required when proxy_protocol = v2"));
}

TEST(test_sizes)
{
    CHECK(load_text("max_message_size = 1024\n") == 0 && cfg.max_message_size == 1024);
    CHECK(load_text("max_message_size = 512K\n") == 0 && cfg.max_message_size == 524288);
    CHECK(load_text("max_message_size = 512k\n") == 0 && cfg.max_message_size == 524288);
    CHECK(load_text("max_message_size = 25M\n") == 0 && cfg.max_message_size == 26214400);
    CHECK(load_text("max_message_size = 1m\n") == 0 && cfg.max_message_size == 1048576);
    CHECK(load_text("max_message_size = 2G\n") == 0 &&
          cfg.max_message_size == 2LL * 1024 * 1024 * 1024);
    CHECK(load_text("max_message_size = 8G\n") == 0 &&
          cfg.max_message_size == 1LL << 33);
    CHECK(load_fails_with("max_message_size = 1023\n", 1,
                          "max_message_size: expected a size in bytes (suffix K, M or G allowed) from 1024 to 8G, got \"1023\""));
    CHECK(load_fails_with("max_message_size = 9G\n", 1,
                          "max_message_size: expected a size in bytes (suffix K, M or G allowed) from 1024 to 8G, got \"9G\""));
    CHECK(load_fails_with("max_message_size = 5T\n", 1,
                          "max_message_size: expected a size in bytes (suffix K, M or G allowed) from 1024 to 8G, got \"5T\""));
    CHECK(load_fails_with("max_message_size = M\n", 1,
                          "max_message_size: expected a size in bytes (suffix K, M or G allowed) from 1024 to 8G, got \"M\""));
    CHECK(load_fails_with("max_message_size = -1M\n", 1,
                          "max_message_size: expected a size in bytes (suffix K, M or G allowed) from 1024 to 8G, got \"-1M\""));
    CHECK(load_fails_with("max_message_size = 10MB\n", 1,
                          "max_message_size: expected a size in bytes (suffix K, M or G allowed) from 1024 to 8G, got \"10MB\""));
    CHECK(load_fails_with("max_message_size = 99999999999999999999999999999999\n", 1,
                          "max_message_size: expected a size in bytes (suffix K, M or G allowed) from 1024 to 8G, got \"99999999999999999999999999999999\""));
}

TEST(test_max_header_size)
{
    CHECK(load_text("max_header_size = 4096\n") == 0 && cfg.max_header_size == 4096);
    CHECK(load_text("max_header_size = 256K\n") == 0 && cfg.max_header_size == 262144);
    CHECK(load_text("max_header_size = 1G\n") == 0 && cfg.max_header_size == 1LL << 30);
    CHECK(load_fails_with("max_header_size = 1000\n", 1,
                          "max_header_size: expected a size in bytes (suffix K, M or G allowed) from 1024 to 1G, got \"1000\""));
    CHECK(load_fails_with("max_header_size = 2G\n", 1,
                          "max_header_size: expected a size in bytes (suffix K, M or G allowed) from 1024 to 1G, got \"2G\""));
}

TEST(test_duplicate_key)
{
    CHECK(load_fails_with("timeout = 5\n# again\ntimeout = 6\n", 3, "timeout: set more than once"));
    CHECK(load_fails_with("crl =\ncrl = x.pem\n", 2, "crl: set more than once"));
}

TEST(test_string_limits)
{
    char text[1200];

    /* user holds 63 characters. */
    str_fmt(text, sizeof(text), "user = %063d\n", 0);
    CHECK(load_text(text) == 0 && strlen(cfg.user) == 63);
    str_fmt(text, sizeof(text), "user = %064d\n", 0);
    CHECK(load_fails_with(text, 1, "user: value longer than 63 bytes"));
}

TEST(test_line_too_long)
{
    char *text = malloc(6000);

    CHECK(text != NULL);
    if (text == NULL)
        return;
    memcpy(text, "hostname = ", 11);
    memset(text + 11, 'h', 5000);
    memcpy(text + 5011, "\n", 2);
    CHECK(load_fails_with(text, 1, "line too long"));
    free(text);
}

TEST(test_retry_order)
{
    CHECK(load_fails_with("retry_min = 100\nretry_max = 99\n", 0,
                          "retry_max (99) is smaller than retry_min (100)"));
}

TEST(test_missing_file)
{
    char path[PATH_MAX];

    str_fmt(path, sizeof(path), "%s/nonexistent.conf", tmpdir);
    err[0] = '\0';
    CHECK(config_load(&cfg, path, err, sizeof(err)) == -1);
    CHECK(strncmp(err, path, strlen(path)) == 0);
    CHECK(strstr(err, "No such file or directory") != NULL);
}

TEST(test_check_required)
{
    CHECK(load_text("timeout = 5\n") == 0);
    CHECK(config_check_required(&cfg, err, sizeof(err)) == -1);
    {
        char want[PATH_MAX + 64];
        str_fmt(want, sizeof(want), "%s: upstream: required key is not set", cfg.path);
        CHECK_STR(err, want);
    }
    CHECK(load_text("upstream = mx:25, [2001:db8::1]:587 ,10.0.0.1:2525\n") == 0);
    CHECK(config_check_required(&cfg, err, sizeof(err)) == 0);
    CHECK(load_text("upstream = mx:25,mx2\n") == 0);
    CHECK(config_check_required(&cfg, err, sizeof(err)) == -1);
    {
        char want[PATH_MAX + 64];
        str_fmt(want, sizeof(want), "%s: upstream: \"mx2\" is not host:port", cfg.path);
        CHECK_STR(err, want);
    }
    CHECK(load_text("upstream = mx:25,,mx2:25\n") == 0);
    CHECK(config_check_required(&cfg, err, sizeof(err)) == -1);
}

static const char *split(const char *s)
{
    static char out[300];
    char host[64], port[8];

    if (config_split_hostport(s, host, sizeof(host), port, sizeof(port)) != 0)
        return "ERR";
    str_fmt(out, sizeof(out), "%s|%s", host, port);
    return out;
}

TEST(test_split_hostport)
{
    char host[4], port[8];

    CHECK_STR(split("127.0.0.1:587"), "127.0.0.1|587");
    CHECK_STR(split("mx.example.com:25"), "mx.example.com|25");
    CHECK_STR(split("[::1]:465"), "::1|465");
    CHECK_STR(split("[2001:db8::25]:2525"), "2001:db8::25|2525");
    CHECK_STR(split("0.0.0.0:65535"), "0.0.0.0|65535");
    CHECK_STR(split("h:1"), "h|1");
    CHECK_STR(split("mx.example.com"), "ERR");
    CHECK_STR(split("mx.example.com:"), "ERR");
    CHECK_STR(split(":25"), "ERR");
    CHECK_STR(split("mx:0"), "ERR");
    CHECK_STR(split("mx:65536"), "ERR");
    CHECK_STR(split("mx:70000"), "ERR");
    CHECK_STR(split("mx:-25"), "ERR");
    CHECK_STR(split("mx:25x"), "ERR");
    CHECK_STR(split("::1:25"), "ERR");       /* bare IPv6 needs brackets */
    CHECK_STR(split("[::1]"), "ERR");
    CHECK_STR(split("[::1]25"), "ERR");
    CHECK_STR(split("[::1]:"), "ERR");
    CHECK_STR(split("[]:25"), "ERR");
    CHECK_STR(split("[::1:25"), "ERR");
    CHECK_STR(split(""), "ERR");
    /* The buffers bound the copies. */
    CHECK(config_split_hostport("abc:25", host, sizeof(host), port, sizeof(port)) == 0);
    CHECK_STR(host, "abc");
    CHECK(config_split_hostport("abcd:25", host, sizeof(host), port, sizeof(port)) == -1);
    CHECK(config_split_hostport("[abcd]:25", host, sizeof(host), port, sizeof(port)) == -1);
    CHECK(config_split_hostport("a:25", host, sizeof(host), port, 3) == 0);
    CHECK_STR(port, "25");
    CHECK(config_split_hostport("a:250", host, sizeof(host), port, 3) == -1);
}

TEST(test_list_item)
{
    char out[16];

    CHECK(str_list_item("a, b ,c", 0, out, sizeof(out)) == 1);
    CHECK_STR(out, "a");
    CHECK(str_list_item("a, b ,c", 1, out, sizeof(out)) == 1);
    CHECK_STR(out, "b");
    CHECK(str_list_item("a, b ,c", 2, out, sizeof(out)) == 1);
    CHECK_STR(out, "c");
    CHECK(str_list_item("a, b ,c", 3, out, sizeof(out)) == 0);
    CHECK(str_list_item("  one  ", 0, out, sizeof(out)) == 1);
    CHECK_STR(out, "one");
    CHECK(str_list_item("", 0, out, sizeof(out)) == 0);
    CHECK(str_list_item("   ", 0, out, sizeof(out)) == 0);
    /* An empty item in the middle is an error, a trailing comma just ends the list. */
    CHECK(str_list_item("a,,b", 1, out, sizeof(out)) == -1);
    CHECK(str_list_item("a,", 1, out, sizeof(out)) == 0);
    /* Too long for out. */
    CHECK(str_list_item("0123456789abcdef", 0, out, sizeof(out)) == -1);
    CHECK(str_list_item("0123456789abcde", 0, out, sizeof(out)) == 1);
    CHECK_STR(out, "0123456789abcde");
}

/* Days of audit that authz's daily prune keeps; 0 (the default) keeps everything. */
TEST(test_audit_retention)
{
    CHECK(load_text("upstream = mx.example.com:25\n") == 0);
    CHECK(cfg.audit_retention == 0);
    CHECK(load_text("upstream = mx.example.com:25\naudit_retention = 400\n") == 0);
    CHECK(cfg.audit_retention == 400);
    CHECK(load_fails_with("audit_retention = -1\n", 1,
                          "audit_retention: expected an integer from 0 to 36500, got \"-1\""));
    CHECK(load_fails_with("audit_retention = 90d\n", 1,
                          "audit_retention: expected an integer from 0 to 36500, got \"90d\""));
}

static void remove_tmpdir(void)
{
    char path[PATH_MAX];

    (void)unlink(conf);
    str_fmt(path, sizeof(path), "%s/etc", tmpdir);
    (void)rmdir(path);
    (void)rmdir(tmpdir);
}

TEST(test_mask_secret)
{
    char out[512];

    config_mask_secret("postgresql://submitd:s3cret@db.example:5432/submitd", out, sizeof(out));
    CHECK_STR(out, "postgresql://submitd:****@db.example:5432/submitd");
    config_mask_secret("postgresql://db.example/submitd?user=u&password=s3cret&sslmode=require",
                       out, sizeof(out));
    CHECK_STR(out, "postgresql://db.example/submitd?user=u&password=****&sslmode=require");
    config_mask_secret("postgres://u@db/x", out, sizeof(out));
    CHECK_STR(out, "postgres://u@db/x");
    config_mask_secret("/var/lib/submitd/submitd.db", out, sizeof(out));
    CHECK_STR(out, "/var/lib/submitd/submitd.db");
    /* Nothing of the password survives a short buffer either. */
    config_mask_secret("postgresql://submitd:s3cret@db/x", out, 24);
    CHECK(strstr(out, "s3cret") == NULL && strstr(out, "s3c") == NULL);
}

static int nproblems;
static char problems_seen[4][512];

static void collect(const char *msg, void *arg)
{
    (void)arg;
    if (nproblems < 4)
        str_lcpy(problems_seen[nproblems], msg, sizeof(problems_seen[0]));
    nproblems++;
}

TEST(test_every_problem)
{
    char want[PATH_MAX + 64];

    CHECK(write_conf("upstream = mx:25\nbogus = 1\ntimeout = soon\nmax_recipients = 5\n"
                     "no equals sign\n") == 0);
    nproblems = 0;
    CHECK(config_load_all(&cfg, conf, collect, NULL) == 3);
    CHECK(nproblems == 3);
    str_fmt(want, sizeof(want), "%s:2: bogus: unknown key", conf);
    CHECK_STR(problems_seen[0], want);
    CHECK(strstr(problems_seen[1], ":3: timeout: expected a duration") != NULL);
    CHECK(strstr(problems_seen[2], ":5: expected \"key = value\"") != NULL);
    /* What could be parsed is there. */
    CHECK(cfg.max_recipients == 5);
}

static int nchanged;

static void count_changed(const char *key, void *arg)
{
    (void)arg;
    (void)key;
    nchanged++;
}

TEST(test_restart_keys)
{
    static struct config old;

    CHECK(load_text("upstream = mx:25\nlisten = 127.0.0.1:2525\nmax_recipients = 5\n") == 0);
    old = cfg;
    CHECK(load_text("upstream = mx:25\nlisten = 127.0.0.1:2626\nmax_recipients = 7\n"
                    "user = other\n") == 0);
    nchanged = 0;
    /* user, and smtp_user that follows it */
    CHECK(config_keep_restart_keys(&cfg, &old, count_changed, NULL) == 3);
    CHECK(nchanged == 3);
    CHECK_STR(cfg.listen, "127.0.0.1:2525");
    CHECK_STR(cfg.user, "submitd");
    CHECK(cfg.max_recipients == 7);
}

TEST(test_print)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f;

    CHECK(load_text("upstream = mx:25\nmax_recipients = 5\n"
                    "database = postgresql://u:pw@db/x\n") == 0);
    f = open_memstream(&buf, &len);
    config_print(&cfg, f, 0);
    fclose(f);
    CHECK_STR(buf, "database = postgresql://u:****@db/x\nupstream = mx:25\nmax_recipients = 5\n");
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    config_print(&cfg, f, 1);
    fclose(f);
    CHECK(strstr(buf, "max_recipients = 5\n") != NULL);
    CHECK(strstr(buf, "max_sessions = 1000  # default\n") != NULL);
    CHECK(strstr(buf, "listen_tls =  # default\n") != NULL);
    CHECK(strstr(buf, "log = auto  # default\n") != NULL);
    CHECK(strstr(buf, "pw@") == NULL);
    free(buf);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    char etc[PATH_MAX];

    if (str_fmt(tmpdir, sizeof(tmpdir), "%s/test_config.XXXXXX",
                base != NULL && *base != '\0' ? base : "/tmp") != 0 ||
        mkdtemp(tmpdir) == NULL || realpath(tmpdir, realdir) == NULL ||
        str_fmt(etc, sizeof(etc), "%s/etc", tmpdir) != 0 || mkdir(etc, 0700) != 0 ||
        str_fmt(conf, sizeof(conf), "%s/submitd.conf", etc) != 0) {
        perror("temporary directory");
        return 1;
    }
    RUN(test_defaults);
    RUN(test_all_keys_set);
    RUN(test_comments_and_spacing);
    RUN(test_unknown_key);
    RUN(test_not_key_value);
    RUN(test_bad_integers);
    RUN(test_durations);
    RUN(test_bad_bools);
    RUN(test_enums);
    RUN(test_proxy_keys);
    RUN(test_sizes);
    RUN(test_max_header_size);
    RUN(test_duplicate_key);
    RUN(test_string_limits);
    RUN(test_line_too_long);
    RUN(test_retry_order);
    RUN(test_missing_file);
    RUN(test_check_required);
    RUN(test_split_hostport);
    RUN(test_list_item);
    RUN(test_audit_retention);
    RUN(test_mask_secret);
    RUN(test_every_problem);
    RUN(test_restart_keys);
    RUN(test_print);
    remove_tmpdir();
    return UNIT_DONE();
}
