-- Migration 2 for PostgreSQL: the record of certificate authority operations
-- (db/sqlite/migrations/0002_ca_log.sql), append-only like the audit table.
CREATE TABLE ca_log (
    id        BIGSERIAL PRIMARY KEY,
    ts        TEXT COLLATE "C" NOT NULL DEFAULT submitd_now_ms(),
    uid       BIGINT NOT NULL,
    unix_user TEXT COLLATE "C" NOT NULL,
    sudo_user TEXT COLLATE "C",
    command   TEXT COLLATE "C" NOT NULL,
    serial    TEXT COLLATE "C",
    "user"    TEXT COLLATE "C",
    detail    TEXT COLLATE "C"
);
CREATE INDEX ca_log_ts ON ca_log(ts);
CREATE INDEX ca_log_user ON ca_log("user");
CREATE INDEX ca_log_serial ON ca_log(serial);

CREATE TRIGGER ca_log_no_update BEFORE UPDATE ON ca_log
    FOR EACH ROW EXECUTE FUNCTION submitd_refuse('ca_log is append-only');
CREATE TRIGGER ca_log_no_delete BEFORE DELETE ON ca_log
    FOR EACH ROW EXECUTE FUNCTION submitd_refuse('ca_log is append-only');
CREATE TRIGGER ca_log_no_truncate BEFORE TRUNCATE ON ca_log
    FOR EACH STATEMENT EXECUTE FUNCTION submitd_refuse('ca_log is append-only');
