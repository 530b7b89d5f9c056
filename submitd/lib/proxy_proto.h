#ifndef SUBMITD_PROXY_PROTO_H
#define SUBMITD_PROXY_PROTO_H

#include <stddef.h>

/*
 * The PROXY protocol header a TCP load balancer (HAProxy's send-proxy-v2) puts in
 * front of the client's bytes: the binary version 2 and the text version 1. The
 * parser is a pure function over the bytes received so far: it does no I/O and
 * keeps no state, so the caller can run it again over a longer buffer after every
 * read, and it tells exactly how many bytes belong to the header, never more.
 */

/* The longest header accepted, TLVs included. A v1 line is at most 107 bytes; a v2
 * header from HAProxy is 28 (IPv4) or 52 (IPv6) bytes plus whatever TLVs it was
 * told to add, far below this. Anything longer is refused, not buffered. */
#define PROXY_HEADER_MAX 4096
#define PROXY_V1_MAX 107

enum proxy_status { PROXY_ERROR = -1, PROXY_NEED_MORE = 0, PROXY_OK = 1 };

struct proxy_result {
    size_t len;             /* PROXY_OK: the header's length in bytes */
    int version;            /* 1 or 2 */
    /* 1 when the header names the original client (PROXY over TCP/IPv4 or IPv6);
     * 0 for the LOCAL command (the balancer's own health check), an UNSPEC or
     * UNIX address family, or v1 "UNKNOWN": the connection's own addresses stand. */
    int has_address;
    int family;             /* AF_INET or AF_INET6 when has_address, else AF_UNSPEC */
    char src[46];           /* the client's address as text, when has_address */
    char dst[46];
    unsigned src_port, dst_port;
    const char *reason;     /* PROXY_ERROR: why, as static text for the log */
};

/*
 * Looks for one PROXY header at the start of buf. Returns PROXY_NEED_MORE while
 * buf is a proper prefix of a header that may still be valid, PROXY_OK with
 * out->len set when a whole valid header is there (bytes after it are not looked
 * at), PROXY_ERROR with out->reason otherwise.
 */
enum proxy_status proxy_parse(const unsigned char *buf, size_t len, struct proxy_result *out);

#endif
