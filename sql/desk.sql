--
-- desk: what the people who run payouts do (issue 17) — operator actions,
-- approval (four eyes), the destination allowlist, the change feed, the
-- health views, and the refusal to install in a database the workers do
-- not serve.  Every action, every refusal (with its SQLSTATE) and every
-- new privilege.
--
-- Most of it runs in one transaction that is rolled back: the worker never
-- sees these withdrawals.  Approvers are told apart by role (SET ROLE).
--
\set SHOW_CONTEXT never
\set VERBOSITY default
\set ON_ERROR_ROLLBACK on
-- the worker serves this database: wait until it runs (at most 20 s), for withdraw.health
DO $$
BEGIN
	FOR i IN 1 .. 200 LOOP
		EXIT WHEN EXISTS (SELECT FROM withdraw.workers WHERE state = 'running');
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
BEGIN;
SELECT setval(pg_get_serial_sequence('withdraw.withdrawal', 'id'), 8000) AS ids_start_after;
CREATE ROLE desk_app NOLOGIN IN ROLE withdraw_user;
CREATE ROLE desk_op NOLOGIN IN ROLE withdraw_operator;
CREATE ROLE desk_ap1 NOLOGIN IN ROLE withdraw_approver;
CREATE ROLE desk_ap2 NOLOGIN IN ROLE withdraw_approver;
CREATE ROLE desk_admin NOLOGIN IN ROLE withdraw_admin;
CREATE ROLE desk_nobody NOLOGIN;
-- the new roles exist and cannot log in
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('withdraw_operator', 'withdraw_approver') ORDER BY 1;

-- case: the desk's account options are checked (each refused, nothing changed)
SELECT withdraw_account_create('desk_bad', 'zoomex', 'http://127.0.0.1:9/zoomex',
  '{"api_key": "k", "api_secret": "s"}', '{"approval": {"USDT": {"above": 100}}}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('desk_bad', 'zoomex', 'http://127.0.0.1:9/zoomex',
  '{"api_key": "k", "api_secret": "s"}', '{"approval": {"USDT": {"above": "100", "quorum": 9}}}');
SELECT withdraw_account_create('desk_bad', 'zoomex', 'http://127.0.0.1:9/zoomex',
  '{"api_key": "k", "api_secret": "s"}', '{"approval": {"USDT": {"above": "100", "voters": 2}}}');
SELECT withdraw_account_create('desk_bad', 'zoomex', 'http://127.0.0.1:9/zoomex',
  '{"api_key": "k", "api_secret": "s"}', '{"approval": ["USDT"]}');
SELECT withdraw_account_create('desk_bad', 'zoomex', 'http://127.0.0.1:9/zoomex',
  '{"api_key": "k", "api_secret": "s"}', '{"allowlist": {"enforce": "yes"}}');
SELECT withdraw_account_create('desk_bad', 'zoomex', 'http://127.0.0.1:9/zoomex',
  '{"api_key": "k", "api_secret": "s"}', '{"stuck_after_ms": 10}');
SELECT withdraw_account_create('desk_bad', 'zoomex', 'http://127.0.0.1:9/zoomex',
  '{"api_key": "k", "api_secret": "s"}', '{"approval": {"USDT": {"above": "100", "expires_ms": 1e30}}}');
SELECT count(*) AS bad_accounts FROM withdraw.account WHERE name = 'desk_bad';

-- the account of this file: USDT above 100 needs two approvers; daily limit 1000
SELECT withdraw_account_create('desk_zx', 'zoomex', 'http://127.0.0.1:9/zoomex',
  '{"api_key": "k", "api_secret": "s"}',
  '{"approval": {"USDT": {"above": "100", "quorum": 2, "expires_ms": 3600000}},
    "limits": {"USDT": {"daily": "1000"}}, "stuck_after_ms": 60000}');
\set small '{"coin": "USDT", "addressType": 3, "address": "100001", "amount": "50"}'
\set big '{"coin": "USDT", "addressType": 3, "address": "100002", "amount": "300"}'

