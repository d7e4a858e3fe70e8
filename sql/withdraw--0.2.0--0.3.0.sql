/* withdraw--0.2.0--0.3.0.sql: several workers (withdraw.workers); events recorded
   per statement; the history tables checked per statement instead of by foreign
   keys; partial event indexes; the state machine cached until it changes */

\echo Use "ALTER EXTENSION withdraw UPDATE TO '0.3.0'" to load this file. \quit

-- Which worker last claimed a row.  A worker that stops and starts again
-- while the others run recovers its own rows in 'sending', not theirs.
-- Rows claimed before this release have none, and any worker recovers them.
ALTER TABLE withdraw.withdrawal ADD COLUMN claimed_by smallint;
COMMENT ON COLUMN withdraw.withdrawal.claimed_by IS
	'The worker (0 .. withdraw.workers - 1) that last claimed this row for sending or polling';

-- withdraw.workers: one row per worker, numbered
DROP VIEW withdraw.workers;
DROP FUNCTION withdraw._worker_info();

CREATE FUNCTION withdraw._worker_info(
	OUT worker integer, OUT database text, OUT pid integer, OUT state text,
	OUT started_at timestamptz, OUT heartbeat_at timestamptz, OUT in_flight integer,
	OUT requests_sent bigint, OUT responses bigint, OUT last_error text,
	OUT last_error_at timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdraw_worker_info' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION withdraw._worker_info() IS
	'One row per worker from shared memory, for the view withdraw.workers';
REVOKE ALL ON FUNCTION withdraw._worker_info() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdraw._worker_info() TO withdraw_user, withdraw_admin;

CREATE VIEW withdraw.workers AS
SELECT * FROM withdraw._worker_info();
COMMENT ON VIEW withdraw.workers IS
	'The background workers, one row each: heartbeat, requests in flight, last error';
REVOKE ALL ON withdraw.workers FROM PUBLIC;
GRANT SELECT ON withdraw.workers TO withdraw_user, withdraw_admin;

-- The events of one UPDATE are recorded by one statement-level trigger from
-- its transition tables: as a row trigger, one INSERT per change of state
-- was a quarter of the workers' time.  It fires for every UPDATE (a trigger
-- with transition tables cannot name columns) and records only the rows
-- whose state changed.
DROP TRIGGER record_transition ON withdraw.withdrawal;
DROP FUNCTION withdraw.record_transition();
CREATE FUNCTION withdraw.record_transitions() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdraw_record_transitions' LANGUAGE C;
REVOKE ALL ON FUNCTION withdraw.record_transitions() FROM PUBLIC;
CREATE TRIGGER record_transitions AFTER UPDATE ON withdraw.withdrawal
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.record_transitions();
COMMENT ON FUNCTION withdraw.record_transitions() IS
	'Trigger: records each change of state of an UPDATE in withdraw.event and announces it on withdraw_status';
COMMENT ON TRIGGER record_transitions ON withdraw.withdrawal IS
	'Every change of state becomes an event and a notification, one INSERT per statement';

-- An event belongs to a withdrawal or to a remote record, never both: each
-- index of withdraw.event now holds only the rows that have its column, so
-- a withdrawal's event is no longer also indexed under a NULL remote id
-- (two index insertions fewer per withdrawal).  Lookups and the foreign
-- keys' cascades (column = value) use them as before.
DROP INDEX withdraw.event_withdrawal;
DROP INDEX withdraw.event_remote_withdrawal;
CREATE INDEX event_withdrawal ON withdraw.event (withdrawal_id) WHERE withdrawal_id IS NOT NULL;
CREATE INDEX event_remote_withdrawal ON withdraw.event (remote_withdrawal_id)
	WHERE remote_withdrawal_id IS NOT NULL;

-- The history tables name their withdrawal without a foreign key: a foreign
-- key runs one query per inserted row, three per withdrawal sent, and took
-- 12% of the dispatch rate.  One statement-level trigger per table and
-- statement checks all the new rows at once (check_withdrawal_ids), and
-- deleting withdrawals deletes their history as ON DELETE CASCADE did
-- (delete_history).  What the check does not do that a foreign key did: lock
-- the withdrawal against a concurrent DELETE.  The extension never deletes a
-- withdrawal, and only its owner can.
ALTER TABLE withdraw.attempt DROP CONSTRAINT attempt_withdrawal_id_fkey;
ALTER TABLE withdraw.event DROP CONSTRAINT event_withdrawal_id_fkey;
CREATE FUNCTION withdraw.check_withdrawal_ids() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdraw_check_withdrawal_ids' LANGUAGE C;
REVOKE ALL ON FUNCTION withdraw.check_withdrawal_ids() FROM PUBLIC;
COMMENT ON FUNCTION withdraw.check_withdrawal_ids() IS
	'Trigger: every withdrawal_id of a statement''s new rows names a withdrawal (in place of a foreign key)';
CREATE TRIGGER check_withdrawal_ids AFTER INSERT ON withdraw.attempt
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.check_withdrawal_ids();
CREATE TRIGGER check_withdrawal_ids_updated AFTER UPDATE ON withdraw.attempt
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.check_withdrawal_ids();
CREATE TRIGGER check_withdrawal_ids AFTER INSERT ON withdraw.event
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.check_withdrawal_ids();
CREATE TRIGGER check_withdrawal_ids_updated AFTER UPDATE ON withdraw.event
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.check_withdrawal_ids();
COMMENT ON TRIGGER check_withdrawal_ids ON withdraw.attempt IS 'Each new attempt names a withdrawal';
COMMENT ON TRIGGER check_withdrawal_ids_updated ON withdraw.attempt IS 'Each changed attempt names a withdrawal';
COMMENT ON TRIGGER check_withdrawal_ids ON withdraw.event IS 'Each new event names a withdrawal (or none)';
COMMENT ON TRIGGER check_withdrawal_ids_updated ON withdraw.event IS 'Each changed event names a withdrawal (or none)';

CREATE FUNCTION withdraw.delete_history() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	DELETE FROM withdraw.attempt a USING old_rows o WHERE a.withdrawal_id = o.id;
	DELETE FROM withdraw.event e USING old_rows o WHERE e.withdrawal_id = o.id;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION withdraw.delete_history() FROM PUBLIC;
COMMENT ON FUNCTION withdraw.delete_history() IS
	'Trigger: deleted withdrawals take their attempts and events with them (as ON DELETE CASCADE did)';
CREATE TRIGGER delete_history AFTER DELETE ON withdraw.withdrawal
	REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.delete_history();
COMMENT ON TRIGGER delete_history ON withdraw.withdrawal IS
	'Deleted withdrawals take their attempts and events with them';

-- The state machine is kept in memory by every backend until the table
-- changes: a change of withdraw.state_transition tells them all to read it
-- again (read once per transaction, it was 3% of the workers' time).
CREATE FUNCTION withdraw.state_machine_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdraw_state_machine_changed' LANGUAGE C;
REVOKE ALL ON FUNCTION withdraw.state_machine_changed() FROM PUBLIC;
COMMENT ON FUNCTION withdraw.state_machine_changed() IS
	'Trigger: every backend reads withdraw.state_transition again';
CREATE TRIGGER state_machine_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdraw.state_transition
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.state_machine_changed();
COMMENT ON TRIGGER state_machine_changed ON withdraw.state_transition IS
	'A change of the state machine reaches every backend';
