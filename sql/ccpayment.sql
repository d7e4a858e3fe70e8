--
-- ccpayment: the computed signature examples of providers.md, request
-- validation for v1 and v2, per-account limits, webhook authentication
--
-- case: v1 Sign = SHA-256(appId + appSecret + timestamp + body) of the worked example
SELECT withdraw._ccpayment_signature(1, '202302010636261620672405236006912', 'test_app_secret', '1677152490',
  '{"merchant_order_id":"W0001","address":"9454818","token_id":"8e5741cf-6e51-4892-9d04-3d40e1dd0128","value":"0.05"}')
  = '2602b042a3113f363a228d144784c398cca9527538fdfc9aac03612d688c5784' AS v1_vector;
-- case: v2 Sign = HMAC-SHA256(appSecret, appId + timestamp + body): body, no body, {}
SELECT withdraw._ccpayment_signature(2, '202302010636261620672405236006912', 'test_app_secret', '1677152490',
  '{"orderId":"W0001","coinId":1280,"chain":"POLYGON","address":"0xabc","amount":"0.05"}')
  = '572ebc90897e864a5cfd016bb0df8e544083c160f83e37a0bce3ea8eff8ff6f8' AS v2_vector,
  withdraw._ccpayment_signature(2, '202302010636261620672405236006912', 'test_app_secret', '1677152490', '')
  = '4cab384ac198baedf252077724e8f96b2d4acd991adb34437768e7a50d7bd785' AS v2_empty,
  withdraw._ccpayment_signature(2, '202302010636261620672405236006912', 'test_app_secret', '1677152490', '{}')
  = '8fec4ab44f1a0790777430c5c0552e7c5a3c063167aa11c77326ff16cd25e55f' AS v2_braces;
-- case: accounts of both versions; api_version must be 1 or 2
SELECT withdraw_account_create('ccp1', 'ccpayment', 'http://127.0.0.1:9/ccpayment',
  '{"app_id": "202302010636261620672405236006912", "app_secret": "test_app_secret"}',
  '{"limits": {"8e5741cf-6e51-4892-9d04-3d40e1dd0128": {"single": "100", "daily": "150"}}}');
SELECT withdraw_account_create('ccp2', 'ccpayment', 'http://127.0.0.1:9/ccpayment',
  '{"app_id": "app2", "app_secret": "secret2"}', '{"api_version": 2}');
SELECT withdraw_account_create('ccp3', 'ccpayment', 'http://127.0.0.1:9/ccpayment',
  '{"app_id": "app3", "app_secret": "secret3"}', '{"api_version": 3}');
SELECT withdraw_account_create('ccp3', 'ccpayment', 'http://127.0.0.1:9/ccpayment', '{"app_id": "app3"}');
-- case: limits must be decimal strings per asset
SELECT withdraw_account_update('ccp2', options => '{"limits": {"1280": {"single": 100}}}');
SELECT withdraw_account_update('ccp2', options => '{"limits": {"1280": {"weekly": "100"}}}');
SELECT withdraw_account_update('ccp2', options => '{"limits": ["x"]}');
-- case: v1 validation names the field
SELECT withdraw_create('ccp1', '{"address": "9454818", "value": "0.05"}');
SELECT withdraw_create('ccp1', '{"address": "9454818", "token_id": "t", "value": 0.05}');
SELECT withdraw_create('ccp1', '{"address": "9454818", "token_id": "t", "value": "0.05", "coinId": 1}');
SELECT withdraw_create('ccp1', '{"merchant_order_id": "a b", "address": "9454818", "token_id": "t", "value": "0.05"}');
-- v1 memo is an Integer (seed 003, issue 15): a word is refused
SELECT withdraw_create('ccp1', '{"address": "9454818", "token_id": "t", "value": "0.05", "memo": "hello"}');
SELECT withdraw_create('ccp1', '{"address": "9454818", "token_id": "t", "value": "0.05", "memo": 1.5}');
-- case: v2 validation: camelCase fields, network or Cwallet
SELECT withdraw_create('ccp2', '{"address": "9454818", "token_id": "t", "value": "0.05"}');
SELECT withdraw_create('ccp2', '{"coinId": "1280", "chain": "POLYGON", "address": "0xabc", "amount": "0.05"}');
SELECT withdraw_create('ccp2', '{"orderId": "ab", "coinId": 1280, "chain": "POLYGON", "address": "0xabc", "amount": "0.05"}');
SELECT withdraw_create('ccp2', '{"coinId": 1280, "cwalletUser": "9454818", "chain": "POLYGON", "amount": "0.05"}');
SELECT withdraw_create('ccp2', '{"coinId": 1280, "chain": "POLYGON", "address": "0xabc", "amount": "0.05", "merchantPayNetworkFee": "yes"}');
SELECT withdraw_create('ccp2', '{"coinId": 1280, "chain": "POLYGON", "address": "0xabc", "amount": "0.05", "notifyUrl": "ftp://x"}');
SELECT count(*) AS nothing_stored FROM withdraw.withdrawals WHERE provider = 'ccpayment';
-- case: normalized requests, as they will be sent and signed
BEGIN;
SELECT withdraw_create('ccp2', '{"orderId": "W0001", "coinId": 1280, "chain": "POLYGON", "address": "0xabc", "amount": "0.05", "merchantPayNetworkFee": true}') > 0 AS network;
SELECT withdraw_create('ccp2', '{"orderId": "W0002", "coinId": 1280, "cwalletUser": "9454818", "amount": "1"}') > 0 AS cwallet;
SELECT withdraw_create('ccp1', '{"merchant_order_id": "W0001", "address": "9454818", "token_id": "8e5741cf-6e51-4892-9d04-3d40e1dd0128", "value": "0.05"}') > 0 AS v1;
-- the memo as an integer or as digits, kept and sent as a JSON number (seed 003: memo Integer)
SELECT withdraw_create('ccp1', '{"merchant_order_id": "W0003", "address": "rEb8TK3gBgk5auZkwc6sHnwrGVJH8DuaLh", "token_id": "t", "value": "0.05", "memo": 104523}') > 0 AS v1_memo_int,
       withdraw_create('ccp1', '{"merchant_order_id": "W0004", "address": "rEb8TK3gBgk5auZkwc6sHnwrGVJH8DuaLh", "token_id": "t", "value": "0.05", "memo": "104523"}') > 0 AS v1_memo_digits;
