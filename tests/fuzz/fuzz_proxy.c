/*
 * libFuzzer target over the PROXY header parser (submitd/lib/proxy_proto.c), which
 * reads the first bytes of every connection on a listener with proxy_protocol = v2.
 * Besides memory safety, it checks the parser's promises: a header it accepts is
 * within the input and the maximum, an address it reports is text, and every
 * prefix of an accepted header asks for more bytes rather than deciding early.
 */
#include "proxy_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_result r, p;
    enum proxy_status st = proxy_parse(data, size, &r);

    if (st == PROXY_ERROR && r.reason == NULL)
        abort();
    if (st != PROXY_OK)
        return 0;
    if (r.len == 0 || r.len > size || r.len > PROXY_HEADER_MAX)
        abort();
    if (r.has_address && (memchr(r.src, '\0', sizeof(r.src)) == NULL || r.src[0] == '\0'))
        abort();
    /* The same header with anything after it is the same header. */
    if (proxy_parse(data, r.len, &p) != PROXY_OK || p.len != r.len)
        abort();
    for (size_t i = 0; i < r.len; i++)
        if (proxy_parse(data, i, &p) != PROXY_NEED_MORE)
            abort();
    return 0;
}
