--
-- callbackd: withdraw_receive, the call withdraw-callbackd makes for each
-- HTTP callback it receives: the raw body and headers as bytes, the route's
-- kind and the source address in; the HTTP status, the reply and the verdict
-- out, and the source and status kept in withdraw.callbacks
--
SELECT withdraw_account_create('rcv', 'ccpayment', 'http://127.0.0.1:9/ccpayment',
  '{"app_id": "rcv-app", "app_secret": "rcv-secret"}');
SELECT extract(epoch FROM now())::bigint::text AS now_s \gset
\set body '{"pay_status": "success", "order_id": "1", "merchant_order_id": "nobody", "withdraw_amount": "1", "txid": "0xt"}'
-- signed headers of a body, as the provider sends them (bytes of a JSON object)
CREATE FUNCTION pg_temp.signed(body text, secret text DEFAULT 'rcv-secret') RETURNS bytea
LANGUAGE sql AS $$
  SELECT convert_to(jsonb_build_object('Appid', 'rcv-app', 'Timestamp', extract(epoch FROM now())::bigint::text,
    'Sign', withdraw._ccpayment_signature(1, 'rcv-app', secret, extract(epoch FROM now())::bigint::text, body),
    'Content-Type', 'application/json; charset=utf-8')::text, 'UTF8')
$$;
-- case: an account the database does not have: 404, nothing recorded
SELECT * FROM withdraw_receive('nobody', 'notify', convert_to(:'body', 'UTF8'), pg_temp.signed(:'body'), '192.0.2.1');
SELECT count(*) AS nothing_recorded FROM withdraw.callbacks;
-- case: the kind is the route's: notify or confirm
SELECT * FROM withdraw_receive('rcv', 'deposit', convert_to(:'body', 'UTF8'), pg_temp.signed(:'body'), '192.0.2.1');
-- case: forged (another secret): 403, recorded as rejected with its source and status
SELECT * FROM withdraw_receive('rcv', 'notify', convert_to(:'body', 'UTF8'), pg_temp.signed(:'body', 'guess'), '192.0.2.1');
-- case: a body that is not UTF-8, headers that are not JSON: 400, recorded
SELECT * FROM withdraw_receive('rcv', 'notify', '\xff00fe'::bytea, pg_temp.signed(:'body'), '192.0.2.2');
SELECT * FROM withdraw_receive('rcv', 'notify', convert_to(:'body', 'UTF8'), convert_to('{"Appid": ', 'UTF8'), '192.0.2.2');
-- case: a second confirmation for an account whose provider asks none: 404, recorded
SELECT * FROM withdraw_receive('rcv', 'confirm', convert_to(:'body', 'UTF8'), pg_temp.signed(:'body'), '2001:db8::7');
-- case: authentic, of an order this database does not know: acknowledged (200), kept as unmatched
SELECT * FROM withdraw_receive('rcv', 'notify', convert_to(:'body', 'UTF8'), pg_temp.signed(:'body'), '192.0.2.3');
SELECT kind, verdict, source, http_status, detail FROM withdraw.callbacks ORDER BY id;
-- case: about a withdrawal of ours (in a transaction that the worker never sees)
BEGIN;
SELECT withdraw_create('rcv', '{"merchant_order_id": "R1", "address": "9454818", "token_id": "t", "value": "1"}') > 0 AS created;
UPDATE withdraw.withdrawal SET state = 'sending' WHERE idempotency_key = 'R1';
\set b1 '{"pay_status": "success", "order_id": "9", "merchant_order_id": "R1", "withdraw_amount": "1", "txid": "0xt"}'
-- while its create is in flight: 503, so that the provider sends it again
SELECT * FROM withdraw_receive('rcv', 'notify', convert_to(:'b1', 'UTF8'), pg_temp.signed(:'b1'), '192.0.2.4');
UPDATE withdraw.withdrawal SET state = 'submitted' WHERE idempotency_key = 'R1';
-- another amount: authentic but refused (409), nothing changed
\set b2 '{"pay_status": "success", "order_id": "9", "merchant_order_id": "R1", "withdraw_amount": "1000", "txid": "0xt"}'
SELECT * FROM withdraw_receive('rcv', 'notify', convert_to(:'b2', 'UTF8'), pg_temp.signed(:'b2'), '192.0.2.4');
SELECT state FROM withdraw.withdrawals WHERE idempotency_key = 'R1';
-- the real one: applied (200); the same again: unchanged, still 200 (a repeat must stop the retries)
SELECT * FROM withdraw_receive('rcv', 'notify', convert_to(:'b1', 'UTF8'), pg_temp.signed(:'b1'), '192.0.2.4');
SELECT * FROM withdraw_receive('rcv', 'notify', convert_to(:'b1', 'UTF8'), pg_temp.signed(:'b1'), '192.0.2.4');
SELECT state FROM withdraw.withdrawals WHERE idempotency_key = 'R1';
SELECT c.verdict, c.source, c.http_status FROM withdraw.callbacks c
JOIN withdraw.withdrawals w ON w.id = c.withdrawal_id WHERE w.idempotency_key = 'R1' ORDER BY c.id;
ROLLBACK;
-- case: the direct SQL calls leave source and status empty
SELECT withdraw_callback('rcv', :'body', convert_from(pg_temp.signed(:'body'), 'UTF8')::jsonb);
SELECT verdict, source, http_status FROM withdraw.callbacks ORDER BY id DESC LIMIT 1;
-- case: withdraw_webhook may call it, an application role may not
CREATE ROLE rcv_hook NOLOGIN IN ROLE withdraw_webhook;
CREATE ROLE rcv_app NOLOGIN IN ROLE withdraw_user;
SELECT pg_temp.signed(:'body') AS headers \gset
SET ROLE rcv_hook;
SELECT http_status, verdict FROM withdraw_receive('rcv', 'notify', convert_to(:'body', 'UTF8'), :'headers', '192.0.2.5');
SET ROLE rcv_app;
SELECT http_status FROM withdraw_receive('rcv', 'notify', convert_to(:'body', 'UTF8'), '\x7b7d', '192.0.2.5');
RESET ROLE;
-- case: it pins its search_path like every SECURITY DEFINER function
SELECT proconfig FROM pg_proc WHERE proname = 'withdraw_receive';
DELETE FROM withdraw.callback;
SELECT withdraw_account_drop('rcv');
DROP ROLE rcv_hook, rcv_app;