SELECT account, idempotency_key, asset, amount, destination, request FROM withdraw.withdrawals
WHERE provider = 'ccpayment' ORDER BY id;
ROLLBACK;
-- case: limits: one withdrawal over the single limit, then two that together pass the daily limit
SELECT withdraw_create('ccp1', '{"address": "a", "token_id": "8e5741cf-6e51-4892-9d04-3d40e1dd0128", "value": "100.01"}');
BEGIN;
SELECT withdraw_create('ccp1', '{"merchant_order_id": "L1", "address": "a", "token_id": "8e5741cf-6e51-4892-9d04-3d40e1dd0128", "value": "100"}') > 0 AS first;
SELECT withdraw_create('ccp1', '{"merchant_order_id": "L2", "address": "a", "token_id": "8e5741cf-6e51-4892-9d04-3d40e1dd0128", "value": "50.00"}') > 0 AS up_to_the_limit;
SELECT withdraw_create('ccp1', '{"merchant_order_id": "L3", "address": "a", "token_id": "8e5741cf-6e51-4892-9d04-3d40e1dd0128", "value": "0.01"}');
ROLLBACK;
-- another asset has no limit
BEGIN;
SELECT withdraw_create('ccp1', '{"address": "a", "token_id": "other", "value": "1000"}') > 0 AS unlimited;
ROLLBACK;
-- case: webhooks are verified before anything is read: headers, Appid, Sign, Timestamp
SELECT extract(epoch FROM now())::bigint::text AS now_s \gset
\set body '{"pay_status": "success", "order_id": "1", "merchant_order_id": "nobody", "withdraw_amount": "1", "txid": "0xt"}'
SELECT withdraw_callback('ccp1', :'body');
SELECT withdraw_callback('ccp1', :'body', jsonb_build_object('Appid', 'someone-else', 'Timestamp', :'now_s', 'Sign', 'x'));
SELECT withdraw_callback('ccp1', :'body', jsonb_build_object('Appid', '202302010636261620672405236006912', 'Timestamp', :'now_s',
  'Sign', withdraw._ccpayment_signature(1, '202302010636261620672405236006912', 'wrong secret', :'now_s', :'body')));
SELECT withdraw_callback('ccp1', :'body', jsonb_build_object('Appid', '202302010636261620672405236006912', 'Timestamp', :'now_s',
  'Sign', withdraw._ccpayment_signature(2, '202302010636261620672405236006912', 'test_app_secret', :'now_s', :'body')));
SELECT withdraw_callback('ccp1', :'body', jsonb_build_object('Appid', '202302010636261620672405236006912', 'Timestamp', '1677152490',
  'Sign', withdraw._ccpayment_signature(1, '202302010636261620672405236006912', 'test_app_secret', '1677152490', :'body')));
SELECT count(*) AS nothing_recorded FROM withdraw.callbacks;
-- case: an authentic webhook of an order this database does not know: acknowledged, kept as unmatched
SELECT withdraw_callback('ccp1', :'body', jsonb_build_object('appid', '202302010636261620672405236006912', 'timestamp', :'now_s',
  'sign', withdraw._ccpayment_signature(1, '202302010636261620672405236006912', 'test_app_secret', :'now_s', :'body')));
SELECT kind, verdict, idempotency_key, detail FROM withdraw.callbacks;
DELETE FROM withdraw.callback;
SELECT withdraw_account_drop('ccp1'), withdraw_account_drop('ccp2');
