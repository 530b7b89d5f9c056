"""The benchmark's upstream sink (submitd-sink, tests/bench/sink.c) with a real client.

make bench charges the sink's work to the servers it measures and trusts its count of
relayed messages, so the count must be exact: pipelined commands, a terminator that
arrives in two reads, dot-unstuffing, and a command line that is too long.
"""

import os
import signal
import smtplib
import socket
import subprocess
import threading
import time

from conftest import binary


def read_stats(path):
    with open(path) as f:
        return dict(field.split("=", 1) for field in f.read().split())


def wait_for(predicate, limit=5.0):
    end = time.time() + limit
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def start_sink(tmp_path):
    port_file = tmp_path / "sink.port"
    stats_file = tmp_path / "sink.stats"
    proc = subprocess.Popen([str(binary("submitd-sink")), "--port-file", str(port_file),
                             "--stats", str(stats_file)])
    if not wait_for(lambda: port_file.exists() and port_file.read_text().strip()):
        proc.kill()
        proc.wait()
        raise AssertionError("the sink did not write its port")
    return proc, int(port_file.read_text()), stats_file


def test_sink_counts_pipelined_and_dot_stuffed_messages(tmp_path):
    proc, port, stats_file = start_sink(tmp_path)
    try:
        assert read_stats(stats_file)["messages"] == "0"

        # An interrupt at the terminal must not stop it: only SIGTERM does.
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        assert proc.poll() is None

        s = smtplib.SMTP("127.0.0.1", port, timeout=10)
        code, _ = s.ehlo("client.test")
        assert code == 250
        for ext in ("pipelining", "8bitmime", "size"):
            assert s.has_extn(ext), ext
        assert "starttls" not in s.esmtp_features

        # The whole envelope and DATA in one write (RFC 2920), as submitd's relay sends
        # it; the data stuffed by hand, its terminator split over two writes.
        s.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n"
               b"RCPT TO:<c@example.net>\r\nDATA\r\n")
        assert [s.getreply()[0] for _ in range(4)] == [250, 250, 250, 354]
        first = b"Subject: one\r\n\r\n.leading dot\r\n..two dots\r\nbody\r\n"
        wire = first.replace(b"\r\n.", b"\r\n..")
        s.send(wire + b".")
        time.sleep(0.2)
        s.send(b"\r\n")
        code, text = s.getreply()
        assert code == 250, text

        # The second message through smtplib, which stuffs the dots itself.
        second = "Subject: two\r\n\r\n.starts with a dot\r\n.\r\nlast line\r\n"
        assert s.sendmail("a@example.com", ["d@example.net"], second) == {}

        # A command line over 1000 bytes gets a 5xx, and the session goes on.
        s.putcmd("NOOP " + "x" * 2000)
        code, _ = s.getreply()
        assert 500 <= code < 600
        assert s.noop()[0] == 250
        # In the middle of the session the same holds for MAIL.
        s.putcmd("MAIL FROM:<" + "y" * 2000 + "@example.com>")
        assert s.getreply()[0] == 500
        assert s.rset()[0] == 250
        s.quit()

        want = {"messages": "2", "recipients": "3",
                "bytes": str(len(first) + len(second.encode()))}
        assert wait_for(lambda: {k: read_stats(stats_file)[k] for k in want} == want), \
            read_stats(stats_file)
        stats = read_stats(stats_file)
        assert 0 < float(stats["first"]) <= float(stats["last"]) <= time.time()
        assert not os.path.exists(str(stats_file) + ".tmp")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert read_stats(stats_file)["messages"] == "2"


def test_sink_answers_a_burst_larger_than_its_buffers(tmp_path):
    """Far more pipelined commands than its reply buffer holds, sent in one go by a
    client that reads only afterwards: every command is answered, in order."""
    proc, port, stats_file = start_sink(tmp_path)
    try:
        transaction = (b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
                       b"Subject: burst\r\n\r\n..x\r\n.\r\n")
        noops = 5000
        burst = b"EHLO client.test\r\n" + transaction * 20 + b"NOOP\r\n" * noops + b"QUIT\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            sender = threading.Thread(target=s.sendall, args=(burst,))
            sender.start()
            replies = s.makefile("rb").read().split(b"\r\n")
            sender.join()
        codes = [line[:4] for line in replies if line]
        assert codes[0] == b"220 "
        assert codes[-1] == b"221 "
        assert codes.count(b"354 ") == 20
        assert codes.count(b"250 ") == 1 + 20 * 3 + noops
        assert wait_for(lambda: read_stats(stats_file)["messages"] == "20")
        assert read_stats(stats_file)["bytes"] == str(20 * len(b"Subject: burst\r\n\r\n.x\r\n"))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
