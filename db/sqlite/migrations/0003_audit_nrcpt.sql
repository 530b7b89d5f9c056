-- Recipients per accepted submission, for the per-user recipient rate limit
-- (rate_recipients_per_hour): the rcpt column lists addresses for people and may
-- be shortened; this is the exact count.
ALTER TABLE audit ADD COLUMN nrcpt INTEGER;
