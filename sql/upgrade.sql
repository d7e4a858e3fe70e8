--
-- upgrade: a database on 0.1.0 keeps its data through ALTER EXTENSION UPDATE
--
-- CREATE EXTENSION withdraw runs the full script of the current version
-- (withdraw--0.6.0.sql); catalog checks that it makes the same objects as
-- 0.1.0 updated step by step.  This file checks that the rows of a 0.1.0
-- database survive each update and work.
DROP EXTENSION withdraw CASCADE;
-- case: install the first release
CREATE EXTENSION withdraw VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'withdraw';
-- an account as 0.1.0 stored it: credentials in plaintext (this build's
-- withdraw_account_create seals them, which the 0.1.0 schema cannot hold)
INSERT INTO withdraw.account (name, provider, base_url) VALUES ('old', 'zoomex', 'http://127.0.0.1:9/zoomex');
INSERT INTO withdraw.account_secret (account_id, credentials)
SELECT id, '{"api_key": "k1", "api_secret": "s3cr3t-value"}' FROM withdraw.account WHERE name = 'old';
BEGIN;
SELECT withdraw_create('old', '{"requestId": "up1", "coin": "USDT", "addressType": 3, "address": "1", "amount": "5.25"}') > 0 AS created;
-- cancelled at once: the worker never sends it
SELECT withdraw_cancel(id) FROM withdraw.withdrawals WHERE idempotency_key = 'up1';
COMMIT;
-- case: update to 0.2.0
ALTER EXTENSION withdraw UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'withdraw';
-- case: the withdrawal is intact, with empty details and the new columns
SELECT idempotency_key, state, amount, details, txid, confirmations, fee, real_fee
FROM withdraw.withdrawals WHERE idempotency_key = 'up1';
SELECT to_state FROM withdraw.events e JOIN withdraw.withdrawals w ON w.id = e.withdrawal_id
WHERE w.idempotency_key = 'up1' ORDER BY e.at, e.to_state;
-- case: the plaintext credentials still work, and one call seals them
SELECT credentials IS NOT NULL AS plaintext, sealed IS NULL AS unsealed FROM withdraw.account_secret;
SELECT withdraw_rotate_secrets() AS sealed_accounts;
SELECT credentials IS NULL AS no_plaintext, length(sealed) > 40 AS sealed, length(key_id) AS key_id_chars,
       position('s3cr3t' in encode(sealed, 'escape')) = 0 AS secret_not_visible
FROM withdraw.account_secret;
SELECT withdraw._credentials(account_id, sealed, key_id) ->> 'api_key' AS opens FROM withdraw.account_secret;
-- case: the new functions, view and role are there and granted
SELECT has_function_privilege('withdraw_webhook', 'withdraw_callback(text, text, jsonb)', 'EXECUTE') AS webhook_callback,
       has_function_privilege('withdraw_webhook', 'withdraw_confirm(text, text)', 'EXECUTE') AS webhook_confirm,
       has_function_privilege('withdraw_user', 'withdraw_callback(text, text, jsonb)', 'EXECUTE') AS user_callback,
       has_table_privilege('withdraw_admin', 'withdraw.callbacks', 'SELECT') AS admin_callbacks,
       has_table_privilege('withdraw_user', 'withdraw.callbacks', 'SELECT') AS user_callbacks;
-- case: this library needs 0.3.0: at 0.2.0 its worker sends nothing and says
-- why (wait at most 60 s for its next claim), and withdraw.workers still reads
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN EXISTS (SELECT FROM withdraw.workers WHERE last_error LIKE 'not sending: extension withdraw is at version 0.2.0;%');
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
SELECT database, state, last_error FROM withdraw.workers;
-- case: update to 0.3.0: the claimer column, and withdraw.workers numbered
ALTER EXTENSION withdraw UPDATE TO '0.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'withdraw';
SELECT idempotency_key, state, amount, claimed_by FROM withdraw.withdrawal WHERE idempotency_key = 'up1';
SELECT worker, database, state FROM withdraw.workers;
SELECT has_table_privilege('withdraw_user', 'withdraw.workers', 'SELECT') AS user_workers,
       has_function_privilege('withdraw_user', 'withdraw._worker_info()', 'EXECUTE') AS user_worker_info,
       has_function_privilege('public', 'withdraw._worker_info()', 'EXECUTE') AS public_worker_info;
