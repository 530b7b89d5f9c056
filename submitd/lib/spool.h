#ifndef SUBMITD_SPOOL_H
#define SUBMITD_SPOOL_H

#include <stddef.h>
#include <stdint.h>

/*
 * The spool file format (DESIGN §4). A file is a sequence of records:
 *     type (1 byte) | length (4 bytes, big-endian) | data (length bytes)
 * The envelope records come first, then the message in BODY chunks, then END whose
 * data is the decimal body length. A file that does not end with a matching END
 * record is torn and is never relayed.
 */

enum spool_rec {
    SPOOL_VERSION = 'V',   /* "1" */
    SPOOL_ID = 'I',        /* queue id */
    SPOOL_TIME = 'T',      /* arrival, decimal seconds since the epoch */
    SPOOL_SESSION = 'S',
    SPOOL_USER = 'U',
    SPOOL_CLIENT = 'C',    /* client address */
    SPOOL_FROM = 'F',      /* envelope sender, without angle brackets */
    SPOOL_RCPT = 'R',      /* one envelope recipient */
    SPOOL_BODY = 'B',      /* a chunk of the message, CRLF line endings, unstuffed */
    SPOOL_END = 'E'
};

#define SPOOL_REC_MAX (1024 * 1024)   /* larger records are corruption */
#define SPOOL_ID_LEN 20

/* Appends one record with write_all(); 0 or -1 (errno). */
int spool_put(int fd, enum spool_rec type, const void *data, size_t len);
int spool_put_str(int fd, enum spool_rec type, const char *s);

/* Generates a fresh queue id: 20 characters of [0-9A-Z], time-ordered prefix. */
void spool_new_id(char out[SPOOL_ID_LEN + 1]);
/* 1 when s looks like a queue id (so it is safe as a file name). */
int spool_id_valid(const char *s);

/* A parsed spool file, loaded fully into memory for relaying. */
struct spool_msg {
    char id[SPOOL_ID_LEN + 1];
    char user[128];
    char session[64];
    char client[64];
    char from[512];
    long long time;
    int nrcpt;
    char **rcpt;
    char *body;            /* the message, CRLF lines, not dot-stuffed */
    size_t body_len;
};

/*
 * Reads and validates a spool file. Returns 0, or -1 with a reason in err ("torn:
 * no END record", "bad record type 0x.."...). The caller frees with spool_msg_free().
 */
int spool_load(const char *path, struct spool_msg *msg, char *err, size_t errlen);
void spool_msg_free(struct spool_msg *msg);

#endif
