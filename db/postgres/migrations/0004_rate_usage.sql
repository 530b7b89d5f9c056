-- Migration 4 for PostgreSQL: per-user usage by minute for the hourly rate limits
-- (db/sqlite/migrations/0004_rate_usage.sql). Several nodes count into the same rows
-- with INSERT ... ON CONFLICT DO UPDATE, which PostgreSQL makes atomic per row.
CREATE TABLE rate_usage (
    "user"     TEXT COLLATE "C" NOT NULL,
    minute     BIGINT NOT NULL,
    messages   BIGINT NOT NULL DEFAULT 0,
    recipients BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY ("user", minute)
);

-- Usage already in the audit trail of the last hour is carried over.
INSERT INTO rate_usage ("user", minute, messages, recipients)
SELECT "user",
       floor(extract(epoch FROM (substr(ts, 1, 19) || 'Z')::timestamptz) / 60)::bigint,
       count(*), coalesce(sum(nrcpt), 0)
FROM audit
WHERE event = 'submission' AND decision = 'accept' AND "user" IS NOT NULL
  AND ts >= to_char((clock_timestamp() - interval '1 hour') AT TIME ZONE 'UTC',
                    'YYYY-MM-DD"T"HH24:MI:SS')
GROUP BY 1, 2;
