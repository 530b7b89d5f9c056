"""Memory per idle TLS session (DESIGN section 9), for the benchmark.

    python3 idle.py --port N --cert FILE --key FILE --cafile FILE --sid PID
                    [--comm submitd-smtp] [--sessions 300] [--warmup 8] [--timeout 10]
                    [--max-seconds 60]

Finds the process named --comm in session --sid (the daemon runs in its own session),
opens --warmup sessions and closes them again (so that one-time set-up in the daemon,
such as loading OpenSSL's algorithms, is not charged to the sessions), reads its
resident set size, then opens --sessions sessions on 127.0.0.1:PORT and leaves each
idle after STARTTLS with the client certificate and a second EHLO. It reads the
resident set size again once all of them are open, closes them with QUIT and prints
one line:

    idle: sessions=N rss_before=KiB rss_after=KiB per_session=KiB

It exits 1 (with the reason on stderr) when a session cannot be opened or the process
is not found. Every network operation is bounded by --timeout, and opening the
sessions by --max-seconds.
"""

import argparse
import os
import socket
import ssl
import sys
import time


def find_pid(sid, comm):
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...
        head, _, rest = stat.rpartition(")")
        fields = rest.split()
        if head.split("(", 1)[1] == comm and int(fields[3]) == sid:
            return int(name)
    return None


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for process %d" % pid)


class Session:
    def __init__(self, port, ctx, timeout):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.expect(220, "greeting")
        self.command(b"EHLO idle.localdomain", 250)
        self.command(b"STARTTLS", 220)
        if self.buf:
            raise RuntimeError("bytes after the STARTTLS reply")
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.command(b"EHLO idle.localdomain", 250)

    def read_reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(4096)
                if not data:
                    raise RuntimeError("connection closed after %r" % lines)
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), lines

    def expect(self, code, what):
        got, lines = self.read_reply()
        if got != code:
            raise RuntimeError("%s: %r" % (what, lines))

    def command(self, line, code):
        self.sock.sendall(line + b"\r\n")
        self.expect(code, line.decode())

    def close(self, polite=True):
        try:
            if polite:
                self.command(b"QUIT", 221)
        except (OSError, RuntimeError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--sid", type=int, required=True)
    ap.add_argument("--comm", default="submitd-smtp")
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--max-seconds", type=float, default=60)
    args = ap.parse_args()

    pid = find_pid(args.sid, args.comm)
    if pid is None:
        print("idle: no process %s in session %d" % (args.comm, args.sid), file=sys.stderr)
        return 1

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(args.cafile)
    ctx.load_cert_chain(args.cert, args.key)

    sessions = []
    try:
        for _ in range(args.warmup):
            sessions.append(Session(args.port, ctx, args.timeout))
        for s in sessions:
            s.close()
        sessions = []
        time.sleep(0.5)
        before = rss_kib(pid)
        deadline = time.monotonic() + args.max_seconds
        for _ in range(args.sessions):
            if time.monotonic() > deadline:
                raise RuntimeError("not all open after %g s" % args.max_seconds)
            sessions.append(Session(args.port, ctx, args.timeout))
        # Every session has had its EHLO answered; give the daemon a moment to settle.
        time.sleep(0.5)
        after = rss_kib(pid)
        # The sessions must all still be open: one NOOP each.
        for s in sessions:
            s.command(b"NOOP", 250)
    except (OSError, RuntimeError, ssl.SSLError) as e:
        print("idle: session %d of %d: %s" % (len(sessions) + 1, args.sessions, e),
              file=sys.stderr)
        for s in sessions:
            s.close(polite=False)
        return 1
    for s in sessions:
        s.close()
    n = len(sessions)
    print("idle: sessions=%d rss_before=%d KiB rss_after=%d KiB per_session=%.1f KiB"
          % (n, before, after, (after - before) / n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