--
-- approval (four eyes)
--
SET ROLE desk_app;
-- case: at or below the threshold a withdrawal is queued (8001); above it, it awaits approval (8002)
SELECT withdraw_create('desk_zx', :'small') AS id;
SELECT withdraw_create('desk_zx', :'big') AS id;
SELECT id, state, last_error FROM withdraw.withdrawals WHERE id IN (8001, 8002) ORDER BY id;
-- case: the wait is an event naming the creating role, and its own approval request
SELECT from_state, to_state, action, actor_role, actor = session_user AS actor_is_session
FROM withdraw.events WHERE withdrawal_id = 8002 AND from_state IS NOT NULL;
-- case: the application cannot approve (no privilege: 42501)
SELECT withdraw_approve(8002, 'mine');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT withdrawal_id, threshold, quorum, requested_by, expires_at > now() + interval '59 minutes' AS expires_in_an_hour
FROM withdraw.approval_request WHERE withdrawal_id = 8002;
-- case: a withdrawal awaiting approval is not claimed: the claim names queued and unknown only
SELECT position('''queued'', ''unknown''' IN withdraw._claim_query('create')) > 0 AS claims_queued_and_unknown,
       position('paused_at IS NULL' IN withdraw._claim_query('create')) > 0 AS claims_skip_paused;
