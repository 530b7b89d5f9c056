/*
 * libFuzzer target over the IPC codecs (submitd/lib/ipc_codec.c): every decoder
 * on a message built from arbitrary bytes, as a receiver gets it from a peer it
 * must treat as hostile. The first byte picks the message type, the rest is the
 * payload after the fixed header. A decoder must refuse or fill its struct; it
 * must never read outside the message, and an accepted envelope must re-encode.
 */
#include "ipc_codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct ipc_msg msg, out;

static void load(const uint8_t *data, size_t size)
{
    ipc_init(&msg, (enum ipc_type)(1 + data[0] % (IPC_TYPE_MAX - 1)), 7);
    size--;
    if (size > IPC_MAX_MSG - 16)
        size = IPC_MAX_MSG - 16;
    memcpy(msg.buf + 16, data + 1, size);
    msg.len = (uint32_t)(16 + size);
    msg.rpos = 16;
}

#define TRY(type, dec, enc)                                                        \
    do {                                                                            \
        static type v;                                                              \
        load(data, size);                                                           \
        if (dec(&msg, &v) == 0)                                                     \
            (void)enc;                                                              \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    TRY(struct ipc_identity, ipc_dec_identity, ipc_enc_identity(&out, 1, &v));
    TRY(struct ipc_password, ipc_dec_password, ipc_enc_password(&out, 1, &v));
    TRY(struct ipc_sender, ipc_dec_sender, ipc_enc_sender(&out, 1, &v));
    TRY(struct ipc_authzid, ipc_dec_authzid, ipc_enc_authzid(&out, 1, &v));
    TRY(struct ipc_audit, ipc_dec_audit, ipc_enc_audit(&out, 1, &v));
    TRY(struct ipc_session_end, ipc_dec_session_end, ipc_enc_session_end(&out, &v));
    TRY(struct ipc_result, ipc_dec_result, ipc_enc_result(&out, 1, &v));
    TRY(struct ipc_grant, ipc_dec_grant, ipc_enc_grant(&out, 1, &v));
    TRY(struct ipc_queue_answer, ipc_dec_queue_answer,
        ipc_enc_queue_answer(&out, IPC_QUEUE_OPENED, 1, &v));
    TRY(struct ipc_commit, ipc_dec_commit, ipc_enc_commit(&out, 1, &v));
    TRY(struct ipc_abort, ipc_dec_abort, ipc_enc_abort(&out, &v));
    TRY(struct ipc_relay_audit, ipc_dec_relay_audit, ipc_enc_relay_audit(&out, &v));
    TRY(struct ipc_accept, ipc_dec_accept, ipc_enc_accept(&out, 1, &v));
    {
        struct ipc_envelope v;

        load(data, size);
        if (ipc_dec_envelope(&msg, &v) == 0) {
            /* What was accepted can be sent on: the queue re-encodes it for authz. */
            if (ipc_enc_envelope(&out, IPC_AUTHZ_GRANT_CHECK, 1, &v) != 0 &&
                v.nrcpt * (IPC_ADDR_MAX + 3) < IPC_MAX_MSG / 2)
                abort();
            ipc_envelope_free(&v);
        }
    }
    return 0;
}
