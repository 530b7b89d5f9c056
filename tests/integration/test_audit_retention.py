"""audit_retention (DESIGN §6): authz prunes the audit rows older than that many days
at start and then daily, and records each prune in admin_log as submitd-authz; 0, the
default, keeps everything."""

import datetime
import json
import sqlite3

from conftest import assert_served, poll

NOW = datetime.datetime.now(datetime.timezone.utc)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def sessions(env):
    return [r["session"] for r in env.query("SELECT session FROM audit WHERE session LIKE 'r%'"
                                            " ORDER BY id")]


def prunes(env):
    return [r for r in json.loads(env.admin("log", "--json").stdout)
            if r["command"] == "audit prune"]


def test_retention_prunes_old_rows_at_start_and_records_it(fresh_stack_factory):
    s = fresh_stack_factory("retention", start_daemon=False)
    env = s.env
    con = sqlite3.connect(env.db_path)
    con.executemany("INSERT INTO audit(ts, session, event, decision) VALUES (?,?,?,?)", [
        (iso(NOW - datetime.timedelta(days=3)), "r-3d", "identity", "accept"),
        (iso(NOW - datetime.timedelta(hours=25)), "r-25h", "identity", "reject"),
        (iso(NOW - datetime.timedelta(hours=23)), "r-23h", "identity", "accept"),
        (iso(NOW - datetime.timedelta(minutes=5)), "r-5m", "identity", "accept"),
    ])
    con.commit()
    con.close()
    everything = ["r-3d", "r-25h", "r-23h", "r-5m"]

    # The default keeps everything.
    s.daemon.start()
    s.env.admin("user", "list")
    assert sessions(env) == everything
    assert prunes(env) == []
    s.daemon.stop()

    env.settings["audit_retention"] = "1"
    env.write_config()
    started = datetime.datetime.now(datetime.timezone.utc)
    s.daemon.start()
    rows = poll(lambda: prunes(env), 10, 0.2)
    done = datetime.datetime.now(datetime.timezone.utc)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["program"] == "submitd-authz", row
    assert "rows=2" in row["details"], row
    cutoff = datetime.datetime.strptime(row["target"], "%Y-%m-%dT%H:%M:%S.000Z")
    cutoff = cutoff.replace(tzinfo=datetime.timezone.utc)
    # The cutoff is one day before the moment of the prune (NOW is when the module was
    # collected, minutes earlier in a full run).
    day = datetime.timedelta(days=1)
    assert started - day - datetime.timedelta(seconds=2) <= cutoff <= done - day, (started, row)
    assert sessions(env) == ["r-23h", "r-5m"]
    assert "audit_retention 1 days: 2 audit rows before" in s.daemon.tail()
    # Once a day, not on every turn of the loop. Each session's identity and sender
    # checks are answered in separate turns of authz's loop, and every turn ends with
    # the retention check: after these sessions, several turns have passed.
    for _ in range(3):
        assert_served(env, s.alice)
    assert len(prunes(env)) == 1

    # A restart prunes again, with nothing left to remove.
    s.daemon.stop()
    s.daemon.start()
    rows = poll(lambda: (lambda p: p if len(p) == 2 else None)(prunes(env)), 10, 0.2)
    assert rows and "rows=0" in rows[1]["details"], rows
    assert sessions(env) == ["r-23h", "r-5m"]
    # The append-only guarantee holds for everything else.
    con = sqlite3.connect(env.db_path)
    try:
        try:
            con.execute("DELETE FROM audit WHERE session = 'r-5m'")
        except sqlite3.DatabaseError as e:
            assert "append-only" in str(e)
        else:
            raise AssertionError("a plain DELETE on audit was allowed")
    finally:
        con.close()