-- case: the daily limit counted it at creation: 300 + 50 + 700 > 1000
SET ROLE desk_app;
SELECT withdraw_create('desk_zx', '{"coin": "USDT", "addressType": 3, "address": "100003", "amount": "700"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: approved by the role that created it: 42501 — grant desk_app approver for the test
RESET ROLE;
GRANT withdraw_approver TO desk_app;
SET ROLE desk_app;
SELECT withdraw_approve(8002, 'looks fine');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE withdraw_approver FROM desk_app;
SET ROLE desk_ap1;
-- case: bad arguments: no reason, a blank one, evidence not an object, no id, an unknown id (nothing changes)
SELECT withdraw_approve(8002, NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_approve(8002, '   ');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_approve(8002, 'ok', '[1, 2]');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_approve(NULL, 'ok');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_approve(999999, 'ok');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: a withdrawal that awaits no approval: 55000 naming its state
SELECT withdraw_approve(8001, 'ok');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: the first of two approvals: it still waits
SELECT withdraw_approve(8002, 'checked the beneficiary', '{"ticket": "OPS-1"}') AS state;
-- case: a second approval by the same role: 23505
SELECT withdraw_approve(8002, 'again');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET ROLE desk_ap2;
-- case: the second approver reaches the quorum: queued
SELECT withdraw_approve(8002, 'second pair of eyes') AS state;
SELECT state, last_error FROM withdraw.withdrawals WHERE id = 8002;
SELECT withdraw_approve(8002, 'late');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: both approvals are events, with their roles, reasons and evidence
SELECT from_state, to_state, action, actor_role, reason, evidence, detail
FROM withdraw.events WHERE withdrawal_id = 8002 AND action = 'approve' ORDER BY event_id;
SELECT withdrawal_id, approvals, approvers, quorum FROM withdraw.approvals WHERE withdrawal_id = 8002;
-- case: reject with a reason : rejected, never sent; a second reject: 55000 naming the state
RESET ROLE;
SET ROLE desk_app;
SELECT withdraw_create('desk_zx', '{"requestId": "deskrej1", "coin": "USDT", "addressType": 3, "address": "100004", "amount": "200"}') AS rej \gset
SET ROLE desk_ap1;
SELECT withdraw_reject(:rej, '') ;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_reject(:rej, 'beneficiary unknown to us') AS state;
SELECT withdraw_reject(:rej, 'again');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT state, last_error FROM withdraw.withdrawals WHERE id = :rej;
-- case: an approver may not hold, resolve or pause (42501)
SELECT withdraw_hold(8001, 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_pause('desk_zx', 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: an expired approval request cannot be approved (55000); the worker ends it as expired
RESET ROLE;
SET ROLE desk_app;
SELECT withdraw_create('desk_zx', '{"coin": "USDT", "addressType": 3, "address": "100005", "amount": "150"}') AS exp \gset
RESET ROLE;
UPDATE withdraw.approval_request SET expires_at = now() - interval '1 second' WHERE withdrawal_id = :exp;
SET ROLE desk_ap1;
SELECT withdraw_approve(:exp, 'too late');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
-- case: cancelling a withdrawal awaiting approval
SELECT withdraw_cancel(:exp) AS cancelled;
SELECT state FROM withdraw.withdrawals WHERE id = :exp;

--
-- operator actions
--
SET ROLE desk_op;
-- case: hold a queued withdrawal, hold it again (55000 naming held), release it, release again (55000)
SELECT withdraw_hold(8001, 'customer asked to wait', '{"ticket": "OPS-2"}') AS state;
SELECT withdraw_hold(8001, 'again');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_release(8001, 'customer confirmed') AS state;
SELECT withdraw_release(8001, 'again');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: hold needs a reason (22023) and an existing withdrawal (P0002)
SELECT withdraw_hold(8001, NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_hold(424242, 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: a held withdrawal is cancelled by an operator
SELECT withdraw_hold(8001, 'fraud suspected') AS state;
SELECT withdraw_cancel(8001) AS cancelled;
SELECT from_state, to_state, action, actor_role, reason, evidence
FROM withdraw.events WHERE withdrawal_id = 8001 AND from_state IS NOT NULL ORDER BY event_id;
-- case: an operator may not approve (42501)
SELECT withdraw_approve(8002, 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;

-- resolve: :rev in review, :unk in unknown (as the worker leaves them)
SET ROLE desk_app;
SELECT withdraw_create('desk_zx', '{"coin": "USDT", "addressType": 3, "address": "100006", "amount": "10"}') AS rev \gset
SELECT withdraw_create('desk_zx', '{"coin": "USDT", "addressType": 3, "address": "100007", "amount": "10"}') AS unk \gset
RESET ROLE;
UPDATE withdraw.withdrawal SET state = 'sending', maybe_delivered = true WHERE id IN (:rev, :unk);
UPDATE withdraw.withdrawal SET state = 'review', last_error = 'quarantined' WHERE id = :rev;
UPDATE withdraw.withdrawal SET state = 'unknown', needs_reconcile = true WHERE id = :unk;
SET ROLE desk_op;
-- case: an outcome other than succeeded or failed: 22023
SELECT withdraw_resolve(:rev, 'paid', 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: review resolved as succeeded, with evidence; the event names who, why and what
SELECT withdraw_resolve(:rev, 'succeeded', 'provider support confirmed the payout', '{"txid": "0xabc"}') AS state;
SELECT state, finished_at IS NOT NULL AS finished, last_error FROM withdraw.withdrawals WHERE id = :rev;
SELECT from_state, to_state, action, actor_role, reason, evidence
FROM withdraw.events WHERE withdrawal_id = :rev AND action IS NOT NULL;
-- case: resolving it again: 55000 naming succeeded
SELECT withdraw_resolve(:rev, 'failed', 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: unknown: its reconciliation is still running (55000); force is for superusers (42501)
SELECT withdraw_resolve(:unk, 'failed', 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_resolve(:unk, 'failed', 'x', force => true);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT withdraw_resolve(:unk, 'failed', 'the provider has no record after 3 days', force => true) AS state;
SELECT action FROM withdraw.events WHERE withdrawal_id = :unk AND action IS NOT NULL;

-- retry: :safe failed before anything was sent; :unsafe failed after an attempt may have reached the provider
SET ROLE desk_app;
SELECT withdraw_create('desk_zx', '{"requestId": "deskretry1", "coin": "USDT", "addressType": 3, "address": "100008", "amount": "10"}') AS safe \gset
SELECT withdraw_create('desk_zx', '{"requestId": "deskretry2", "coin": "USDT", "addressType": 3, "address": "100009", "amount": "10"}') AS unsafe \gset
RESET ROLE;
UPDATE withdraw.withdrawal SET state = 'sending', attempts = 20 WHERE id IN (:safe, :unsafe);
UPDATE withdraw.withdrawal SET state = 'failed', last_error = 'connection refused; gave up after 20 attempts' WHERE id = :safe;
UPDATE withdraw.withdrawal SET state = 'review', maybe_delivered = true WHERE id = :unsafe;
UPDATE withdraw.withdrawal SET state = 'failed' WHERE id = :unsafe;
SET ROLE desk_op;
-- case: nothing reached the provider: queued again under the same key, attempts reset
SELECT withdraw_retry(:safe, 'provider was down, back now') AS id;
SELECT id, idempotency_key, state, attempts, finished_at IS NULL AS open FROM withdraw.withdrawals WHERE id = :safe;
-- case: a withdrawal that is not failed: 55000 naming its state
SELECT withdraw_retry(:safe, 'again');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: an attempt may have reached the provider: refused under the same key (55000), with the way out
SELECT withdraw_retry(:unsafe, 'try again');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: new_key: a copy under a new key (:copy), linked, shown to the creating application
SELECT withdraw_retry(:unsafe, 'provider confirmed it failed', '{"ticket": "OPS-3"}', new_key => true) AS copy \gset
SELECT id, state, idempotency_key <> 'deskretry2' AS new_key, created_by, amount, destination
FROM withdraw.withdrawals WHERE id = :copy;
RESET ROLE;
SELECT copy_id = :copy AS is_copy, original_id = :unsafe AS of_original, reason FROM withdraw.withdrawal_copy;
SET ROLE desk_op;
SELECT withdrawal_id, action, detail FROM withdraw.events WHERE withdrawal_id IN (:unsafe, :copy) AND action LIKE '%copy%' ORDER BY 1;
-- case: a rejected withdrawal is retried only as a copy (55000 otherwise)
SELECT withdraw_retry(:rej, 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;

-- pause and resume
SET ROLE desk_op;
-- case: pause; pause again (55000); resume; resume again (55000); unknown account (42704); no reason (22023)
SELECT withdraw_account_pause('desk_zx', 'provider incident INC-7');
SELECT account, paused, paused_by = session_user AS by_session, pause_reason,
       not_sending = format('paused by %s: provider incident INC-7', session_user) AS not_sending_says_why
FROM withdraw.health WHERE account = 'desk_zx';
\set VERBOSITY terse
SELECT withdraw_account_pause('desk_zx', 'again');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT withdraw_account_resume('desk_zx', 'incident over');
SELECT withdraw_account_resume('desk_zx', 'again');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_pause('nope', 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_pause('desk_zx', '');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT account, action, actor = session_user AS by_session, reason FROM withdraw.account_actions ORDER BY id;
RESET ROLE;

--
-- allowlist
--
-- case: only an admin manages it (42501 for an operator)
SET ROLE desk_op;
SELECT withdraw_allowlist_add('desk_zx', '200001', 'payroll');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET ROLE desk_admin;
-- case: bad arguments: no label, no destination, fields not an object, unknown account
SELECT withdraw_allowlist_add('desk_zx', '200001', ' ');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_allowlist_add('desk_zx', NULL, 'payroll');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_allowlist_add('desk_zx', '200001', 'payroll', fields => '[]');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_allowlist_add('nope', '200001', 'payroll');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: enforcement on, with a cooling-off period of one hour
SELECT withdraw_account_update('desk_zx', options => (SELECT options FROM withdraw.account WHERE name = 'desk_zx')
  || '{"allowlist": {"enforce": true, "cooling_off_ms": 3600000}}');
SELECT withdraw_allowlist_add('desk_zx', '200001', 'payroll', reason => 'new employee') IS NOT NULL AS added;
SELECT withdraw_allowlist_add('desk_zx', '200001', 'payroll twice');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT account, destination, label, usable, usable_from > now() + interval '59 minutes' AS cools_an_hour FROM withdraw.allowlist;
SET ROLE desk_app;
-- case: a destination not on the list: 23514, nothing stored
SELECT withdraw_create('desk_zx', '{"coin": "USDT", "addressType": 3, "address": "666666", "amount": "5"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: on the list but still cooling off: 23514 (the detail names the time)
\set VERBOSITY terse
SELECT withdraw_create('desk_zx', '{"coin": "USDT", "addressType": 3, "address": "200001", "amount": "5"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET ROLE;
UPDATE withdraw.allowlist_entry SET usable_from = now() - interval '1 second';
SET ROLE desk_app;
-- case: past its cooling-off period it is paid
SELECT withdraw_create('desk_zx', '{"coin": "USDT", "addressType": 3, "address": "200001", "amount": "5"}') IS NOT NULL AS created;
SELECT count(*) AS stored FROM withdraw.withdrawals WHERE destination IN ('666666', '200001');
SET ROLE desk_admin;
-- case: removal, and every change with who and why
SELECT withdraw_allowlist_remove('desk_zx', (SELECT id FROM withdraw.allowlist WHERE label = 'payroll'), 'employee left');
SELECT withdraw_allowlist_remove('desk_zx', 424242, 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT account, change, destination, label, changed_by = session_user AS by_session, reason
FROM withdraw.allowlist_changes ORDER BY id;
RESET ROLE;
-- case: listed destinations that may be personal data are masked but for readers of the tables
SELECT withdraw_allowlist_add('desk_zx', 'bob@example.com', 'Bob') IS NOT NULL AS added;
SET ROLE desk_admin;
SELECT destination, label FROM withdraw.allowlist;
RESET ROLE;
SELECT destination, label FROM withdraw.allowlist;

--
-- the feed and the health views
--
-- case: every event gets a feed position, strictly increasing, once
SELECT count(*) = (SELECT count(*) FROM withdraw.event) AS all_fed,
       count(DISTINCT feed_id) = count(*) AS distinct_ids,
       bool_and(feed_id > 0) AS positive
FROM withdraw_feed(0, 10000);
SELECT count(*) AS after_last FROM withdraw_feed((SELECT max(feed_id) FROM withdraw.event), 100);
SELECT count(*) AS one_page FROM withdraw_feed(0, 3);
-- case: a withdraw_user reads the events of its own withdrawals only
SET ROLE desk_app;
SELECT count(*) > 0 AS sees_own,
       bool_and(withdrawal_id >= 8001) AS only_own
FROM withdraw_feed(0, 10000);
-- case: bad arguments (22023); no privilege (42501)
SELECT * FROM withdraw_feed(-1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM withdraw_feed(0, 0);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET ROLE desk_nobody;
SELECT * FROM withdraw_feed(0);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
-- case: health per account
SELECT account, open, review, unknown, awaiting_approval, held, stuck, stuck_after_ms, paused, not_sending,
       last_success_at IS NOT NULL AS had_success, last_failure_at IS NOT NULL AS had_failure
FROM withdraw.health WHERE account = 'desk_zx';
SELECT state, withdrawals FROM withdraw.health_states WHERE account = 'desk_zx' AND withdrawals > 0 ORDER BY state;
-- case: stuck after the account's stuck_after_ms
UPDATE withdraw.withdrawal SET created_at = now() - interval '2 minutes' WHERE id = :copy;
SELECT stuck FROM withdraw.health WHERE account = 'desk_zx';
-- case: who reads the health view: operators, admins, auditors; not an application (42501)
SET ROLE desk_app;
SELECT count(*) FROM withdraw.health;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET ROLE desk_op;
SELECT count(*) > 0 AS operator_reads FROM withdraw.health;
RESET ROLE;
ROLLBACK;

-- case: the feed refuses a snapshot older than its lock (0A000)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM withdraw_feed(0);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
ROLLBACK;

-- case: the worker ends an approval request past its expiry as expired
-- (committed, on a paused account so that nothing is sent; waits up to 20 s)
SELECT withdraw_account_create('desk_exp', 'zoomex', 'http://127.0.0.1:9/zoomex',
  '{"api_key": "k", "api_secret": "s"}', '{"approval": {"USDT": {"above": "1", "expires_ms": 60000}}}');
SELECT withdraw_account_pause('desk_exp', 'test');
SELECT withdraw_create('desk_exp', '{"requestId": "deskexp1", "coin": "USDT", "addressType": 3, "address": "1", "amount": "5"}') > 0 AS created;
UPDATE withdraw.approval_request SET expires_at = now() - interval '1 second'
WHERE withdrawal_id = (SELECT id FROM withdraw.withdrawal WHERE idempotency_key = 'deskexp1');
DO $$
BEGIN
	FOR i IN 1 .. 200 LOOP
		EXIT WHEN (SELECT state FROM withdraw.withdrawal WHERE idempotency_key = 'deskexp1') = 'expired';
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
SELECT state, last_error LIKE 'its approval request expired at %' AS says_why
FROM withdraw.withdrawal WHERE idempotency_key = 'deskexp1';

-- case: CREATE EXTENSION in a database the workers do not serve is refused (55000, with a hint)
CREATE DATABASE desk_other;
\c desk_other
CREATE EXTENSION withdraw;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'withdraw';
\c contrib_regression
DROP DATABASE desk_other;
