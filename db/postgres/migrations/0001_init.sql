-- Migration 1 for PostgreSQL: the initial schema (DESIGN §7), as db/sqlite/migrations/
-- 0001_init.sql. The numbers of the two lists are the same schema versions.
--
-- Applied by db_pg_open.c inside one transaction, which then records the version in
-- schema_version; a migration never sets the version itself. Times are the same
-- ISO-8601 UTC text as in SQLite, compared byte by byte (COLLATE "C"), so that both
-- backends sort and filter them alike. "user" is a reserved word in PostgreSQL and is
-- quoted wherever it names a column.

-- Rows stamped by the database: the time of the statement, with milliseconds.
CREATE FUNCTION submitd_now_ms() RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;
CREATE FUNCTION submitd_now_s() RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$;

-- The append-only guarantee: a trigger that refuses the change it fires for, with
-- the message given as its argument.
CREATE FUNCTION submitd_refuse() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation'; END $$;

CREATE TABLE users (
    name       TEXT COLLATE "C" PRIMARY KEY NOT NULL
               CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$' AND name !~ '^[.-]'),
    enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at TEXT COLLATE "C" NOT NULL DEFAULT submitd_now_s()
);

CREATE TABLE senders (
    "user"  TEXT COLLATE "C" NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    address TEXT COLLATE "C" NOT NULL
            CHECK (address = lower(address) AND position('@' in address) > 0),
    UNIQUE ("user", address)
);
CREATE INDEX senders_address ON senders(address);

CREATE TABLE certs (
    serial        TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    "user"        TEXT COLLATE "C" REFERENCES users(name) ON DELETE SET NULL,
    sha256        TEXT COLLATE "C" NOT NULL UNIQUE,
    subject       TEXT COLLATE "C" NOT NULL DEFAULT '',
    issuer        TEXT COLLATE "C" NOT NULL DEFAULT '',
    not_before    TEXT COLLATE "C" NOT NULL,
    not_after     TEXT COLLATE "C" NOT NULL,
    status        TEXT COLLATE "C" NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
    revoked_at    TEXT COLLATE "C",
    revoke_reason TEXT COLLATE "C",
    CHECK ((status = 'valid') = (revoked_at IS NULL))
);
CREATE INDEX certs_user ON certs("user");
CREATE INDEX certs_not_after ON certs(not_after);

CREATE TABLE subject_maps (
    subject TEXT COLLATE "C" NOT NULL,
    issuer  TEXT COLLATE "C" NOT NULL DEFAULT '',
    "user"  TEXT COLLATE "C" NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    UNIQUE (subject, issuer)
);
CREATE INDEX subject_maps_user ON subject_maps("user");

CREATE TABLE audit (
    id           BIGSERIAL PRIMARY KEY,
    ts           TEXT COLLATE "C" NOT NULL DEFAULT submitd_now_ms(),
    session      TEXT COLLATE "C",
    event        TEXT COLLATE "C",
    decision     TEXT COLLATE "C"
                 CHECK (decision IS NULL OR decision IN ('accept', 'reject', 'tempfail')),
    reason       TEXT COLLATE "C",
    client_ip    TEXT COLLATE "C",
    "user"       TEXT COLLATE "C",
    cert_sha256  TEXT COLLATE "C",
    cert_subject TEXT COLLATE "C",
    mail_from    TEXT COLLATE "C",
    rcpt         TEXT COLLATE "C",
    queue_id     TEXT COLLATE "C",
    size         BIGINT,
    tls          TEXT COLLATE "C"
);
CREATE INDEX audit_ts ON audit(ts);
CREATE INDEX audit_user_ts ON audit("user", ts);
CREATE INDEX audit_decision_ts ON audit(decision, ts);

-- Append-only for every role that is not the table's owner or a superuser acting
-- through ALTER TABLE ... DISABLE TRIGGER: row triggers for UPDATE and DELETE, and a
-- statement trigger for TRUNCATE, which row triggers do not see.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION submitd_refuse('audit is append-only');
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION submitd_refuse('audit is append-only');
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION submitd_refuse('audit is append-only');
