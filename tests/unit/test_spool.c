/*
 * Unit tests of submitd/lib/spool.c: records written with spool_put() are read back by
 * spool_load(), and every torn or malformed file is refused.
 */
#include "spool.h"
#include "unit.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];
static char good_id[SPOOL_ID_LEN + 1];

static void tmp_path(char *out, size_t outlen, const char *name)
{
    if (str_fmt(out, outlen, "%s/%s", tmpdir, name) != 0)
        out[0] = '\0';
}

static int create_file(const char *name)
{
    char path[PATH_MAX];

    tmp_path(path, sizeof(path), name);
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

/* Writes raw bytes as a whole file. */
static int write_raw(const char *name, const void *data, size_t len)
{
    int fd = create_file(name), rc;

    if (fd < 0)
        return -1;
    rc = write_all(fd, data, len);
    close(fd);
    return rc;
}

/* Reads a whole file into a malloc'd buffer. */
static unsigned char *read_raw(const char *name, size_t *len)
{
    char path[PATH_MAX];
    struct stat st;
    unsigned char *buf;
    int fd;

    tmp_path(path, sizeof(path), name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf != NULL && read(fd, buf, (size_t)st.st_size) != st.st_size) {
        free(buf);
        buf = NULL;
    }
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static int load(const char *name, struct spool_msg *msg, char *err, size_t errlen)
{
    char path[PATH_MAX];

    tmp_path(path, sizeof(path), name);
    err[0] = '\0';
    return spool_load(path, msg, err, errlen);
}

#define BODY1 "Subject: test\r\n\r\n"
#define BODY2 "Hello.\r\n.leading dot kept unstuffed\r\n"

/* The envelope records the queue writes, the body the smtp process writes, and END. */
static int write_envelope(int fd, const char *end_len)
{
    int err = 0;

    err |= spool_put_str(fd, SPOOL_VERSION, "1");
    err |= spool_put_str(fd, SPOOL_ID, good_id);
    err |= spool_put_str(fd, SPOOL_TIME, "1700000000");
    err |= spool_put_str(fd, SPOOL_SESSION, "0011223344556677");
    err |= spool_put_str(fd, SPOOL_USER, "alice");
    err |= spool_put_str(fd, SPOOL_CLIENT, "192.0.2.7");
    err |= spool_put_str(fd, SPOOL_FROM, "alice@example.com");
    err |= spool_put_str(fd, SPOOL_RCPT, "bob@example.org");
    err |= spool_put_str(fd, SPOOL_RCPT, "carol@example.net");
    err |= spool_put(fd, SPOOL_BODY, BODY1, strlen(BODY1));
    err |= spool_put(fd, SPOOL_BODY, BODY2, strlen(BODY2));
    if (end_len != NULL)
        err |= spool_put_str(fd, SPOOL_END, end_len);
    return err;
}

static char body_len_str[32];

static int make_good(const char *name)
{
    int fd = create_file(name), rc;

    if (fd < 0)
        return -1;
    rc = write_envelope(fd, body_len_str);
    close(fd);
    return rc;
}

TEST(test_put_format)
{
    int fd = create_file("fmt");
    unsigned char *buf;
    size_t len = 0;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(spool_put(fd, SPOOL_RCPT, "ab", 2) == 0);
    CHECK(spool_put(fd, SPOOL_BODY, "", 0) == 0);
    CHECK(spool_put_str(fd, SPOOL_END, "0") == 0);
    close(fd);
    buf = read_raw("fmt", &len);
    CHECK(buf != NULL && len == 7 + 5 + 6);
    if (buf != NULL && len == 18)
        CHECK(memcmp(buf, "R\0\0\0\2abB\0\0\0\0E\0\0\0\1" "0", 18) == 0);
    free(buf);
}

/* Records put together in memory are byte for byte what spool_put() writes, and
 * one that does not fit leaves the buffer as it was. */
TEST(test_rec_append)
{
    unsigned char buf[16];
    size_t len = 0;

    CHECK(spool_rec_append(buf, sizeof(buf), &len, SPOOL_RCPT, "ab") == 0);
    CHECK(spool_rec_append(buf, sizeof(buf), &len, SPOOL_END, "0") == 0);
    CHECK(len == 7 + 6);
    if (len == 13)
        CHECK(memcmp(buf, "R\0\0\0\2abE\0\0\0\1" "0", 13) == 0);
    CHECK(spool_rec_append(buf, sizeof(buf), &len, SPOOL_RCPT, "") == -1);
    CHECK(len == 13);
    CHECK(spool_rec_append(buf, 13, &len, SPOOL_RCPT, "") == -1);
    CHECK(len == 13);
}

TEST(test_put_too_large)
{
    int fd = create_file("big");
    char *big = calloc(1, SPOOL_REC_MAX + 1);
    struct stat st;

    CHECK(fd >= 0 && big != NULL);
    if (fd >= 0 && big != NULL) {
        errno = 0;
        CHECK(spool_put(fd, SPOOL_BODY, big, SPOOL_REC_MAX + 1) == -1);
        CHECK(errno == EFBIG);
        /* Nothing was written. */
        CHECK(fstat(fd, &st) == 0 && st.st_size == 0);
        CHECK(spool_put(fd, SPOOL_BODY, big, SPOOL_REC_MAX) == 0);
        CHECK(fstat(fd, &st) == 0 && st.st_size == SPOOL_REC_MAX + 5);
    }
    if (fd >= 0)
        close(fd);
    free(big);
}

TEST(test_round_trip)
{
    struct spool_msg msg;
    char err[256];

    CHECK(make_good("good") == 0);
    CHECK(load("good", &msg, err, sizeof(err)) == 0);
    CHECK_STR(err, "");
    CHECK_STR(msg.id, good_id);
    CHECK_STR(msg.user, "alice");
    CHECK_STR(msg.session, "0011223344556677");
    CHECK_STR(msg.client, "192.0.2.7");
    CHECK_STR(msg.from, "alice@example.com");
    CHECK(msg.time == 1700000000);
    CHECK(msg.nrcpt == 2);
    if (msg.nrcpt == 2) {
        CHECK_STR(msg.rcpt[0], "bob@example.org");
        CHECK_STR(msg.rcpt[1], "carol@example.net");
    }
    CHECK(msg.body_len == strlen(BODY1 BODY2));
    CHECK(msg.body != NULL && memcmp(msg.body, BODY1 BODY2, msg.body_len) == 0);
    spool_msg_free(&msg);
    CHECK(msg.nrcpt == 0 && msg.rcpt == NULL && msg.body == NULL);
}

TEST(test_round_trip_large_body)
{
    /* A body in several maximal chunks grows the buffer more than once. */
    size_t chunk = SPOOL_REC_MAX, total = 0;
    char *data = malloc(chunk);
    struct spool_msg msg;
    char err[256], num[32];
    int fd = create_file("large"), rc = 0;

    CHECK(data != NULL && fd >= 0);
    if (data == NULL || fd < 0) {
        free(data);
        if (fd >= 0)
            close(fd);
        return;
    }
    rc |= spool_put_str(fd, SPOOL_VERSION, "1");
    rc |= spool_put_str(fd, SPOOL_ID, good_id);
    rc |= spool_put_str(fd, SPOOL_RCPT, "bob@example.org");
    for (int i = 0; i < 3; i++) {
        memset(data, 'a' + i, chunk);
        rc |= spool_put(fd, SPOOL_BODY, data, chunk);
        total += chunk;
    }
    rc |= spool_put(fd, SPOOL_BODY, "tail", 4);
    total += 4;
    snprintf(num, sizeof(num), "%zu", total);
    rc |= spool_put_str(fd, SPOOL_END, num);
    close(fd);
    CHECK(rc == 0);
    CHECK(load("large", &msg, err, sizeof(err)) == 0);
    CHECK(msg.body_len == total);
    if (msg.body_len == total) {
        CHECK(msg.body[0] == 'a' && msg.body[chunk] == 'b' && msg.body[2 * chunk] == 'c');
        CHECK(memcmp(msg.body + 3 * chunk, "tail", 4) == 0);
    }
    spool_msg_free(&msg);
    free(data);
}

TEST(test_empty_body)
{
    struct spool_msg msg;
    char err[256];
    int fd = create_file("emptybody"), rc = 0;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    rc |= spool_put_str(fd, SPOOL_VERSION, "1");
    rc |= spool_put_str(fd, SPOOL_ID, good_id);
    rc |= spool_put_str(fd, SPOOL_RCPT, "bob@example.org");
    rc |= spool_put_str(fd, SPOOL_END, "0");
    close(fd);
    CHECK(rc == 0);
    CHECK(load("emptybody", &msg, err, sizeof(err)) == 0);
    CHECK(msg.body_len == 0 && msg.nrcpt == 1);
    spool_msg_free(&msg);
}

/* Every truncation of a good file is refused (a torn file is never relayed). */
TEST(test_every_truncation_fails)
{
    unsigned char *buf;
    size_t len = 0;
    struct spool_msg msg;
    char err[256];
    int accepted = 0;

    CHECK(make_good("full") == 0);
    buf = read_raw("full", &len);
    CHECK(buf != NULL && len > 100);
    if (buf == NULL)
        return;
    for (size_t k = 0; k < len; k++) {
        if (write_raw("torn", buf, k) != 0) {
            CHECK(0);
            break;
        }
        if (load("torn", &msg, err, sizeof(err)) == 0) {
            printf("  truncation at %zu of %zu accepted\n", k, len);
            spool_msg_free(&msg);
            accepted++;
        } else if (strncmp(err, "torn: ", 6) != 0) {
            printf("  truncation at %zu: unexpected error \"%s\"\n", k, err);
            accepted++;
        }
    }
    CHECK(accepted == 0);
    /* The messages name the problem. */
    CHECK(write_raw("torn", buf, 0) == 0);
    CHECK(load("torn", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "torn: no END record");
    CHECK(write_raw("torn", buf, 3) == 0);
    CHECK(load("torn", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "torn: truncated record header at offset 0");
    CHECK(write_raw("torn", buf, 7) == 0);
    CHECK(load("torn", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "torn: truncated record header at offset 6");
    CHECK(write_raw("torn", buf, 12) == 0);
    CHECK(load("torn", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "torn: record at offset 6 overruns the file");
    /* And the whole file loads. */
    CHECK(write_raw("torn", buf, len) == 0);
    CHECK(load("torn", &msg, err, sizeof(err)) == 0);
    spool_msg_free(&msg);
    free(buf);
}

TEST(test_bad_end_length)
{
    static const char *const bad[] = { "0", "1", "53", "55", "", "-54", "54x", "x",
                                       "99999999999999999999", "18446744073709551670" };
    struct spool_msg msg;
    char err[256];

    /* The good length is strlen(BODY1 BODY2) = 54. */
    CHECK(strlen(BODY1 BODY2) == 54);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = create_file("badend");
        CHECK(fd >= 0 && write_envelope(fd, bad[i]) == 0);
        if (fd >= 0)
            close(fd);
        if (load("badend", &msg, err, sizeof(err)) == 0) {
            printf("  END \"%s\" accepted\n", bad[i]);
            spool_msg_free(&msg);
            CHECK(0);
        }
        CHECK_STR(err, "torn: END record does not match the body length");
    }
}

TEST(test_no_end_record)
{
    struct spool_msg msg;
    char err[256];
    int fd = create_file("noend");

    CHECK(fd >= 0 && write_envelope(fd, NULL) == 0);
    if (fd >= 0)
        close(fd);
    CHECK(load("noend", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "torn: no END record");
}

static int open_append(const char *name)
{
    char path[PATH_MAX];

    tmp_path(path, sizeof(path), name);
    return open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
}

TEST(test_trailing_bytes)
{
    struct spool_msg msg;
    char err[256];
    int fd;

    /* Any byte after END, even a complete record, is refused. */
    CHECK(make_good("trail") == 0);
    fd = open_append("trail");
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write_all(fd, "x", 1) == 0);
    close(fd);
    CHECK(load("trail", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "trailing bytes after END record");

    CHECK(make_good("trail2") == 0);
    fd = open_append("trail2");
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(spool_put_str(fd, SPOOL_RCPT, "mallory@example.com") == 0);
    close(fd);
    CHECK(load("trail2", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "trailing bytes after END record");
}

TEST(test_unknown_record_type)
{
    struct spool_msg msg;
    char err[256];
    int fd = create_file("unknown");

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(spool_put_str(fd, SPOOL_VERSION, "1") == 0);
    CHECK(spool_put_str(fd, (enum spool_rec)'X', "what") == 0);
    close(fd);
    CHECK(load("unknown", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "bad record type 0x58 at offset 6");

    CHECK(write_raw("unknown", "\0\0\0\0\0", 5) == 0);
    CHECK(load("unknown", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "bad record type 0x00 at offset 0");
}

TEST(test_oversized_record_length)
{
    /* A length above SPOOL_REC_MAX is corruption even when the file is that long. */
    size_t n = SPOOL_REC_MAX + 1;
    unsigned char *buf = calloc(1, n + 5);
    struct spool_msg msg;
    char err[256];

    CHECK(buf != NULL);
    if (buf == NULL)
        return;
    buf[0] = 'B';
    buf[1] = (unsigned char)(n >> 24);
    buf[2] = (unsigned char)(n >> 16);
    buf[3] = (unsigned char)(n >> 8);
    buf[4] = (unsigned char)n;
    CHECK(write_raw("overrec", buf, n + 5) == 0);
    CHECK(load("overrec", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "torn: record at offset 0 overruns the file");
    /* A length of 0xffffffff does not wrap around. */
    memcpy(buf, "B\xff\xff\xff\xff", 5);
    CHECK(write_raw("overrec", buf, 64) == 0);
    CHECK(load("overrec", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "torn: record at offset 0 overruns the file");
    free(buf);
}

/* Writes a file with one envelope record replaced, to check field validation. */
static int load_with(enum spool_rec type, const void *data, size_t len, char *err, size_t errlen)
{
    struct spool_msg msg;
    int fd = create_file("field"), rc = 0;

    if (fd < 0)
        return 99;
    rc |= spool_put_str(fd, SPOOL_VERSION, "1");
    if (type != SPOOL_ID)
        rc |= spool_put_str(fd, SPOOL_ID, good_id);
    if (type != SPOOL_RCPT)
        rc |= spool_put_str(fd, SPOOL_RCPT, "bob@example.org");
    rc |= spool_put(fd, type, data, len);
    rc |= spool_put_str(fd, SPOOL_END, "0");
    close(fd);
    if (rc != 0)
        return 98;
    rc = load("field", &msg, err, errlen);
    if (rc == 0)
        spool_msg_free(&msg);
    return rc;
}

TEST(test_field_validation)
{
    char err[256], longs[600];

    CHECK(load_with(SPOOL_FROM, "alice@example.com", 17, err, sizeof(err)) == 0);
    CHECK(load_with(SPOOL_FROM, "", 0, err, sizeof(err)) == 0);   /* null sender */
    CHECK(load_with(SPOOL_FROM, "a\0b", 3, err, sizeof(err)) == -1);
    CHECK(strncmp(err, "malformed envelope record", 25) == 0);
    CHECK(load_with(SPOOL_RCPT, "", 0, err, sizeof(err)) == -1);
    CHECK(strncmp(err, "malformed envelope record", 25) == 0);
    CHECK(load_with(SPOOL_RCPT, "b\0b@x", 5, err, sizeof(err)) == -1);
    CHECK(load_with(SPOOL_ID, "../../etc/passwd", 16, err, sizeof(err)) == -1);
    CHECK(load_with(SPOOL_ID, "0123456789abcdefghij", 20, err, sizeof(err)) == -1);
    CHECK(load_with(SPOOL_TIME, "12x", 3, err, sizeof(err)) == -1);
    CHECK(load_with(SPOOL_TIME, "-1", 2, err, sizeof(err)) == -1);
    CHECK(load_with(SPOOL_VERSION, "2", 1, err, sizeof(err)) == -1);
    CHECK_STR(err, "unknown spool format version");
    CHECK(load_with(SPOOL_VERSION, "11", 2, err, sizeof(err)) == -1);
    memset(longs, 'u', sizeof(longs));
    CHECK(load_with(SPOOL_USER, longs, 127, err, sizeof(err)) == 0);
    CHECK(load_with(SPOOL_USER, longs, 128, err, sizeof(err)) == -1);
    CHECK(load_with(SPOOL_FROM, longs, 511, err, sizeof(err)) == 0);
    CHECK(load_with(SPOOL_FROM, longs, 512, err, sizeof(err)) == -1);
    CHECK(load_with(SPOOL_CLIENT, longs, 64, err, sizeof(err)) == -1);
    CHECK(load_with(SPOOL_SESSION, longs, 64, err, sizeof(err)) == -1);
}

TEST(test_incomplete_envelope)
{
    struct spool_msg msg;
    char err[256];
    int fd = create_file("norcpt");

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(spool_put_str(fd, SPOOL_VERSION, "1") == 0);
    CHECK(spool_put_str(fd, SPOOL_ID, good_id) == 0);
    CHECK(spool_put_str(fd, SPOOL_END, "0") == 0);
    close(fd);
    CHECK(load("norcpt", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "incomplete envelope (no id or no recipient)");

    fd = create_file("noid");
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(spool_put_str(fd, SPOOL_VERSION, "1") == 0);
    CHECK(spool_put_str(fd, SPOOL_RCPT, "bob@example.org") == 0);
    CHECK(spool_put_str(fd, SPOOL_END, "0") == 0);
    close(fd);
    CHECK(load("noid", &msg, err, sizeof(err)) == -1);
    CHECK_STR(err, "incomplete envelope (no id or no recipient)");
}

TEST(test_missing_file)
{
    struct spool_msg msg;
    char err[256];

    CHECK(load("does-not-exist", &msg, err, sizeof(err)) == -1);
    CHECK(strstr(err, "cannot read: ") == err);
}

TEST(test_ids)
{
    char a[SPOOL_ID_LEN + 1], b[SPOOL_ID_LEN + 1];

    spool_new_id(a);
    usleep(2000);
    spool_new_id(b);
    CHECK(strlen(a) == SPOOL_ID_LEN && strlen(b) == SPOOL_ID_LEN);
    CHECK(spool_id_valid(a) && spool_id_valid(b));
    CHECK(strcmp(a, b) != 0);
    /* The first 8 characters are a time stamp: later ids sort later. */
    CHECK(memcmp(a, b, 8) < 0);

    CHECK(spool_id_valid("0123456789ABCDEFGHIJ"));
    CHECK(!spool_id_valid(""));
    CHECK(!spool_id_valid("0123456789ABCDEFGHI"));
    CHECK(!spool_id_valid("0123456789ABCDEFGHIJK"));
    CHECK(!spool_id_valid("0123456789abcdefghij"));
    CHECK(!spool_id_valid("0123456789ABCDEFGHI/"));
    CHECK(!spool_id_valid("../23456789ABCDEFGHIJ"));
    CHECK(!spool_id_valid("0123456789ABCDEFGHI "));
}

/* Ids drawn from the pooled random bytes stay distinct, within a process and
 * between a parent and the child it forks with a half-used pool. */
TEST(test_ids_pooled)
{
    enum { N = 200 };
    static char ids[N][SPOOL_ID_LEN + 1];
    char child_id[SPOOL_ID_LEN + 1], parent_id[SPOOL_ID_LEN + 1];
    int p[2], dup_found = 0, status;
    pid_t pid;

    for (int i = 0; i < N; i++) {
        spool_new_id(ids[i]);
        CHECK(spool_id_valid(ids[i]));
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            dup_found |= memcmp(ids[i] + 8, ids[j] + 8, SPOOL_ID_LEN - 8) == 0;
    CHECK(!dup_found);

    CHECK(pipe(p) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        spool_new_id(child_id);
        _exit(write(p[1], child_id, SPOOL_ID_LEN) == SPOOL_ID_LEN ? 0 : 1);
    }
    close(p[1]);
    spool_new_id(parent_id);
    memset(child_id, 0, sizeof(child_id));
    CHECK(read(p[0], child_id, SPOOL_ID_LEN) == SPOOL_ID_LEN);
    close(p[0]);
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(spool_id_valid(child_id));
    /* The random part: a child that kept the parent's pool would repeat it. */
    CHECK(memcmp(child_id + 8, parent_id + 8, SPOOL_ID_LEN - 8) != 0);
}

/* spool_load_fd() reads through an open descriptor, which it leaves open, and
 * refuses a file that was removed meanwhile. */
TEST(test_load_fd)
{
    struct spool_msg msg;
    char path[PATH_MAX], err[256];
    int fd;

    CHECK(make_good("byfd") == 0);
    tmp_path(path, sizeof(path), "byfd");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    err[0] = '\0';
    CHECK(spool_load_fd(fd, &msg, err, sizeof(err)) == 0);
    CHECK_STR(err, "");
    CHECK_STR(msg.id, good_id);
    CHECK(msg.nrcpt == 2);
    CHECK(msg.body_len == strlen(BODY1 BODY2));
    CHECK(msg.body != NULL && memcmp(msg.body, BODY1 BODY2, msg.body_len) == 0);
    spool_msg_free(&msg);
    /* Still open: it reads the same again. */
    CHECK(fcntl(fd, F_GETFD) >= 0);
    CHECK(spool_load_fd(fd, &msg, err, sizeof(err)) == 0);
    spool_msg_free(&msg);
    /* Removed (an administrator deleted the message): not loaded. */
    CHECK(unlink(path) == 0);
    CHECK(spool_load_fd(fd, &msg, err, sizeof(err)) == -1);
    CHECK(strstr(err, "cannot read: ") == err);
    CHECK(msg.body == NULL && msg.nrcpt == 0);
    close(fd);
}

/* The queue's rewrite: state records survive spool_write() and spool_load(). */
TEST(test_state_round_trip)
{
    struct spool_msg msg, back, env;
    char err[256], path[PATH_MAX];
    int fd;

    CHECK(make_good("state-src") == 0);
    CHECK(load("state-src", &msg, err, sizeof(err)) == 0);
    if (msg.nrcpt != 2)
        return;
    /* Loaded from a file the smtp side wrote: every recipient pending, no attempt. */
    CHECK(msg.rstate[0] == SPOOL_RCPT_PENDING && msg.rstate[1] == SPOOL_RCPT_PENDING);
    CHECK(msg.rreply[0] == NULL && msg.attempts == 0 && msg.next == 0 && msg.last[0] == '\0');
    CHECK(spool_set_rcpt(&msg, 0, SPOOL_RCPT_DELIVERED, "250 2.0.0 Ok") == 0);
    CHECK(spool_set_rcpt(&msg, 1, SPOOL_RCPT_FAILED, "550 5.1.1 <carol@example.net>: unknown") == 0);
    CHECK(spool_set_rcpt(&msg, 2, SPOOL_RCPT_FAILED, NULL) == -1);
    CHECK(spool_count_rcpt(&msg, SPOOL_RCPT_FAILED) == 1);
    CHECK(spool_count_rcpt(&msg, SPOOL_RCPT_PENDING) == 0);
    msg.attempts = 3;
    msg.next = 1700000123;
    str_lcpy(msg.last, "mx.example:25: 451 4.3.0 later", sizeof(msg.last));
    fd = create_file("state-dst");
    CHECK(fd >= 0 && spool_write(fd, &msg) == 0);
    if (fd >= 0)
        close(fd);
    CHECK(load("state-dst", &back, err, sizeof(err)) == 0);
    CHECK_STR(back.id, good_id);
    CHECK_STR(back.user, "alice");
    CHECK_STR(back.from, "alice@example.com");
    CHECK(back.time == 1700000000 && back.attempts == 3 && back.next == 1700000123);
    CHECK_STR(back.last, "mx.example:25: 451 4.3.0 later");
    CHECK(back.nrcpt == 2);
    if (back.nrcpt == 2) {
        CHECK(back.rstate[0] == SPOOL_RCPT_DELIVERED && back.rstate[1] == SPOOL_RCPT_FAILED);
        CHECK_STR(back.rreply[0], "250 2.0.0 Ok");
        CHECK_STR(back.rreply[1], "550 5.1.1 <carol@example.net>: unknown");
    }
    CHECK(back.body_len == msg.body_len && memcmp(back.body, msg.body, msg.body_len) == 0);
    /* The envelope alone: same state, no body kept. */
    tmp_path(path, sizeof(path), "state-dst");
    CHECK(spool_load_envelope(path, &env, err, sizeof(err)) == 0);
    CHECK(env.body == NULL && env.body_len == msg.body_len && env.attempts == 3);
    CHECK(env.nrcpt == 2 && env.rstate[1] == SPOOL_RCPT_FAILED);
    spool_msg_free(&env);
    spool_msg_free(&back);
    spool_msg_free(&msg);
}

/* A rewritten file is refused at every truncation, like the original. */
TEST(test_state_file_truncations_fail)
{
    struct spool_msg msg;
    unsigned char *buf;
    size_t len = 0;
    char err[256];
    int fd, accepted = 0;

    CHECK(make_good("state-src") == 0);
    CHECK(load("state-src", &msg, err, sizeof(err)) == 0);
    if (msg.nrcpt != 2)
        return;
    CHECK(spool_set_rcpt(&msg, 1, SPOOL_RCPT_PENDING, "451 4.3.0 later") == 0);
    msg.attempts = 1;
    fd = create_file("state-dst");
    CHECK(fd >= 0 && spool_write(fd, &msg) == 0);
    if (fd >= 0)
        close(fd);
    spool_msg_free(&msg);
    buf = read_raw("state-dst", &len);
    CHECK(buf != NULL);
    if (buf == NULL)
        return;
    for (size_t k = 0; k < len; k++) {
        CHECK(write_raw("torn", buf, k) == 0);
        if (load("torn", &msg, err, sizeof(err)) == 0) {
            spool_msg_free(&msg);
            accepted++;
        }
    }
    CHECK(accepted == 0);
    free(buf);
}

/* RSTATE belongs to the RCPT before it, once, with a known state. */
TEST(test_rstate_validation)
{
    static const struct {
        const char *data;
        int ok;
    } cases[] = {
        { "P", 1 }, { "D 250 ok", 1 }, { "F 550 no", 1 }, { "X 550 no", 1 }, { "P ", 1 },
        { "", 0 }, { "Q", 0 }, { "D250", 0 }, { "d 250", 0 },
    };
    struct spool_msg msg;
    char err[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd = create_file("rstate"), rc = 0;
        CHECK(fd >= 0);
        if (fd < 0)
            return;
        rc |= spool_put_str(fd, SPOOL_VERSION, "1");
        rc |= spool_put_str(fd, SPOOL_ID, good_id);
        rc |= spool_put_str(fd, SPOOL_RCPT, "bob@example.org");
        rc |= spool_put_str(fd, SPOOL_RSTATE, cases[i].data);
        rc |= spool_put_str(fd, SPOOL_END, "0");
        close(fd);
        CHECK(rc == 0);
        rc = load("rstate", &msg, err, sizeof(err));
        if ((rc == 0) != cases[i].ok)
            printf("  RSTATE \"%s\": %s\n", cases[i].data, rc == 0 ? "accepted" : err);
        CHECK((rc == 0) == cases[i].ok);
        if (rc == 0)
            spool_msg_free(&msg);
    }
    /* Before any recipient, and twice for one recipient. */
    for (int twice = 0; twice < 2; twice++) {
        int fd = create_file("rstate");
        CHECK(fd >= 0);
        if (fd < 0)
            return;
        CHECK(spool_put_str(fd, SPOOL_VERSION, "1") == 0);
        CHECK(spool_put_str(fd, SPOOL_ID, good_id) == 0);
        if (twice)
            CHECK(spool_put_str(fd, SPOOL_RCPT, "bob@example.org") == 0);
        CHECK(spool_put_str(fd, SPOOL_RSTATE, "P") == 0);
        CHECK(spool_put_str(fd, SPOOL_RSTATE, "D") == 0);
        CHECK(spool_put_str(fd, SPOOL_END, "0") == 0);
        close(fd);
        CHECK(load("rstate", &msg, err, sizeof(err)) == -1);
        CHECK(strncmp(err, "malformed envelope record", 25) == 0);
    }
    CHECK(load_with(SPOOL_ATTEMPTS, "2", 1, err, sizeof(err)) == 0);
    CHECK(load_with(SPOOL_ATTEMPTS, "-1", 2, err, sizeof(err)) == -1);
    CHECK(load_with(SPOOL_NEXT, "1700000000", 10, err, sizeof(err)) == 0);
    CHECK(load_with(SPOOL_NEXT, "soon", 4, err, sizeof(err)) == -1);
    CHECK(load_with(SPOOL_REPLY, "451 later", 9, err, sizeof(err)) == 0);
    CHECK(load_with(SPOOL_REPLY, "a\0b", 3, err, sizeof(err)) == -1);
}

static void remove_tmpdir(void)
{
    static const char *const names[] = { "fmt", "big", "good", "large", "emptybody", "full",
                                         "torn", "badend", "noend", "trail", "trail2",
                                         "unknown", "overrec", "field", "norcpt", "noid",
                                         "state-src", "state-dst", "rstate" };
    char path[PATH_MAX];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        tmp_path(path, sizeof(path), names[i]);
        (void)unlink(path);
    }
    (void)rmdir(tmpdir);
}

int main(void)
{
    const char *base = getenv("TMPDIR");

    if (str_fmt(tmpdir, sizeof(tmpdir), "%s/test_spool.XXXXXX",
                base != NULL && *base != '\0' ? base : "/tmp") != 0 ||
        mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    spool_new_id(good_id);
    snprintf(body_len_str, sizeof(body_len_str), "%zu", strlen(BODY1 BODY2));
    RUN(test_put_format);
    RUN(test_put_too_large);
    RUN(test_rec_append);
    RUN(test_round_trip);
    RUN(test_round_trip_large_body);
    RUN(test_empty_body);
    RUN(test_every_truncation_fails);
    RUN(test_bad_end_length);
    RUN(test_no_end_record);
    RUN(test_trailing_bytes);
    RUN(test_unknown_record_type);
    RUN(test_oversized_record_length);
    RUN(test_field_validation);
    RUN(test_incomplete_envelope);
    RUN(test_missing_file);
    RUN(test_ids);
    RUN(test_ids_pooled);
    RUN(test_load_fd);
    RUN(test_state_round_trip);
    RUN(test_state_file_truncations_fail);
    RUN(test_rstate_validation);
    remove_tmpdir();
    return UNIT_DONE();
}
