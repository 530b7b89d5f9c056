-- Migration 1: the initial schema (DESIGN §7).
--
-- Applied by db.c inside one transaction, which then sets PRAGMA user_version = 1;
-- a migration never sets user_version itself. Timestamps are ISO-8601 UTC text, so
-- they sort and compare as strings.

-- A user is the identity a certificate maps to. Names are what admins type and what
-- submit-ca uses in file names: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'.
CREATE TABLE users (
    name       TEXT PRIMARY KEY NOT NULL
               CHECK (length(name) BETWEEN 1 AND 64
                      AND name NOT GLOB '*[^A-Za-z0-9._-]*'
                      AND name NOT GLOB '[.-]*'),
    enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- Sender addresses a user may use: "local@domain" or "@domain" (the whole domain).
-- Stored lower-case so that ownership checks are a plain index lookup.
CREATE TABLE senders (
    user    TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    address TEXT NOT NULL
            CHECK (address = lower(address) AND instr(address, '@') > 0),
    UNIQUE (user, address)
);
-- UNIQUE (user, address) above is the index for ownership checks; this one answers
-- "who owns this address".
CREATE INDEX senders_address ON senders(address);

-- Certificates issued by submit-ca. A certificate outlives its user: deleting a user
-- revokes its certificates (db.c) and leaves the rows with user NULL, so the CRL
-- still lists them and a later user of the same name inherits nothing.
CREATE TABLE certs (
    serial        TEXT PRIMARY KEY NOT NULL,     -- upper-case hex
    user          TEXT REFERENCES users(name) ON DELETE SET NULL,
    sha256        TEXT NOT NULL UNIQUE,          -- lower-case hex of the DER form
    subject       TEXT NOT NULL DEFAULT '',      -- RFC 2253
    issuer        TEXT NOT NULL DEFAULT '',
    not_before    TEXT NOT NULL,
    not_after     TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
    revoked_at    TEXT,
    revoke_reason TEXT,
    CHECK ((status = 'valid') = (revoked_at IS NULL))
);
-- certs.sha256 is indexed by its UNIQUE constraint.
CREATE INDEX certs_user ON certs(user);
CREATE INDEX certs_not_after ON certs(not_after);

-- Certificates from another CA, mapped by subject (and issuer) in canonical RFC 4514
-- form. An empty issuer matches any of the configured client CAs.
CREATE TABLE subject_maps (
    subject TEXT NOT NULL,
    issuer  TEXT NOT NULL DEFAULT '',
    user    TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    UNIQUE (subject, issuer)
);
CREATE INDEX subject_maps_user ON subject_maps(user);

-- Every decision and relay outcome, one row each. Columns hold what was known at the
-- time; they are text, not references, so that rows survive the deletion of users
-- and certificates.
CREATE TABLE audit (
    id           INTEGER PRIMARY KEY,
    ts           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    session      TEXT,
    event        TEXT,
    decision     TEXT CHECK (decision IS NULL OR decision IN ('accept', 'reject', 'tempfail')),
    reason       TEXT,
    client_ip    TEXT,
    user         TEXT,
    cert_sha256  TEXT,
    cert_subject TEXT,
    mail_from    TEXT,
    rcpt         TEXT,
    queue_id     TEXT,
    size         INTEGER,
    tls          TEXT
);
CREATE INDEX audit_ts ON audit(ts);
CREATE INDEX audit_user_ts ON audit(user, ts);
CREATE INDEX audit_decision_ts ON audit(decision, ts);

-- The audit trail is append-only for everyone who goes through SQLite, admins with
-- the sqlite3 shell included.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
