--
-- ownership: a withdraw_user sees, refreshes and cancels only the
-- withdrawals its own role created; withdraw_auditor sees every withdrawal
-- with personal data masked; withdraw_admin (operators) sees every one,
-- masked, and may cancel any; the extension's owner reads everything
--
-- Everything happens in one transaction that is rolled back: the worker
-- never sees these withdrawals, and the roles go with it.
--
-- CONTEXT lines of errors raised in PL/pgSQL are hidden; an error rolls
-- back its own statement only (psql's ON_ERROR_ROLLBACK).
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
BEGIN;
SELECT setval(pg_get_serial_sequence('withdraw.withdrawal', 'id'), 6000) AS ids_start_after;
CREATE ROLE own_shop_a NOLOGIN IN ROLE withdraw_user;
CREATE ROLE own_shop_b NOLOGIN IN ROLE withdraw_user;
CREATE ROLE own_auditor NOLOGIN IN ROLE withdraw_auditor;
CREATE ROLE own_operator NOLOGIN IN ROLE withdraw_admin;
-- a fiat account whose pay_code 1004 has rules (as if fetched), and a zoomex one
SELECT withdraw_account_create('own_fiat', 'fiat_gateway', 'http://127.0.0.1:9/fiat_gateway',
  '{"uid": "u1", "secret_key": "own-secret"}', '{"notify_url": "https://shop.example/notify"}');
INSERT INTO withdraw.form_rule (account_id, rule_key, currency, rules, fetched_at)
SELECT id, '1004', 'KRW', '{"pay_code": "1004", "form_fields": [
  {"name": "bank_account", "type": "input", "required": true, "validation_rules": ["required", "string", "max:50"]},
  {"name": "bank_no", "type": "input", "required": true, "validation_rules": ["required", "digits", "max:30"]}]}', now()
FROM withdraw.account WHERE name = 'own_fiat';
SELECT withdraw_account_create('own_zx', 'zoomex', 'http://127.0.0.1:9/zoomex',
  '{"api_key": "k", "api_secret": "own-secret"}');
--
-- three withdrawals: two by own_shop_a, one by own_shop_b
--
SET ROLE own_shop_a;
-- case: own_shop_a pays a person's bank account (6001) and an e-mail address (6002)
SELECT withdraw_create('own_fiat', '{"orderid": "a1", "currency": "KRW", "amount": "100.00", "userip": "203.0.113.7",
  "pay_code": "1004", "bank_account": "Kim Min-jun", "bank_no": "110234567890", "user_name": "Kim Min-jun"}') AS id;
SELECT withdraw_create('own_zx', '{"requestId": "a2", "coin": "USDT", "addressType": 1, "address": "alice@example.com", "amount": "1.5"}') AS id;
SET ROLE own_shop_b;
-- case: own_shop_b pays a phone number (6003)
SELECT withdraw_create('own_zx', '{"requestId": "b1", "coin": "USDT", "addressType": 2, "areaCode": 44, "address": "7700900123", "amount": "2"}') AS id;
RESET ROLE;
-- an exchange of 6001 and of 6003 as the worker records them, and a
-- notification of 6001 (inserted by the owner: nothing is sent here)
INSERT INTO withdraw.attempt (withdrawal_id, kind, started_at, method, url, request_body, http_status, response_body, outcome)
SELECT w.id, 'create', now(), 'POST', 'http://127.0.0.1:9/fiat_gateway/applyfor',
       jsonb_set(w.request, '{sign}', '"[redacted]"')::text, 200,
       '{"status": 10000, "result": {"transactionid": "77"}, "sign": "X"}', 'submitted'
FROM withdraw.withdrawal w WHERE w.id IN (6001, 6003);
INSERT INTO withdraw.callback (account_id, kind, verdict, withdrawal_id, idempotency_key, content)
SELECT account_id, 'withdrawal', 'refused', id, 'a1',
       '{"orderid": "a1", "status": "success", "amount": "100.00", "bank_no": "110234567890"}'
