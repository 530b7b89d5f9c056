"""Memory per idle TLS session (DESIGN section 9), for the benchmark.

    python3 idle.py --port N --cert FILE --key FILE --cafile FILE --sid PID
                    [--comm submitd-smtp] [--sessions 300] [--warmup 8] [--timeout 10]
                    [--max-seconds 60] [--sources 1] [--honest 10]
                    [--from ADDR --to ADDR]

Finds the process named --comm in session --sid (the daemon runs in its own session),
opens --warmup sessions and closes them again (so that one-time set-up in the daemon,
such as loading OpenSSL's algorithms, is not charged to the sessions), reads its
resident set size, then opens --sessions sessions on 127.0.0.1:PORT and leaves each
idle after STARTTLS with the client certificate and a second EHLO. It reads the
resident set size again once all of them are open, closes them with QUIT and prints
one line:

    idle: sessions=N rss_before=KiB rss_after=KiB per_session=KiB

The sessions come from --sources loopback addresses (127.0.0.1, 127.0.0.2, ...),
round robin, so that many thousands of them do not run out of one address's ephemeral
ports. The time from connect to the greeting of every session is measured, and the
slowest is reported. With --honest N (and --from, --to), an honest client sends N
messages one after the other, each in a session of its own, once before the idle
sessions are opened and once while they are all held, and the slowest send of each is
reported: the line then also has

    greeting_max=MS honest_idle_max=MS honest_held_max=MS

It exits 1 (with the reason on stderr) when a session cannot be opened or the process
is not found. Every network operation is bounded by --timeout, and opening the
sessions by --max-seconds.
"""

import argparse
import os
import resource
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
    def __init__(self, port, ctx, timeout, source="127.0.0.1"):
        t0 = time.monotonic()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.buf = b""
        self.expect(220, "greeting")
        self.greeting = time.monotonic() - t0
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


def honest_sends(args, ctx, count):
    """The slowest of COUNT messages sent one after the other, in milliseconds."""
    worst = 0.0
    body = b"From: %s\r\nTo: %s\r\nSubject: honest\r\n\r\nhello\r\n.\r\n" % (
        args.mail_from.encode(), args.rcpt.encode())
    for _ in range(count):
        t0 = time.monotonic()
        s = Session(args.port, ctx, args.timeout)
        s.command(b"MAIL FROM:<%s>" % args.mail_from.encode(), 250)
        s.command(b"RCPT TO:<%s>" % args.rcpt.encode(), 250)
        s.command(b"DATA", 354)
        s.sock.sendall(body)
        s.expect(250, "end of data")
        s.close()
        worst = max(worst, time.monotonic() - t0)
    return worst * 1000


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
    ap.add_argument("--sources", type=int, default=1)
    ap.add_argument("--honest", type=int, default=0)
    ap.add_argument("--from", dest="mail_from", default="")
    ap.add_argument("--to", dest="rcpt", default="")
    args = ap.parse_args()
    if args.honest and not (args.mail_from and args.rcpt):
        print("idle: --honest needs --from and --to", file=sys.stderr)
        return 2
    # One descriptor per session: take what the hard limit allows.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sources = ["127.0.0.%d" % (i + 1) for i in range(max(1, args.sources))]

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
        honest_idle = honest_sends(args, ctx, args.honest) if args.honest else 0
        time.sleep(0.5)
        before = rss_kib(pid)
        start = time.monotonic()
        deadline = start + args.max_seconds
        greeting_max = 0.0
        for i in range(args.sessions):
            if time.monotonic() > deadline:
                raise RuntimeError("not all open after %g s" % args.max_seconds)
            s = Session(args.port, ctx, args.timeout, sources[i % len(sources)])
            greeting_max = max(greeting_max, s.greeting)
            sessions.append(s)
        opened = time.monotonic() - start
        # Every session has had its EHLO answered; give the daemon a moment to settle.
        time.sleep(0.5)
        after = rss_kib(pid)
        honest_held = honest_sends(args, ctx, args.honest) if args.honest else 0
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
    line = ("idle: sessions=%d rss_before=%d KiB rss_after=%d KiB per_session=%.1f KiB"
            " opened_in=%.1fs sources=%d greeting_max=%.1fms"
            % (n, before, after, (after - before) / n, opened, len(sources),
               greeting_max * 1000))
    if args.honest:
        line += " honest_idle_max=%.1fms honest_held_max=%.1fms" % (honest_idle, honest_held)
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