-- case: the events of 0.3.0 come from one statement-level trigger; a change
-- of state made after the update is recorded as before
SELECT tgname, tgtype & 1 = 1 AS per_row FROM pg_trigger
WHERE tgrelid = 'withdraw.withdrawal'::regclass AND NOT tgisinternal ORDER BY tgname;
SELECT indexrelid::regclass AS index, pg_get_expr(indpred, indrelid) AS predicate FROM pg_index
WHERE indrelid = 'withdraw.event'::regclass AND indpred IS NOT NULL ORDER BY 1;
BEGIN;
SELECT withdraw_create('old', '{"requestId": "up2", "coin": "USDT", "addressType": 3, "address": "1", "amount": "1.50"}') > 0 AS created;
SELECT withdraw_cancel(id) FROM withdraw.withdrawals WHERE idempotency_key = 'up2';
COMMIT;
SELECT e.from_state, e.to_state FROM withdraw.events e JOIN withdraw.withdrawals w ON w.id = e.withdrawal_id
WHERE w.idempotency_key = 'up2' ORDER BY e.at;
-- case: attempts and events must name a withdrawal: checked per statement in
-- place of the foreign keys of 0.2.0, with the same SQLSTATE
SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid IN ('withdraw.attempt'::regclass, 'withdraw.event'::regclass)
ORDER BY 1;
INSERT INTO withdraw.event (withdrawal_id, from_state, to_state) VALUES (999999, 'queued', 'cancelled');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
INSERT INTO withdraw.attempt (withdrawal_id, kind, started_at, method, url, outcome)
SELECT id, 'create', now(), 'POST', 'http://127.0.0.1:9/x', 'test' FROM withdraw.withdrawal WHERE idempotency_key = 'up2'
UNION ALL SELECT 999998, 'create', now(), 'POST', 'http://127.0.0.1:9/x', 'test';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
UPDATE withdraw.event SET withdrawal_id = 999997 WHERE withdrawal_id = (SELECT id FROM withdraw.withdrawal WHERE idempotency_key = 'up2');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: deleting a withdrawal deletes its attempts and events, as the cascade did
INSERT INTO withdraw.attempt (withdrawal_id, kind, started_at, method, url, outcome)
SELECT id, 'create', now(), 'POST', 'http://127.0.0.1:9/x', 'test' FROM withdraw.withdrawal WHERE idempotency_key = 'up2';
SELECT (SELECT count(*) FROM withdraw.attempt) AS attempts_before, (SELECT count(*) FROM withdraw.event) AS events_before;
DELETE FROM withdraw.withdrawal WHERE idempotency_key = 'up2';
SELECT (SELECT count(*) FROM withdraw.attempt) AS attempts_after, (SELECT count(*) FROM withdraw.event) AS events_after;
-- case: update to 0.4.0 (the second security round)
ALTER EXTENSION withdraw UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'withdraw';
-- case: at 0.4.0 the rows of 0.1.0 keep their creator, which now decides who
-- sees them (see ownership); the views are security barriers
SELECT idempotency_key, created_by = current_user AS created_by_kept FROM withdraw.withdrawals WHERE idempotency_key = 'up1';
SELECT count(*) AS security_barrier_views FROM pg_class
WHERE relnamespace = 'withdraw'::regnamespace AND relkind = 'v' AND reloptions @> '{security_barrier=true}';
-- case: update to 0.5.0 (operating with real money)
ALTER EXTENSION withdraw UPDATE TO '0.5.0';
SELECT extversion FROM pg_extension WHERE extname = 'withdraw';
-- case: 0.5.0 callback daemon: withdraw.callback keeps each callback's source
-- and HTTP status (the rows of before have none), withdraw_receive is the
-- webhook role's, pinned, and the view shows both columns
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'withdraw.callback'::regclass AND attname IN ('source', 'http_status') ORDER BY attnum;
SELECT count(*) FILTER (WHERE source IS NOT NULL OR http_status IS NOT NULL) AS old_rows_with_source FROM withdraw.callback;
SELECT has_function_privilege('withdraw_webhook', 'withdraw_receive(text, text, bytea, bytea, inet)', 'EXECUTE') AS webhook_receive,
       has_function_privilege('withdraw_user', 'withdraw_receive(text, text, bytea, bytea, inet)', 'EXECUTE') AS user_receive,
       (SELECT proconfig FROM pg_proc WHERE proname = 'withdraw_receive') AS receive_config;