FROM withdraw.withdrawal WHERE id = 6001;
-- a record of the provider's list for 6003, and one of nobody's
INSERT INTO withdraw.remote_withdrawal (account_id, provider_id, withdrawal_id, state, raw)
SELECT account_id, 'r-6003', id, 'processing', '{}'::jsonb FROM withdraw.withdrawal WHERE id = 6003
UNION ALL
SELECT id, 'r-other', NULL, 'processing', '{}' FROM withdraw.account WHERE name = 'own_zx';
--
-- withdraw_user: its own, in full
--
SET ROLE own_shop_a;
-- case: own_shop_a sees its two withdrawals, personal data and all
SELECT id, created_by, destination, request FROM withdraw.withdrawals WHERE id > 6000 ORDER BY id;
SELECT withdrawal_id, request_body FROM withdraw.attempts WHERE withdrawal_id > 6000 ORDER BY id;
SELECT withdrawal_id, from_state, to_state, detail FROM withdraw.events WHERE withdrawal_id > 6000 ORDER BY withdrawal_id, at;
-- case: own_shop_b's withdrawal is not there: not by id, not by key, not in the history
SELECT id, state FROM withdraw_status(6003);
SELECT id FROM withdraw_status('own_zx', 'b1');
SELECT count(*) AS attempts_of_6003 FROM withdraw.attempts WHERE withdrawal_id = 6003;
SELECT count(*) AS events_of_6003 FROM withdraw.events WHERE withdrawal_id = 6003;
SELECT count(*) AS remote_records FROM withdraw.remote_withdrawals WHERE account = 'own_zx';
-- case: own_shop_a cannot cancel nor refresh own_shop_b's withdrawal (42501), and nothing changes
SELECT withdraw_cancel(6003);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_refresh(6003);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: a function in the query's WHERE clause sees only the rows of the view (security barrier)
RESET ROLE;
CREATE FUNCTION public.own_leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS
$$BEGIN RAISE NOTICE 'seen: %', $1; RETURN true; END$$;
SET ROLE own_shop_a;
SELECT count(*) AS rows FROM withdraw.withdrawals WHERE public.own_leak(idempotency_key);
SELECT count(*) AS rows FROM withdraw.events WHERE public.own_leak(detail);
RESET ROLE;
SELECT state, last_error FROM withdraw.withdrawal WHERE id = 6003;
SET ROLE own_shop_b;
-- case: own_shop_b sees only its phone withdrawal, unmasked, and the record of the provider's list linked to it
SELECT id, created_by, destination, request FROM withdraw.withdrawals WHERE id > 6000 ORDER BY id;
SELECT provider_id, withdrawal_id FROM withdraw.remote_withdrawals WHERE account = 'own_zx';
-- case: own_shop_b cannot cancel own_shop_a's withdrawal either, but cancels its own
SELECT withdraw_cancel(6002);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_cancel(6003) AS cancelled;
-- case: a withdrawal that does not exist is still no_data_found (P0002)
SELECT withdraw_cancel(999999);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
--
-- withdraw_auditor: everything, personal data masked, read-only
--
SET ROLE own_auditor;
-- case: the auditor sees all three; bank numbers, e-mail and phone keep their last 4 characters, names and IPs nothing
SELECT id, created_by, state, destination, request FROM withdraw.withdrawals WHERE id > 6000 ORDER BY id;
SELECT withdrawal_id, request_body, response_body FROM withdraw.attempts WHERE withdrawal_id > 6000 ORDER BY id;
SELECT withdrawal_id, to_state, detail FROM withdraw.events WHERE withdrawal_id > 6000 ORDER BY withdrawal_id, at;
SELECT withdrawal_id, content FROM withdraw.callbacks WHERE withdrawal_id > 6000;
SELECT provider_id, withdrawal_id FROM withdraw.remote_withdrawals WHERE account = 'own_zx' ORDER BY provider_id;
SELECT id, destination FROM withdraw_status(6001);
-- case: the auditor cannot cancel, refresh or create (42501)
SELECT withdraw_cancel(6001);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_refresh(6001);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('own_zx', '{"coin": "USDT", "addressType": 3, "address": "1", "amount": "1"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: nor read the tables behind the views
SELECT request FROM withdraw.withdrawal;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
--
-- withdraw_admin: everything, masked, and may cancel any withdrawal
--
SET ROLE own_operator;
-- case: the operator sees all three, masked
SELECT id, created_by, destination, request->>'bank_no' AS bank_no, request->>'address' AS address
FROM withdraw.withdrawals WHERE id > 6000 ORDER BY id;
-- case: the operator cancels own_shop_a's withdrawal; the event names the operator
SELECT withdraw_cancel(6002) AS cancelled;
SELECT withdrawal_id, to_state, detail FROM withdraw.events WHERE withdrawal_id = 6002 AND to_state = 'cancelled';
--
-- the extension's owner reads everything as stored
--
RESET ROLE;
-- case: the owner sees the personal data of every withdrawal
SELECT id, created_by, state, destination FROM withdraw.withdrawals WHERE id > 6000 ORDER BY id;
SELECT content->>'bank_no' AS bank_no FROM withdraw.callbacks WHERE withdrawal_id = 6001;
-- case: the views are security barriers
SELECT relname, reloptions FROM pg_class
WHERE relnamespace = 'withdraw'::regnamespace AND relkind = 'v' AND reloptions IS NOT NULL ORDER BY relname;
ROLLBACK;
\unset ON_ERROR_ROLLBACK
