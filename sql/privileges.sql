--
-- privileges: withdraw_user creates, reads and cancels withdrawals;
-- withdraw_admin also manages accounts; nobody but the owner reads secrets
--
-- Refusals are 42501 (insufficient_privilege); the SQLSTATE is echoed under each.
--
-- The ids printed below start at 2001 in this file whatever the files before did.
SELECT setval(pg_get_serial_sequence('withdraw.withdrawal', 'id'), 2000) AS ids_start_after;
\set ok '{"coin": "USDT", "addressType": 1, "address": "alice@example.com", "amount": "1.5"}'
CREATE ROLE app_user NOLOGIN IN ROLE withdraw_user;
CREATE ROLE app_admin NOLOGIN IN ROLE withdraw_admin;
CREATE ROLE app_nobody NOLOGIN;
--
-- withdraw_user
--
SET ROLE app_user;
-- case: app_user creates a withdrawal; created_by is app_user, not the owner of withdraw_create
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "byappuser"}') AS id;
SELECT id, account, idempotency_key, created_by FROM withdraw.withdrawals WHERE id = 2001;
-- case: app_user reads a withdrawal with withdraw_status, by id or by account and key
SELECT id, account, idempotency_key, created_by FROM withdraw_status(2001);
SELECT id, account, idempotency_key, created_by FROM withdraw_status('zoomex', 'byappuser');
-- case: app_user reads the views
SELECT from_state, to_state, detail FROM withdraw.events WHERE withdrawal_id = 2001 AND from_state IS NULL;
SELECT count(*) >= 0 AS attempts_readable FROM withdraw.attempts;
SELECT account, provider FROM withdraw.stats WHERE account = 'zoomex';
SELECT database FROM withdraw.workers;
-- case: app_user cancels a withdrawal (created in this transaction, so it is surely still queued)
BEGIN;
SELECT withdraw_create('zoomex', :'ok') AS id \gset
SELECT withdraw_cancel(:id) AS cancelled;
SELECT state, created_by FROM withdraw_status(:id);
-- the event names the role that cancelled, like created_by names the one that created
SELECT from_state, to_state, detail FROM withdraw.events WHERE withdrawal_id = :id AND to_state = 'cancelled';
-- case: app_user asks for a status poll: false, as nothing was submitted yet
SELECT withdraw_refresh(:id) AS refreshed;
ROLLBACK;
-- case: app_user cannot manage accounts
SELECT withdraw_account_create('app_acct', 'zoomex', 'https://api.example.com', '{"api_key": "k", "api_secret": "s"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_update('zoomex', options => '{}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_drop('zoomex_b');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: app_user cannot read accounts, secrets or the tables behind the views
SELECT name FROM withdraw.accounts;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT credentials FROM withdraw.account_secret;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT id FROM withdraw.withdrawal;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: app_user cannot change a withdrawal behind the extension's back
UPDATE withdraw.withdrawal SET amount = 1000 WHERE id = 2001;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
DELETE FROM withdraw.withdrawal WHERE id = 2001;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw._wake();
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: app_user cannot answer providers' callbacks, fetch form rules, rotate keys or open secrets
SELECT withdraw_callback('zoomex', '{}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_confirm('zoomex', '');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_form_rules('zoomex', '1004');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_rotate_secrets();
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw._credentials(1, '\x00', 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM withdraw.callbacks;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
--
-- withdraw_admin
--
SET ROLE app_admin;
-- case: app_admin manages accounts and reads withdraw.accounts
SELECT withdraw_account_create('app_acct', 'zoomex', 'https://api.example.com', '{"api_key": "k", "api_secret": "s"}');
SELECT withdraw_account_update('app_acct', options => '{"max_attempts": 3}');
SELECT name, provider, base_url, options, credential_keys FROM withdraw.accounts WHERE name = 'app_acct';
SELECT withdraw_account_drop('app_acct');
SELECT count(*) AS accounts_named_app_acct FROM withdraw.accounts WHERE name = 'app_acct';
-- case: app_admin reads the state machine
SELECT count(*) > 0 AS transitions_readable FROM withdraw.state_transition;
-- case: app_admin cannot read the secrets either, sealed or opened
SELECT credentials FROM withdraw.account_secret;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT sealed FROM withdraw.account_secret;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw._credentials(1, '\x00', 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: app_admin may re-seal the secrets (it reveals nothing) and read the callbacks log
SELECT withdraw_rotate_secrets() > 0 AS resealed;
SELECT count(*) >= 0 AS callbacks_readable FROM withdraw.callbacks;
-- case: nor can app_admin answer callbacks: that is withdraw_webhook's
SELECT withdraw_callback('zoomex', '{}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
--
-- withdraw_webhook
--
CREATE ROLE app_webhook NOLOGIN IN ROLE withdraw_webhook;
SET ROLE app_webhook;
-- case: the web handler's role calls the callback functions (zoomex has no callbacks: 0A000) and nothing else
SELECT withdraw_callback('zoomex', '{}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT count(*) FROM withdraw.withdrawals;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT count(*) FROM withdraw.callbacks;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE app_webhook;
-- case: every SECURITY DEFINER function of the extension pins its search_path
SELECT p.oid::regprocedure AS unpinned FROM pg_proc p
JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'withdraw')
WHERE p.prosecdef AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false);
--
-- a role with neither
--
SET ROLE app_nobody;
-- case: app_nobody can do nothing
SELECT withdraw_create('zoomex', :'ok');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_status(2001);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_cancel(2001);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT count(*) FROM withdraw.withdrawals;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('app_acct', 'zoomex', 'https://api.example.com', '{"api_key": "k", "api_secret": "s"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
-- case: the roles go; the withdrawal app_user created stays and still names it
DROP ROLE app_user, app_admin, app_nobody;
SELECT id, account, idempotency_key, created_by FROM withdraw.withdrawals WHERE id = 2001;
