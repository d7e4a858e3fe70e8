--
-- idempotency: every withdrawal carries the provider's idempotency key
--
-- For zoomex the key is requestId.  Calling withdraw_create again with the
-- same key and the same request returns the existing withdrawal; the same key
-- with another request is an error.  Without a requestId, one is generated.
--
-- The ids printed below start at 1001 in this file whatever the files before did.
SELECT setval(pg_get_serial_sequence('withdraw.withdrawal', 'id'), 1000) AS ids_start_after;
\set ok '{"coin": "USDT", "addressType": 1, "address": "alice@example.com", "amount": "1.5"}'
-- case: a new key creates a withdrawal
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "order1"}') AS id;
-- case: the same key with the same request returns the same id, and stores nothing new
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "order1"}') AS id;
SELECT withdraw_create('zoomex', '{"requestId": "order1", "amount": "1.5", "address": "alice@example.com", "addressType": 1, "coin": "USDT"}') AS same_request_in_another_order;
SELECT count(*) AS withdrawals_with_key_order1
FROM withdraw.withdrawals WHERE account = 'zoomex' AND idempotency_key = 'order1';
-- case: the same key with another amount is refused: 23505 (unique_violation)
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "order1", "amount": "2"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: so is the same key with any other difference, even an added remark
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "order1", "remark": "again"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: the first withdrawal is unchanged
SELECT id, idempotency_key, amount, request - 'requestId' AS request
FROM withdraw.withdrawals WHERE account = 'zoomex' AND idempotency_key = 'order1';
-- case: the stored request is normalized: only the provider's fields, JSON
-- nulls dropped, numbers as integers; the key is the stored requestId
SELECT withdraw_create('zoomex', '{"requestId": "order2", "coin": "BTC", "addressType": 3e0, "address": "123456", "amount": "0.00100", "remark": null}') AS id \gset
SELECT request, request->>'requestId' = idempotency_key AS key_is_request_id, asset, amount, destination
FROM withdraw.withdrawals WHERE id = :id;
-- case: a normalized request equal to the stored one is the same request
SELECT withdraw_create('zoomex', '{"requestId": "order2", "coin": "BTC", "addressType": 3, "address": "123456", "amount": "0.00100"}') = :id AS same_id;
-- case: without a requestId, a key of 32 hexadecimal digits is generated and stored in the request
SELECT withdraw_create('zoomex', :'ok') AS id \gset
SELECT length(idempotency_key) AS key_length,
       idempotency_key ~ '^[0-9a-f]{32}$' AS key_is_hex,
       request->>'requestId' = idempotency_key AS key_in_request,
       request - 'requestId' AS request
FROM withdraw.withdrawals WHERE id = :id;
-- case: two calls without a requestId are two withdrawals with two keys
SELECT withdraw_create('zoomex', :'ok') AS id_a, withdraw_create('zoomex', :'ok') AS id_b \gset
SELECT :id_a <> :id_b AS two_ids, count(DISTINCT idempotency_key) AS keys
FROM withdraw.withdrawals WHERE id IN (:id_a, :id_b);
-- case: two different keys are two withdrawals
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "order3"}') AS id_a,
       withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "order4"}') AS id_b \gset
SELECT :id_a <> :id_b AS two_ids, string_agg(idempotency_key, ', ' ORDER BY idempotency_key) AS keys
FROM withdraw.withdrawals WHERE id IN (:id_a, :id_b);
-- case: keys belong to an account: another zoomex account may use the same key
SELECT withdraw_account_create('zoomex_b', 'zoomex', 'http://127.0.0.1:9/zoomex',
                               '{"api_key": "k2", "api_secret": "other-secret"}');
SELECT withdraw_create('zoomex_b', :'ok'::jsonb || '{"requestId": "order1", "amount": "2"}') <> 1001 AS new_id;
SELECT account, idempotency_key, amount
FROM withdraw.withdrawals WHERE idempotency_key = 'order1' ORDER BY account;
-- case: withdraw_status finds a withdrawal by account and key
SELECT account, idempotency_key, amount FROM withdraw_status('zoomex_b', 'order1');
SELECT account, idempotency_key, amount, id FROM withdraw_status('zoomex', 'order1');
-- case: an unknown id or key gives NULL
SELECT withdraw_status(999999) IS NULL AS unknown_id, withdraw_status('zoomex', 'nosuchkey') IS NULL AS unknown_key;
