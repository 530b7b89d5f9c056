-- Per-user usage by minute, for the hourly rate limits: summing at most sixty rows
-- per check instead of counting an hour of the audit table, which grows with the
-- traffic. Kept in the database so the limits survive restarts.
CREATE TABLE rate_usage (
    user       TEXT NOT NULL,
    minute     INTEGER NOT NULL,          -- Unix time / 60
    messages   INTEGER NOT NULL DEFAULT 0,
    recipients INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user, minute)
) WITHOUT ROWID;

-- Usage already in the audit trail of the last hour is carried over.
INSERT INTO rate_usage (user, minute, messages, recipients)
SELECT user, CAST(strftime('%s', substr(ts, 1, 19)) AS INTEGER) / 60, count(*),
       coalesce(sum(nrcpt), 0)
FROM audit
WHERE event = 'submission' AND decision = 'accept' AND user IS NOT NULL
  AND ts >= strftime('%Y-%m-%dT%H:%M:%S', 'now', '-1 hour')
GROUP BY 1, 2;