SELECT attname FROM pg_attribute WHERE attrelid = 'withdraw.callbacks'::regclass AND attnum > 10 ORDER BY attnum;
-- case: 0.5.0 payout desk
-- the upgraded state machine knows awaiting_approval and held, events carry
-- who did what, the desk's roles exist; the cancelled withdrawal of 0.1.0
-- is not retried under its key (cancelled is not a failure) and its events
-- get feed positions like any other
SELECT count(*) AS transitions, count(*) FILTER (WHERE 'awaiting_approval' IN (from_state, to_state)) AS approval,
       count(*) FILTER (WHERE 'held' IN (from_state, to_state)) AS held
FROM withdraw.state_transition;
SELECT pg_get_constraintdef(oid) LIKE '%awaiting_approval%held%' AS state_check_knows_new_states
FROM pg_constraint WHERE conname = 'withdrawal_state_check';
SELECT string_agg(attname, ', ' ORDER BY attname) AS event_columns FROM pg_attribute
WHERE attrelid = 'withdraw.event'::regclass AND attname IN ('actor', 'actor_role', 'action', 'reason', 'evidence', 'feed_id');
SELECT rolname FROM pg_roles WHERE rolname IN ('withdraw_operator', 'withdraw_approver') ORDER BY 1;
\set VERBOSITY terse
SELECT withdraw_retry(id, 'upgrade check') FROM withdraw.withdrawals WHERE idempotency_key = 'up1';
\set VERBOSITY default
SELECT count(*) > 0 AS old_events_fed, bool_and(withdrawal_id IS NOT NULL OR remote_withdrawal_id IS NOT NULL) AS named
FROM withdraw_feed(0, 10000);
-- case: update to 0.6.0 (fewer writes per withdrawal): the finished
-- withdrawal of 0.1.0 gets its finished_state, the open one none; the table
-- leaves half of each page free; no index of withdraw.withdrawal names state
-- (in its columns, expressions or predicate), so that the take is a HOT
-- update; each open withdrawal is in exactly one due-work index and the
-- health views still count it
ALTER EXTENSION withdraw UPDATE TO '0.6.0';
SELECT extversion FROM pg_extension WHERE extname = 'withdraw';
SELECT idempotency_key, state, finished_state, finished_at IS NOT NULL AS finished
FROM withdraw.withdrawal ORDER BY id;
SELECT reloptions FROM pg_class WHERE oid = 'withdraw.withdrawal'::regclass;
SELECT count(*) AS indexes,
       count(*) FILTER (WHERE (SELECT attnum FROM pg_attribute WHERE attrelid = i.indrelid AND attname = 'state')
                              = ANY (i.indkey::int2[])
                           OR pg_get_expr(i.indpred, i.indrelid) ~ '\mstate\M'
                           OR pg_get_expr(i.indexprs, i.indrelid) ~ '\mstate\M') AS naming_state
FROM pg_index i WHERE i.indrelid = 'withdraw.withdrawal'::regclass;
BEGIN;	-- held before the workers can see it
SELECT withdraw_create('old', '{"requestId": "up3", "coin": "USDT", "addressType": 3, "address": "1", "amount": "2"}') > 0 AS created;
SELECT withdraw_hold(id, 'upgrade check') FROM withdraw.withdrawals WHERE idempotency_key = 'up3';
COMMIT;
SELECT idempotency_key, finished_at IS NULL AND next_poll_at IS NULL AS in_due_send,
       finished_at IS NULL AND next_poll_at IS NOT NULL AS in_due_poll
FROM withdraw.withdrawal ORDER BY id;
SELECT account, open, held, awaiting_approval FROM withdraw.health;
