"""submit-admin stats (DESIGN §5): the queue read from a live spool (the upstream is
down, so messages stay queued), decisions and refusals of the last hour from real
audit rows, the CRL's next update, server and CA certificate expiry and client
certificates that expire soon; as text, JSON and Prometheus text exposition format,
the last one checked line by line by a small parser."""

import datetime
import json
import re
import sqlite3

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from conftest import make_message, mail_reply, poll, send_ok

NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
HELP_RE = re.compile(r"^# HELP (\S+) (.*)$")
TYPE_RE = re.compile(r"^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$")


def parse_labels(text, lineno):
    """{a="x",b="y\\"z"} body (without braces) -> dict; fails on anything else."""
    labels, i = {}, 0
    while i < len(text):
        m = re.match(r"([^=]*)=\"", text[i:])
        assert m, f"line {lineno}: bad label at {text[i:]!r}"
        name = m.group(1)
        assert LABEL_NAME_RE.match(name), f"line {lineno}: bad label name {name!r}"
        i += m.end()
        value = []
        while True:
            assert i < len(text), f"line {lineno}: unterminated label value"
            c = text[i]
            if c == "\\":
                nxt = text[i + 1]
                assert nxt in '\\"n', f"line {lineno}: bad escape \\{nxt}"
                value.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        assert name not in labels, f"line {lineno}: label {name} twice"
        labels[name] = "".join(value)
        if i < len(text):
            assert text[i] == ",", f"line {lineno}: expected ',' at {text[i:]!r}"
            i += 1
    return labels


