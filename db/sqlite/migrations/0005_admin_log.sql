-- Migration 5: one record of every administrative change, and the one way rows leave
-- the audit trail.
--
-- admin_log holds every change made by submit-admin and submit-ca (DESIGN §7). The CA
-- operations used to have a table of their own, ca_log; its rows move here and ca_log
-- becomes a view over the CA operations. One table rather than two mirrored ones: one
-- append-only guarantee, one order of events, and no second copy that a failed write
-- could let drift from the first. The view keeps `submit-ca log`, and every query
-- admins wrote against ca_log, working with the columns they had.
CREATE TABLE admin_log (
    id        INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    uid       INTEGER NOT NULL,       -- real user id that ran the program
    login     TEXT NOT NULL,          -- SUDO_USER when set, else the name of uid
    program   TEXT NOT NULL,          -- submit-admin, submit-ca
    command   TEXT NOT NULL,          -- "user add", "sender del", "issue", "revoke", ...
    target    TEXT,                   -- what was changed: a user, "user address", a serial
    details   TEXT,                   -- the rest, as "key=value" words
    unix_user TEXT NOT NULL,          -- the name of uid (or the number when it has none)
    sudo_user TEXT,                   -- SUDO_USER as sudo set it
    user      TEXT,                   -- the mail user concerned, for --user
    serial    TEXT                    -- the certificate concerned, upper-case hex
);
CREATE INDEX admin_log_ts ON admin_log(ts);
CREATE INDEX admin_log_user ON admin_log(user);
CREATE INDEX admin_log_serial ON admin_log(serial);

INSERT INTO admin_log (id, ts, uid, login, program, command, target, details, unix_user,
                       sudo_user, user, serial)
SELECT id, ts, uid, coalesce(sudo_user, unix_user), 'submit-ca', command,
       coalesce(serial, user), detail, unix_user, sudo_user, user, serial
FROM ca_log ORDER BY id;

-- DROP TABLE empties the table without running its DELETE triggers.
DROP TABLE ca_log;

-- The CA operations, whichever program made them: `submit-admin user del` revokes the
-- user's certificates and records each revocation here too.
CREATE VIEW ca_log AS
SELECT id, ts, uid, unix_user, sudo_user, command, serial, user, details AS detail
FROM admin_log
WHERE command IN ('init', 'server-cert', 'issue', 'renew', 'revoke', 'crl');

CREATE TRIGGER admin_log_no_update BEFORE UPDATE ON admin_log
BEGIN
    SELECT RAISE(ABORT, 'admin_log is append-only');
END;
CREATE TRIGGER admin_log_no_delete BEFORE DELETE ON admin_log
BEGIN
    SELECT RAISE(ABORT, 'admin_log is append-only');
END;
CREATE TRIGGER ca_log_no_update INSTEAD OF UPDATE ON ca_log
BEGIN
    SELECT RAISE(ABORT, 'ca_log is append-only');
END;
CREATE TRIGGER ca_log_no_delete INSTEAD OF DELETE ON ca_log
BEGIN
    SELECT RAISE(ABORT, 'ca_log is append-only');
END;

-- Pruning the audit trail (submit-admin audit prune). A row may leave the audit table
-- only while a permit names the admin_log row of the prune that removes it, and only
-- when it is older than the time that row records as its target. A permit can only be
-- taken for the newest admin_log row, and only for an "audit prune" row. So no row
-- leaves the audit without a record, which cannot itself be removed, of who removed
-- it and which range; the prune takes the permit and gives it back in one
-- transaction, and every other UPDATE or DELETE is refused as before.
CREATE TABLE audit_prune_permit (
    log_id INTEGER PRIMARY KEY REFERENCES admin_log(id)
);
CREATE TRIGGER audit_prune_permit_insert BEFORE INSERT ON audit_prune_permit
WHEN NEW.log_id IS NOT (SELECT max(id) FROM admin_log)
  OR (SELECT command FROM admin_log WHERE id = NEW.log_id) IS NOT 'audit prune'
BEGIN
    SELECT RAISE(ABORT, 'a prune permit names the admin_log row of its prune');
END;
CREATE TRIGGER audit_prune_permit_no_update BEFORE UPDATE ON audit_prune_permit
BEGIN
    SELECT RAISE(ABORT, 'a prune permit cannot be changed');
END;

DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN NOT EXISTS (SELECT 1 FROM audit_prune_permit p JOIN admin_log l ON l.id = p.log_id
                 WHERE l.command = 'audit prune' AND OLD.ts < l.target)
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only (rows leave only by submit-admin audit prune)');
END;

-- The questions of an incident: what happened to this message, what did this address do.
CREATE INDEX audit_queue_id ON audit(queue_id);
CREATE INDEX audit_client_ip_ts ON audit(client_ip, ts);

-- Subject maps keep the names as the admin wrote them, for display (map list); the
-- canonical columns stay what lookups compare.
ALTER TABLE subject_maps ADD COLUMN subject_text TEXT;
ALTER TABLE subject_maps ADD COLUMN issuer_text TEXT;
