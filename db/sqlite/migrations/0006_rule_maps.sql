-- Migration 6: certificates of an enterprise CA (issue 14, docs/enterprise-pki.md).
--
-- map_rules: one rule per issuing CA says which field of its certificates names the
-- user. One rule per issuer, not several: a certificate must never have two possible
-- users. issuer is the canonical form (dn.h) that authz compares; issuer_text the name
-- as the admin wrote it, for display.
CREATE TABLE map_rules (
    issuer         TEXT PRIMARY KEY NOT NULL CHECK (issuer <> ''),
    issuer_text    TEXT NOT NULL,
    field          TEXT NOT NULL CHECK (field IN ('email', 'san-email', 'upn', 'cn')),
    strip_domain   TEXT,                 -- NULL: not given
    require_domain TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- Certificates refused at once, before their CA's CRL says so: by fingerprint, or by
-- issuer (canonical) and serial (upper-case hex) when the fingerprint is not known.
CREATE TABLE cert_blocks (
    id          INTEGER PRIMARY KEY,
    sha256      TEXT UNIQUE CHECK (sha256 IS NULL OR length(sha256) = 64),
    issuer      TEXT,
    issuer_text TEXT,
    serial      TEXT,
    reason      TEXT,
    blocked_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    blocked_by  TEXT NOT NULL,           -- the login that blocked it
    CHECK (sha256 IS NOT NULL OR (issuer IS NOT NULL AND serial IS NOT NULL)),
    UNIQUE (issuer, serial)
);

-- The certificates each user was last seen with, for `submit-admin user show`.
-- authz writes a row at most once an hour per certificate, so that a busy device
-- does not cost a write per session.
CREATE TABLE devices (
    sha256     TEXT PRIMARY KEY NOT NULL,
    user       TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    issuer     TEXT NOT NULL DEFAULT '',  -- RFC 2253, for display
    serial     TEXT NOT NULL DEFAULT '',
    not_after  TEXT,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);
CREATE INDEX devices_user ON devices(user);
