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
 *
 * The delivery state lives in the same file: an RSTATE record after a RCPT record
 * gives that recipient's state, and ATTEMPTS, NEXT and REPLY the message's. A file
 * that the smtp side wrote has none of them (every recipient pending, no attempt
 * yet). The queue never edits a file in place: it writes a whole new file with
 * spool_write(), fsyncs it and renames it over the old one.
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
    SPOOL_END = 'E',
    SPOOL_RSTATE = 'r',    /* state of the preceding RCPT: "<state char> <last reply>" */
    SPOOL_ATTEMPTS = 'A',  /* delivery attempts so far, decimal */
    SPOOL_NEXT = 'N',      /* next attempt, decimal seconds since the epoch */
    SPOOL_REPLY = 'L'      /* the last upstream reply or reason, for the listing */
};

/* Recipient states (the first byte of an RSTATE record). */
enum spool_rcpt_state {
    SPOOL_RCPT_PENDING = 'P',    /* still to deliver */
    SPOOL_RCPT_DELIVERED = 'D',  /* the upstream accepted it: never sent again */
    SPOOL_RCPT_FAILED = 'F',     /* permanent failure, delivery status not yet sent */
    SPOOL_RCPT_REPORTED = 'X'    /* permanent failure, reported to the sender */
};

#define SPOOL_REPLY_MAX 512      /* longest stored reply text, with its terminator */

#define SPOOL_REC_MAX (1024 * 1024)   /* larger records are corruption */
/* The fields smtp adds to a message (Received, Message-ID, Date) are each written
 * from a buffer of this size: a message may exceed max_message_size by at most
 * three of them, which is what the queue allows at COMMIT. */
#define SPOOL_ADDED_FIELD_MAX 2048
#define SPOOL_ADDED_MAX (3 * SPOOL_ADDED_FIELD_MAX)
#define SPOOL_ID_LEN 20

/* Appends one record with write_all(); 0 or -1 (errno). */
int spool_put(int fd, enum spool_rec type, const void *data, size_t len);
int spool_put_str(int fd, enum spool_rec type, const char *s);
/* Appends one record holding the string s to buf (cap bytes, *len used), for a
 * caller that writes several records at once; -1 when it does not fit. */
int spool_rec_append(unsigned char *buf, size_t cap, size_t *len, enum spool_rec type,
                     const char *s);

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
    /* Delivery state; rstate[i] and rreply[i] belong to rcpt[i]. */
    char *rstate;          /* enum spool_rcpt_state per recipient */
    char **rreply;         /* last reply per recipient; NULL entries when none */
    int attempts;
    long long next;        /* 0: due at once */
    char last[SPOOL_REPLY_MAX];
};

/*
 * Reads and validates a spool file. Returns 0, or -1 with a reason in err ("torn:
 * no END record", "bad record type 0x.."...). The caller frees with spool_msg_free().
 */
int spool_load(const char *path, struct spool_msg *msg, char *err, size_t errlen);
/* The same for the file name in the directory dirfd. */
int spool_load_at(int dirfd, const char *name, struct spool_msg *msg, char *err, size_t errlen);
/*
 * The same for a file already open as fd (read access), which stays open. A file
 * that no directory holds any more (removed meanwhile) is refused with "cannot
 * read: No such file or directory".
 */
int spool_load_fd(int fd, struct spool_msg *msg, char *err, size_t errlen);
/*
 * The same validation without keeping the message: body is NULL and body_len its
 * length. For listings and start-up, which need only the envelope and the state.
 */
int spool_load_envelope(const char *path, struct spool_msg *msg, char *err, size_t errlen);
/* The same for the file name in the directory dirfd (root's tools: no path lookup). */
int spool_load_envelope_at(int dirfd, const char *name, struct spool_msg *msg, char *err,
                           size_t errlen);
void spool_msg_free(struct spool_msg *msg);

/*
 * Writes msg as a whole spool file on fd (envelope, state, body in chunks, END); the
 * caller fsyncs and renames. msg->body must be loaded. 0 or -1 (errno).
 */
int spool_write(int fd, const struct spool_msg *msg);
/* Appends a recipient in the pending state; 0 or -1 (out of memory). */
int spool_add_rcpt(struct spool_msg *msg, const char *addr);
/*
 * Sets the state and last reply of recipient i (reply may be NULL). 0, or -1 when
 * out of memory (the state is then unchanged).
 */
int spool_set_rcpt(struct spool_msg *msg, int i, enum spool_rcpt_state state, const char *reply);
/* Number of recipients in state. */
int spool_count_rcpt(const struct spool_msg *msg, enum spool_rcpt_state state);

#endif
