-- Migration 3 for PostgreSQL: recipients per accepted submission
-- (db/sqlite/migrations/0003_audit_nrcpt.sql).
ALTER TABLE audit ADD COLUMN nrcpt BIGINT;
