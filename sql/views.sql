--
-- views: what a DBA reads, and the notifications of state changes
--
-- CONTEXT lines of errors raised in PL/pgSQL are hidden.
\set SHOW_CONTEXT never
-- The ids printed below start at 4001 in this file whatever the files before did.
SELECT setval(pg_get_serial_sequence('withdraw.withdrawal', 'id'), 4000) AS ids_start_after;
\set ok '{"coin": "USDT", "addressType": 1, "address": "alice@example.com", "amount": "1.5"}'
--
-- withdraw.withdrawals, withdraw.events, withdraw.attempts, withdraw.stats
--
-- Everything is created in one transaction on a new account, so the worker
-- sees none of it and the states are exactly those set here.
BEGIN;
SELECT withdraw_account_create('zoomex_views', 'zoomex', 'http://127.0.0.1:9/zoomex',
                               '{"api_key": "k3", "api_secret": "views-secret"}');
SELECT withdraw_create('zoomex_views', :'ok'::jsonb || '{"requestId": "view1"}') AS id1,
       withdraw_create('zoomex_views', '{"requestId": "view2", "coin": "BTC", "addressType": 2, "areaCode": 44, "address": "7700900123", "amount": "0.25", "remark": "rent"}') AS id2,
       withdraw_create('zoomex_views', :'ok'::jsonb || '{"requestId": "view3", "amount": "7"}') AS id3;
SELECT withdraw_cancel(4003) AS cancelled;
-- case: withdraw.withdrawals: one row per withdrawal
\x on
SELECT id, account, provider, idempotency_key, state, provider_status, provider_id,
       asset, amount, destination, request, attempts,
       replace(last_error, current_user, 'CURRENT_USER') AS last_error,
       created_by = current_user AS created_by_me,
       first_sent_at, submitted_at, finished_at IS NOT NULL AS finished,
       next_attempt_at IS NOT NULL AS due, next_poll_at
FROM withdraw.withdrawals WHERE account = 'zoomex_views' ORDER BY id;
\x off
-- case: withdraw.events: the creation of each withdrawal, then each change of state
SELECT withdrawal_id, from_state, to_state, provider_status, replace(detail, current_user, 'CURRENT_USER') AS detail
FROM withdraw.events WHERE withdrawal_id BETWEEN 4001 AND 4003
ORDER BY withdrawal_id, at;
-- case: withdraw.attempts: nothing was sent yet
SELECT count(*) AS attempts FROM withdraw.attempts WHERE account = 'zoomex_views';
-- case: withdraw.stats: counts by account; no rate or latency before any result
\x on
SELECT * FROM withdraw.stats WHERE account = 'zoomex_views';
\x off
ROLLBACK;
-- case: withdraw.stats lists an account without withdrawals with zero counts
BEGIN;
SELECT withdraw_account_create('zoomex_empty', 'zoomex', 'https://api.example.com',
                               '{"api_key": "k4", "api_secret": "empty-secret"}');
SELECT account, withdrawals, queued, open, succeeded, failed, cancelled, needs_attention, success_rate_pct
FROM withdraw.stats WHERE account = 'zoomex_empty';
ROLLBACK;
--
-- withdraw.state_transition: the state machine
--
-- case: the allowed changes of state; any other is refused (see cancel)
SELECT from_state, string_agg(to_state, ', ' ORDER BY to_state) AS to_states
FROM withdraw.state_transition GROUP BY from_state ORDER BY from_state;
--
-- withdraw.workers
--
-- The worker retries every 5 s until this database exists; wait (at most 60 s)
-- for it to show as running.
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN EXISTS (SELECT FROM withdraw.workers WHERE state = 'running');
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
-- case: one worker, running in this database, alive
SELECT count(*) AS workers FROM withdraw.workers;
SELECT w.database, w.state,
       w.pid = (SELECT a.pid FROM pg_stat_activity a WHERE a.backend_type = 'withdraw worker') AS pid_is_the_worker,
       w.heartbeat_at > now() - interval '1 minute' AS recent_heartbeat,
       w.in_flight >= 0 AS in_flight_known
FROM withdraw.workers w;
--
-- withdraw.attempts, from the worker
--
-- The worker has tried to send the withdrawals the earlier files committed
-- (it is running, and nothing listens at the account's URL); wait (at most
-- 60 s) for the first attempt of withdrawal 1001 (see idempotency).
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN EXISTS (SELECT FROM withdraw.attempts WHERE withdrawal_id = 1001);
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
-- case: an exchange is kept with its request, the key and signature redacted;
-- a refused connection is "not delivered" (the request's timestamp is masked)
\x on
SELECT withdrawal_id, account, provider, kind, method, url,
       regexp_replace(request_body, '"timestamp":[0-9]+', '"timestamp":(ms)') AS request_body,
       http_status, response_body, error IS NOT NULL AS has_error, outcome
FROM withdraw.attempts WHERE withdrawal_id = 1001 ORDER BY id LIMIT 1;
\x off
-- case: no attempt shows the account's api_key or api_secret
SELECT count(*) AS attempts_showing_a_credential
FROM withdraw.attempts t
WHERE t::text LIKE '%s3cr3t-value%' OR t::text LIKE '%"k1"%' OR t::text LIKE '%=k1&%';
--
-- NOTIFY withdraw_status
--
-- The withdrawals the earlier files committed are retried by the worker
-- (nothing listens at their URL), and every retry is a state change that is
-- announced.  Cancel them all first, so that the only notification below is
-- this file's own.
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		PERFORM withdraw_cancel(id) FROM withdraw.withdrawal WHERE state = 'queued';
		EXIT WHEN NOT EXISTS (SELECT FROM withdraw.withdrawal
							  WHERE state NOT IN ('succeeded', 'failed', 'rejected', 'cancelled', 'expired'));
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
SELECT count(*) AS open_withdrawals FROM withdraw.withdrawal
WHERE state NOT IN ('succeeded', 'failed', 'rejected', 'cancelled', 'expired');
-- case: a change of state is announced on channel withdraw_status when its
-- transaction commits, not before.  psql prints a notification with the pid
-- of the backend that sent it: it is written to a file and read back without
-- that part.
\getenv abs_builddir PG_ABS_BUILDDIR
\set notifications :abs_builddir '/results/views_notifications.txt'
LISTEN withdraw_status;
BEGIN;
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "notified"}') AS id;
SELECT withdraw_cancel(4004) AS cancelled;
\o :notifications
COMMIT;
\o
UNLISTEN withdraw_status;
SELECT regexp_replace(pg_read_file(:'notifications'),
                      ' received from server process with PID [0-9]+\.\n$', '') AS notification;
