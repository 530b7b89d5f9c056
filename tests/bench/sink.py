"""Upstream sink for the benchmark: a plain SMTP server on 127.0.0.1 that counts
what it receives and throws the messages away.

    python3 sink.py --port-file FILE --stats FILE [--port N]

It binds a free port (or --port), writes the port number to --port-file once it
listens, and keeps --stats current (rewritten atomically every 100 ms while messages
arrive) as one line:

    messages=N recipients=N bytes=N first=EPOCH last=EPOCH

first/last are the wall-clock times (seconds, float) of the first and the latest
accepted message, 0 before any. It stops on SIGTERM only: an interrupt at the terminal
reaches the whole process group, and the sink must stay up until the benchmark script
has stopped the daemon that relays to it.
"""

import argparse
import asyncio
import os
import signal
import time

from aiosmtpd.smtp import SMTP


class Counter:
    def __init__(self):
        self.messages = 0
        self.recipients = 0
        self.bytes = 0
        self.first = 0.0
        self.last = 0.0
        self.dirty = True

    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        self.messages += 1
        self.recipients += len(envelope.rcpt_tos)
        self.bytes += len(envelope.original_content or b"")
        if self.first == 0.0:
            self.first = now
        self.last = now
        self.dirty = True
        return "250 2.0.0 Ok: queued as S%d" % self.messages

    def line(self):
        return "messages=%d recipients=%d bytes=%d first=%.6f last=%.6f\n" % (
            self.messages, self.recipients, self.bytes, self.first, self.last)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--stats", required=True)
    args = ap.parse_args()

    counter = Counter()
    loop = asyncio.get_running_loop()
    # Messages up to 64 MiB: the sink must never be the one that refuses a message.
    server = await loop.create_server(
        lambda: SMTP(counter, hostname="sink.localhost", data_size_limit=64 << 20,
                     enable_SMTPUTF8=True),
        host="127.0.0.1", port=args.port)
    port = server.sockets[0].getsockname()[1]
    write_atomic(args.stats, counter.line())
    write_atomic(args.port_file, "%d\n" % port)

    stop = asyncio.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        if counter.dirty:
            counter.dirty = False
            write_atomic(args.stats, counter.line())
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass
    server.close()
    write_atomic(args.stats, counter.line())


if __name__ == "__main__":
    asyncio.run(main())
