-- Migration 5 for PostgreSQL: one record of every administrative change, and the one
-- way rows leave the audit trail (db/sqlite/migrations/0005_admin_log.sql, which says
-- why). The same tables, view, triggers and prune permit, in PostgreSQL's terms.
CREATE TABLE admin_log (
    id        BIGSERIAL PRIMARY KEY,
    ts        TEXT COLLATE "C" NOT NULL DEFAULT submitd_now_ms(),
    uid       BIGINT NOT NULL,
    login     TEXT COLLATE "C" NOT NULL,
    program   TEXT COLLATE "C" NOT NULL,
    command   TEXT COLLATE "C" NOT NULL,
    target    TEXT COLLATE "C",
    details   TEXT COLLATE "C",
    unix_user TEXT COLLATE "C" NOT NULL,
    sudo_user TEXT COLLATE "C",
    "user"    TEXT COLLATE "C",
    serial    TEXT COLLATE "C"
);
CREATE INDEX admin_log_ts ON admin_log(ts);
CREATE INDEX admin_log_user ON admin_log("user");
CREATE INDEX admin_log_serial ON admin_log(serial);

INSERT INTO admin_log (id, ts, uid, login, program, command, target, details, unix_user,
                       sudo_user, "user", serial)
SELECT id, ts, uid, coalesce(sudo_user, unix_user), 'submit-ca', command,
       coalesce(serial, "user"), detail, unix_user, sudo_user, "user", serial
FROM ca_log ORDER BY id;
SELECT setval(pg_get_serial_sequence('admin_log', 'id'),
              greatest((SELECT max(id) FROM admin_log), 1),
              (SELECT max(id) FROM admin_log) IS NOT NULL);

-- DROP TABLE removes the rows without running their DELETE triggers.
DROP TABLE ca_log;

CREATE VIEW ca_log AS
SELECT id, ts, uid, unix_user, sudo_user, command, serial, "user", details AS detail
FROM admin_log
WHERE command IN ('init', 'server-cert', 'issue', 'renew', 'revoke', 'crl');

CREATE TRIGGER admin_log_no_update BEFORE UPDATE ON admin_log
    FOR EACH ROW EXECUTE FUNCTION submitd_refuse('admin_log is append-only');
CREATE TRIGGER admin_log_no_delete BEFORE DELETE ON admin_log
    FOR EACH ROW EXECUTE FUNCTION submitd_refuse('admin_log is append-only');
CREATE TRIGGER admin_log_no_truncate BEFORE TRUNCATE ON admin_log
    FOR EACH STATEMENT EXECUTE FUNCTION submitd_refuse('admin_log is append-only');
CREATE TRIGGER ca_log_no_update INSTEAD OF UPDATE ON ca_log
    FOR EACH ROW EXECUTE FUNCTION submitd_refuse('ca_log is append-only');
CREATE TRIGGER ca_log_no_delete INSTEAD OF DELETE ON ca_log
    FOR EACH ROW EXECUTE FUNCTION submitd_refuse('ca_log is append-only');

-- The prune permit, as in SQLite: taken only for the newest admin_log row, which must
-- be an "audit prune" row; a row leaves the audit only while a permit names a prune
-- whose target (the time before which it removes rows) is after the row's time.
CREATE TABLE audit_prune_permit (
    log_id BIGINT PRIMARY KEY REFERENCES admin_log(id)
);
CREATE FUNCTION submitd_prune_permit_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.log_id IS DISTINCT FROM (SELECT max(id) FROM admin_log)
       OR (SELECT command FROM admin_log WHERE id = NEW.log_id) IS DISTINCT FROM 'audit prune'
    THEN
        RAISE EXCEPTION 'a prune permit names the admin_log row of its prune'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_prune_permit_insert BEFORE INSERT ON audit_prune_permit
    FOR EACH ROW EXECUTE FUNCTION submitd_prune_permit_check();
CREATE TRIGGER audit_prune_permit_no_update BEFORE UPDATE ON audit_prune_permit
    FOR EACH ROW EXECUTE FUNCTION submitd_refuse('a prune permit cannot be changed');

CREATE FUNCTION submitd_audit_delete_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_prune_permit p JOIN admin_log l ON l.id = p.log_id
                   WHERE l.command = 'audit prune' AND OLD.ts < l.target) THEN
        RAISE EXCEPTION 'audit is append-only (rows leave only by submit-admin audit prune)'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN OLD;
END $$;
DROP TRIGGER audit_no_delete ON audit;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION submitd_audit_delete_check();

CREATE INDEX audit_queue_id ON audit(queue_id);
CREATE INDEX audit_client_ip_ts ON audit(client_ip, ts);

ALTER TABLE subject_maps ADD COLUMN subject_text TEXT COLLATE "C";
ALTER TABLE subject_maps ADD COLUMN issuer_text TEXT COLLATE "C";
