--
-- cancel: withdraw_cancel stops a withdrawal before anything was sent for it
--
-- A withdrawal is cancellable while it is queued.  To be sure the worker has
-- not claimed it yet, each one is created in the transaction that cancels it:
-- the worker never sees an uncommitted row.
--
-- CONTEXT lines of errors raised in PL/pgSQL are hidden.
\set SHOW_CONTEXT never
-- The ids printed below start at 3001 in this file whatever the files before did.
SELECT setval(pg_get_serial_sequence('withdraw.withdrawal', 'id'), 3000) AS ids_start_after;
\set ok '{"coin": "USDT", "addressType": 1, "address": "alice@example.com", "amount": "1.5"}'
-- case: a queued withdrawal is cancelled: true, state cancelled, finished
BEGIN;
SELECT withdraw_create('zoomex', :'ok') AS id;
SELECT state, finished_at IS NULL AS open FROM withdraw_status(3001);
SELECT withdraw_cancel(3001) AS cancelled;
SELECT state, finished_at IS NOT NULL AS finished, last_error = 'cancelled by ' || current_user AS last_error_names_canceller
FROM withdraw_status(3001);
-- case: the cancellation is an event, after the creation
SELECT from_state, to_state FROM withdraw.events WHERE withdrawal_id = 3001 ORDER BY at;
-- case: cancelling again is false: it is not queued any more
SELECT withdraw_cancel(3001) AS cancelled;
COMMIT;
-- case: after commit it stays cancelled
SELECT withdraw_cancel(3001) AS cancelled;
SELECT state FROM withdraw_status(3001);
-- case: too late once the worker has taken it (state sending): false, nothing changes
BEGIN;
SELECT withdraw_create('zoomex', :'ok') AS id;
UPDATE withdraw.withdrawal SET state = 'sending' WHERE id = 3002;
SELECT withdraw_cancel(3002) AS cancelled;
SELECT state FROM withdraw_status(3002);
ROLLBACK;
-- case: a withdrawal that does not exist: P0002 (no_data_found)
SELECT withdraw_cancel(999999);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: withdraw_cancel is STRICT
SELECT withdraw_cancel(NULL) IS NULL AS null_id;
-- case: cancelled is final: even a superuser's direct UPDATE cannot move it,
-- the state machine refuses with 23514 (check_violation)
UPDATE withdraw.withdrawal SET state = 'sending' WHERE id = 3001;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
UPDATE withdraw.withdrawal SET state = 'queued' WHERE id = 3001;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT state FROM withdraw_status(3001);
-- case: the state machine also refuses skipping a step: queued cannot become submitted
BEGIN;
SELECT withdraw_create('zoomex', :'ok') AS id;
UPDATE withdraw.withdrawal SET state = 'submitted' WHERE id = 3003;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
ROLLBACK;
-- case: a change of withdraw.state_transition applies from the next command
-- (each backend keeps the state machine in memory until the table changes):
-- without queued -> cancelled, the cancellation is refused
BEGIN;
SELECT withdraw_create('zoomex', :'ok') > 0 AS created;
SELECT state FROM withdraw.withdrawal WHERE id = (SELECT max(id) FROM withdraw.withdrawal);
DELETE FROM withdraw.state_transition WHERE from_state = 'queued' AND to_state = 'cancelled';
UPDATE withdraw.withdrawal SET state = 'cancelled' WHERE id = (SELECT max(id) FROM withdraw.withdrawal);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
ROLLBACK;
-- case: and the rollback brings it back, in the same session
BEGIN;
SELECT withdraw_create('zoomex', :'ok') > 0 AS created;
UPDATE withdraw.withdrawal SET state = 'cancelled' WHERE id = (SELECT max(id) FROM withdraw.withdrawal)
RETURNING state;
ROLLBACK;
SELECT count(*) AS transitions FROM withdraw.state_transition;