def parse_exposition(text):
    """Prometheus text format 0.0.4: every sample after the TYPE line of its family, names
    and label names valid, values floats, no series twice. Returns
    {name: [(labels, value)]} and {name: type}."""
    assert text.endswith("\n"), "the last line must end with a newline"
    samples, types, helps, seen = {}, {}, {}, set()
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        assert line == line.strip() and line, f"line {lineno}: blank or padded: {line!r}"
        if line.startswith("#"):
            m = HELP_RE.match(line)
            if m:
                assert m.group(1) not in helps, f"line {lineno}: second HELP for {m.group(1)}"
                helps[m.group(1)] = m.group(2)
                continue
            m = TYPE_RE.match(line)
            assert m, f"line {lineno}: a comment that is neither HELP nor TYPE: {line!r}"
            assert NAME_RE.match(m.group(1)), f"line {lineno}: bad name {m.group(1)}"
            assert m.group(1) not in types, f"line {lineno}: second TYPE for {m.group(1)}"
            assert m.group(1) not in samples, f"line {lineno}: TYPE after samples of {m.group(1)}"
            types[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^([^{ ]+)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$", line)
        assert m, f"line {lineno}: not a sample: {line!r}"
        name, labels_text, value = m.group(1), m.group(2), m.group(3)
        assert NAME_RE.match(name), f"line {lineno}: bad metric name {name!r}"
        assert name in types, f"line {lineno}: sample of {name} without a preceding TYPE"
        labels = parse_labels(labels_text, lineno) if labels_text else {}
        v = float(value)      # raises on anything that is not a float (NaN, +Inf are floats)
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"line {lineno}: series {key} twice"
        seen.add(key)
        samples.setdefault(name, []).append((labels, v))
    for name in types:
        assert name in helps, f"{name} has a TYPE but no HELP"
    return samples, types


def only(samples, name, **labels):
    got = [v for lab, v in samples.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert len(got) == 1, (name, labels, samples.get(name))
    return got[0]


def epoch(dt):
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp() if dt.tzinfo is None else dt.timestamp()


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def test_parser_catches_what_it_should():
    good = ('# HELP a_b x\n# TYPE a_b gauge\na_b{r="q\\"\\\\\\n",d="x"} 1.5\n')
    samples, _ = parse_exposition(good)
    assert samples["a_b"][0] == ({"r": 'q"\\\n', "d": "x"}, 1.5)
    for bad in ("a 1\n",                                        # no TYPE
                "# TYPE a gauge\n# HELP a x\na one\n",          # not a float
                "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",         # bad name
                '# HELP a x\n# TYPE a gauge\na{b="c} 1\n',      # unterminated label
                "# HELP a x\n# TYPE a gauge\na 1\na 2\n"):      # series twice
        try:
            parse_exposition(bad)
        except (AssertionError, ValueError):
            continue
        raise AssertionError(f"parser accepted {bad!r}")


def test_stats_on_a_live_installation(fresh_stack_factory):
    s = fresh_stack_factory("stats", start_upstream=False, crl="ca/crl.pem")
    env = s.env
    started = datetime.datetime.now(datetime.timezone.utc)

    # Two messages that stay queued: the upstream is down.
    ids = [send_ok(env, s.alice, make_message()) for _ in range(2)]
    # Deferred: the queue has tried each at least once.
    listed = poll(lambda: (lambda q: q if all(m["attempts"] > 0 for m in q) else None)(
        json.loads(env.admin("queue", "list", "--json").stdout)), 20, 0.5)
    assert listed and sorted(m["id"] for m in listed) == sorted(ids), listed

    # A refused session: bob's certificate revoked (and the CRL rewritten by revoke).
    bob = env.issue("bob", "bob@example.com")
    env.ca("revoke", "--user", "bob", "--reason", "keyCompromise")
    mark = s.audit.mark()
    reply = poll(lambda: (lambda r: r if r.startswith("535") else None)(
        mail_reply(s, bob, bob.email)), 10, 0.5)
    assert reply, "bob's revoked certificate was not refused"
    refused = s.audit.wait(lambda r: r["decision"] == "reject", mark, what="bob's refusal")
    # A certificate that expires within 30 days, and one that does not.
    env.ca("issue", "carol", "--email", "carol@example.com", "--days", "10", "--out",
           env.dir / "carol", "--p12-password-file", env.p12_password_file)
    # Rows older than an hour are not counted.
    con = sqlite3.connect(env.db_path)
    old = iso(started - datetime.timedelta(hours=2))
    con.executemany("INSERT INTO audit(ts, session, event, decision, reason) VALUES (?,?,?,?,?)",
                    [(old, "old1", "identity", "reject", "an old refusal"),
                     (old, "old2", "submission", "accept", None)])
    con.commit()
    con.close()

    want = env.query("SELECT decision, count(*) AS n FROM audit WHERE decision IS NOT NULL"
                     " AND ts >= ? GROUP BY decision",
                     ((started - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S"),))
    want = {r["decision"]: r["n"] for r in want}
    assert want.get("accept", 0) >= 2 and want.get("reject", 0) >= 1, want

    # ---- JSON ----
    data = json.loads(env.admin("stats", "--json").stdout)
    q = data["queue"]
    assert q["messages"] == 2 and q["deferred"] == 2 and q["unreadable"] == 0, q
    oldest = min(m["arrival"] for m in listed)
    assert q["oldest_arrival"] == oldest
    assert 0 <= q["oldest_seconds"] < 300
    d = data["decisions_last_hour"]
    assert d == {"accept": want.get("accept", 0), "reject": want.get("reject", 0),
                 "tempfail": want.get("tempfail", 0)}, (d, want)
    reasons = {(r["decision"], r["reason"]): r["sessions"] for r in data["refused_last_hour"]}
    assert reasons.get(("reject", refused["reason"])) == 1, (reasons, refused)
    assert ("reject", "an old refusal") not in reasons
    ca = x509.load_pem_x509_certificate(env.ca_cert_path.read_bytes())
    server = x509.load_pem_x509_certificate((env.dir / "server.crt").read_bytes())
    crl = x509.load_pem_x509_crl((env.dir / "ca" / "crl.pem").read_bytes())
    assert [c["issuer"] for c in data["crl"]] == [ca.subject.rfc4514_string()]
    assert data["crl"][0]["next_update"] == crl.next_update.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert data["server_certificate"]["not_after"] == \
        server.not_valid_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert data["ca_certificate"]["not_after"] == ca.not_valid_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert data["client_certs_expiring_30d"] == 1
    assert [c["user"] for c in data["expiring"]] == ["carol"]

    # ---- Prometheus ----
    p = env.admin("stats", "--prometheus")
    samples, types = parse_exposition(p.stdout)
    assert all(n.startswith("submitd_") for n in types), types
    assert only(samples, "submitd_queue_messages") == 2
    assert only(samples, "submitd_queue_deferred_messages") == 2
    assert 0 <= only(samples, "submitd_queue_oldest_seconds") < 300
    for decision in ("accept", "reject", "tempfail"):
        assert only(samples, "submitd_decisions_last_hour", decision=decision) == \
            want.get(decision, 0)
    assert only(samples, "submitd_refused_sessions_last_hour", decision="reject",
                reason=refused["reason"]) == 1
    assert only(samples, "submitd_crl_next_update_timestamp_seconds",
                issuer=ca.subject.rfc4514_string()) == epoch(crl.next_update)
    assert only(samples, "submitd_certificate_expiry_timestamp_seconds", which="server") == \
        epoch(server.not_valid_after)
    assert only(samples, "submitd_certificate_expiry_timestamp_seconds", which="ca") == \
        epoch(ca.not_valid_after)
    assert only(samples, "submitd_client_certs_expiring_30d") == 1
    assert only(samples, "submitd_stats_complete") == 1

    # ---- text ----
    text = env.admin("stats").stdout
    assert "queue:\t2 messages, 2 deferred, oldest " in text, text
    assert f"decisions last hour:\taccept {want.get('accept', 0)}, reject " in text, text
    assert refused["reason"] in text and "carol" in text, text
    assert "server certificate:\t" in text and "CA certificate:\t" in text

    # Once the upstream is back and the queue flushed, the queue is empty.
    s.upstream.start()
    env.admin("queue", "flush")
    assert poll(lambda: json.loads(env.admin("stats", "--json").stdout)["queue"]["messages"] == 0,
                20, 0.5), "the queue did not empty"
    samples, _ = parse_exposition(env.admin("stats", "--prometheus").stdout)
    assert only(samples, "submitd_queue_messages") == 0
    assert only(samples, "submitd_queue_oldest_seconds") == 0


def test_stats_label_values_are_escaped_and_series_unique(fresh_stack_factory):
    """A reason holding quotes, a backslash, a newline and non-ASCII bytes stays one
    valid sample line; two reasons that print alike are one series; a CRL file that
    holds an older CRL of the same CA next to the newer gives one sample, the newer's."""
    s = fresh_stack_factory("stats-escape", start_daemon=False, crl="ca/crl.pem")
    env = s.env
    env.admin("user", "list")
    (env.dir / "spool" / "queue").mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(env.db_path)
    for session, reason in (("x1", 'bad "name" \\ here\nand\u00e9 there'),
                            ("x2", "refused \u00e9"), ("x3", "refused \u00e8")):
        con.execute("INSERT INTO audit(session, event, decision, reason) VALUES (?, 'mail',"
                    " 'reject', ?)", (session, reason))
    con.commit()
    con.close()

    ca_cert, ca_key = env.ca_cert_and_key()
    crl_path = env.dir / "ca" / "crl.pem"
    newer = x509.load_pem_x509_crl(crl_path.read_bytes())
    then = newer.last_update - datetime.timedelta(days=3)
    older = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
             .last_update(then).next_update(then + datetime.timedelta(days=30))
             .sign(ca_key, hashes.SHA256()))
    crl_path.write_bytes(crl_path.read_bytes() + older.public_bytes(serialization.Encoding.PEM))

    p = env.admin("stats", "--prometheus", check=False)
    samples, _ = parse_exposition(p.stdout)
    got = sorted((lab["reason"], v) for lab, v in samples["submitd_refused_sessions_last_hour"])
    assert got == [('bad "name" \\ here?and?? there', 1), ("refused ??", 2)], got
    assert samples["submitd_crl_next_update_timestamp_seconds"] == [
        ({"issuer": ca_cert.subject.rfc4514_string()}, epoch(newer.next_update))]
    assert p.returncode == 0, p.stderr


def test_stats_names_what_it_cannot_read(fresh_stack_factory):
    s = fresh_stack_factory("stats-missing", start_daemon=False)
    env = s.env
    env.settings["crl"] = "ca/missing-crl.pem"
    env.write_config()
    p = env.admin("stats", "--prometheus", check=False)
    assert p.returncode == 1, p
    assert "missing-crl.pem" in p.stderr and "queue" in p.stderr, p.stderr
    samples, _ = parse_exposition(p.stdout)
    assert only(samples, "submitd_stats_complete") == 0
    assert "submitd_certificate_expiry_timestamp_seconds" in samples
    assert "submitd_queue_messages" not in samples


def test_stats_misuse(fresh_stack_factory):
    s = fresh_stack_factory("stats-misuse", start_daemon=False)
    for args, word in ((("--bogus",), "--bogus"), (("--json", "--prometheus"), "--prometheus")):
        p = s.env.admin("stats", *args, check=False)
        assert p.returncode == 2 and word in p.stderr.splitlines()[0], p
