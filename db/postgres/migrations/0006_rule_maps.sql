-- Migration 6 for PostgreSQL: certificates of an enterprise CA (issue 14,
-- db/sqlite/migrations/0006_rule_maps.sql, which says why): the rule maps of issuing
-- CAs, blocked certificates, and the devices each user was seen with.
CREATE TABLE map_rules (
    issuer         TEXT COLLATE "C" PRIMARY KEY NOT NULL CHECK (issuer <> ''),
    issuer_text    TEXT COLLATE "C" NOT NULL,
    field          TEXT COLLATE "C" NOT NULL CHECK (field IN ('email', 'san-email', 'upn', 'cn')),
    strip_domain   TEXT COLLATE "C",
    require_domain TEXT COLLATE "C",
    created_at     TEXT COLLATE "C" NOT NULL DEFAULT submitd_now_s()
);

CREATE TABLE cert_blocks (
    id          BIGSERIAL PRIMARY KEY,
    sha256      TEXT COLLATE "C" UNIQUE CHECK (sha256 IS NULL OR length(sha256) = 64),
    issuer      TEXT COLLATE "C",
    issuer_text TEXT COLLATE "C",
    serial      TEXT COLLATE "C",
    reason      TEXT COLLATE "C",
    blocked_at  TEXT COLLATE "C" NOT NULL DEFAULT submitd_now_s(),
    blocked_by  TEXT COLLATE "C" NOT NULL,
    CHECK (sha256 IS NOT NULL OR (issuer IS NOT NULL AND serial IS NOT NULL)),
    UNIQUE (issuer, serial)
);

CREATE TABLE devices (
    sha256     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    "user"     TEXT COLLATE "C" NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    issuer     TEXT COLLATE "C" NOT NULL DEFAULT '',
    serial     TEXT COLLATE "C" NOT NULL DEFAULT '',
    not_after  TEXT COLLATE "C",
    first_seen TEXT COLLATE "C" NOT NULL,
    last_seen  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX devices_user ON devices("user");
