-- Migration 2: the record of certificate authority operations (submit-ca).
--
-- One row for every submit-ca command that changed something: the CA created, a
-- certificate issued, renewed or revoked, a CRL published. Like the audit table it is
-- append-only for everyone who goes through SQLite.
CREATE TABLE ca_log (
    id        INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    uid       INTEGER NOT NULL,       -- real user id that ran submit-ca
    unix_user TEXT NOT NULL,          -- its name (or the number when it has none)
    sudo_user TEXT,                   -- SUDO_USER when run through sudo, as sudo set it
    command   TEXT NOT NULL,          -- init, server-cert, issue, renew, revoke, crl
    serial    TEXT,                   -- the certificate concerned, upper-case hex
    user      TEXT,                   -- the mail user concerned
    detail    TEXT                    -- the rest, as "key=value" words
);
CREATE INDEX ca_log_ts ON ca_log(ts);
CREATE INDEX ca_log_user ON ca_log(user);
CREATE INDEX ca_log_serial ON ca_log(serial);

CREATE TRIGGER ca_log_no_update BEFORE UPDATE ON ca_log
BEGIN
    SELECT RAISE(ABORT, 'ca_log is append-only');
END;
CREATE TRIGGER ca_log_no_delete BEFORE DELETE ON ca_log
BEGIN
    SELECT RAISE(ABORT, 'ca_log is append-only');
END;
