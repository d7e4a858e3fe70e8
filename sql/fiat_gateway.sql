--
-- fiat_gateway: MD5 sign vectors, form-rule validation, amounts, notifications
--
-- case: the worked formRule example of providers.md, in both sign modes
SELECT withdraw._fiat_gateway_signature('{"uid": "test1", "currency": "VND", "pay_code": "1004", "timestamp": 1758210270, "userip": "127.0.0.1", "sign": "200AF28BB3E4C4F0E93EBD48DB1FF623"}', 'SECRETKEY', 'amp_key') AS amp_key,
       withdraw._fiat_gateway_signature('{"uid": "test1", "currency": "VND", "pay_code": "1004", "timestamp": 1758210270, "userip": "127.0.0.1"}', 'SECRETKEY', 'concat') AS concat;
-- case: the published vectors of the same family (WeChat Pay v2, 9dg, pavodisplay)
SELECT withdraw._fiat_gateway_signature('{"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "device_info": "1000", "body": "test", "nonce_str": "ibuaiVcKdpRxkhJA"}', '192006250b4c09247ec02edce69f6a2d', 'amp_key') = '9A0A8659F005D6984697E2CA0A9CF3B7' AS wechat,
       withdraw._fiat_gateway_signature('{"amount": "100", "coinName": "INR", "mchId": "IPq15ZFXBFLIqRuY", "mchTransNo": "123456789", "notifyUrl": "https://test.com", "paymentNotifyUrl": "https://test.com"}', 'IPq15ZFXBFLIqRuY', 'amp_key') = 'F694ED4D44A60DB500045184BD13AF84' AS ninedg,
       withdraw._fiat_gateway_signature('{"appid": "d114c07a-24ed-41b2-9cc3-58ae5bb9ace1_2303065600000005", "clientid": "2C05476AA26C", "nlast": "0", "ts": "1679539549647", "version": "V3.34"}', '2303065600000006', 'amp_key') = '5344FA09D02DB7912093D01A356A1C5A' AS pavodisplay;
-- case: empty values and sign are left out of what is signed
SELECT withdraw._fiat_gateway_signature('{"uid": "test1", "currency": "VND", "pay_code": "1004", "timestamp": 1758210270, "userip": "127.0.0.1", "custom": "", "bank_sub": null}', 'SECRETKEY', 'amp_key')
     = '695D8ECF1DDDF0F3EAAE95164DD0F230' AS empties_ignored;
-- case: options: sign_mode, notify_url, pay_codes
SELECT withdraw_account_create('fiat', 'fiat_gateway', 'http://127.0.0.1:9/fiat_gateway',
  '{"uid": "test1", "secret_key": "SECRETKEY"}', '{"sign_mode": "md5"}');
SELECT withdraw_account_create('fiat', 'fiat_gateway', 'http://127.0.0.1:9/fiat_gateway',
  '{"uid": "test1", "secret_key": "SECRETKEY"}', '{"pay_codes": ["1004"]}');
SELECT withdraw_account_create('fiat', 'fiat_gateway', 'http://127.0.0.1:9/fiat_gateway',
  '{"uid": "test1", "secret_key": "SECRETKEY"}', '{"notify_url": "https://shop.example/notify", "pay_codes": {"1004": "KRW"}}');
SELECT account, pay_code, currency, rules IS NULL AS not_fetched_yet FROM withdraw.form_rules;
-- case: without cached rules for a pay_code, nothing is stored and the hint names the call that fetches them
SELECT withdraw_create('fiat', '{"currency": "INR", "amount": "10.00", "userip": "1.2.3.4", "pay_code": "812"}');
-- case: the seed's formRule example, cached as if fetched
UPDATE withdraw.form_rule SET fetched_at = now(), rules = '{"pay_code": "1004", "name": "Korea Withdrawal", "form_fields": [
  {"name": "bank_id", "label": "Bank ID", "type": "select", "required": true, "max_length": 100,
   "options": [{"bankID": 1001, "name": "KB Kookmin Bank"}, {"bankID": 1002, "name": "Shinhan Bank"}],
   "validation_rules": ["required", "integer"]},
  {"name": "bank_account", "label": "Account Holder Name", "type": "input", "required": true, "max_length": 50,
   "options": null, "validation_rules": ["required", "string", "max:50"]},
  {"name": "bank_no", "label": "Account Number", "type": "input", "required": true, "max_length": 30,
   "options": null, "validation_rules": ["required", "string", "digits", "max:30"]},
  {"name": "wallet", "label": "Wallet", "type": "select", "required": false, "max_length": 10,
   "options": [{"value": "GCASH"}, {"value": "MAYA"}], "validation_rules": ["string", "in:GCASH,MAYA"]},
  {"name": "bank_ifsc", "label": "IFSC", "type": "input", "required": false, "max_length": 11,
   "options": null, "validation_rules": ["size:11", "regex:[A-Z]{4}0[A-Z0-9]{6}"]}]}'
WHERE rule_key = '1004';
\set ok '"currency": "KRW", "amount": "100.00", "userip": "1.2.3.4", "pay_code": "1004", "bank_id": 1001, "bank_account": "Kim", "bank_no": "123456"'
-- case: each rule of the pay_code, one failure at a time, each naming the field and the rule
SELECT withdraw_create('fiat', '{"currency": "KRW", "amount": "100.00", "userip": "1.2.3.4", "pay_code": "1004", "bank_id": 1001, "bank_no": "123456"}');
SELECT withdraw_create('fiat', jsonb_build_object('currency', 'KRW', 'amount', '100.00', 'userip', '1.2.3.4', 'pay_code', '1004',
  'bank_id', 1001, 'bank_no', '123456', 'bank_account', repeat('x', 51)));
SELECT withdraw_create('fiat', '{"currency": "KRW", "amount": "100.00", "userip": "1.2.3.4", "pay_code": "1004", "bank_id": 1009, "bank_account": "Kim", "bank_no": "123456"}');
SELECT withdraw_create('fiat', '{"currency": "KRW", "amount": "100.00", "userip": "1.2.3.4", "pay_code": "1004", "bank_id": 1001, "bank_account": "Kim", "bank_no": "12-34"}');
SELECT withdraw_create('fiat', '{"currency": "KRW", "amount": "100.00", "userip": "1.2.3.4", "pay_code": "1004", "bank_id": 1001, "bank_account": "Kim", "bank_no": 123456}');
SELECT withdraw_create('fiat', ('{' || :'ok' || ', "wallet": "PAYPAL"}')::jsonb);
SELECT withdraw_create('fiat', ('{' || :'ok' || ', "bank_ifsc": "SBIN000123"}')::jsonb);
SELECT withdraw_create('fiat', ('{' || :'ok' || ', "bank_ifsc": "sbin0001234"}')::jsonb);
SELECT withdraw_create('fiat', ('{' || :'ok' || ', "iban": "DE00"}')::jsonb);
-- case: amounts have exactly two decimals
SELECT withdraw_create('fiat', '{"currency": "KRW", "amount": "100.5", "userip": "1.2.3.4", "pay_code": "1004", "bank_id": 1001, "bank_account": "Kim", "bank_no": "1"}');
SELECT withdraw_create('fiat', '{"currency": "KRW", "amount": "100.505", "userip": "1.2.3.4", "pay_code": "1004", "bank_id": 1001, "bank_account": "Kim", "bank_no": "1"}');
SELECT withdraw_create('fiat', '{"currency": "KRW", "amount": 100.50, "userip": "1.2.3.4", "pay_code": "1004", "bank_id": 1001, "bank_account": "Kim", "bank_no": "1"}');
SELECT count(*) AS nothing_stored FROM withdraw.withdrawals WHERE provider = 'fiat_gateway';
-- case: amount_decimals and rules_require_sign are checked like every option (issue 15)
SELECT withdraw_account_update('fiat', options => '{"notify_url": "https://shop.example/notify", "pay_codes": {"1004": "KRW"}, "amount_decimals": {"1004": "0"}}');
SELECT withdraw_account_update('fiat', options => '{"notify_url": "https://shop.example/notify", "pay_codes": {"1004": "KRW"}, "amount_decimals": {"1004": 9}}');
SELECT withdraw_account_update('fiat', options => '{"notify_url": "https://shop.example/notify", "pay_codes": {"1004": "KRW"}, "amount_decimals": [0]}');
SELECT withdraw_account_update('fiat', options => '{"notify_url": "https://shop.example/notify", "pay_codes": {"1004": "KRW"}, "rules_require_sign": "yes"}');
-- case: "decimal places based on different channels" (seed 004): a pay_code set to 0 takes whole amounts only
BEGIN;
SELECT withdraw_account_update('fiat', options => '{"notify_url": "https://shop.example/notify", "pay_codes": {"1004": "KRW"}, "amount_decimals": {"1004": 0}, "rules_require_sign": true}');
SELECT withdraw_create('fiat', ('{' || replace(:'ok', '"100.00"', '"100"') || '}')::jsonb) > 0 AS whole_amount_created;
SELECT withdraw_create('fiat', ('{' || :'ok' || '}')::jsonb);
ROLLBACK;
-- case: a request that passes every rule; its fields are kept as the strings that will be signed
BEGIN;
SELECT withdraw_create('fiat', ('{"orderid": "F-1", ' || :'ok' || ', "wallet": "MAYA", "bank_ifsc": "SBIN0001234"}')::jsonb) > 0 AS created;
SELECT idempotency_key, asset, amount, destination, request FROM withdraw.withdrawals WHERE provider = 'fiat_gateway';
ROLLBACK;
-- case: notifications are verified first: a forged or unsigned one raises 28000 and changes nothing
SELECT withdraw_callback('fiat', '{"uid": "test1", "orderid": "F-1", "amount": "100.00", "status": "success", "sign": "0123456789ABCDEF0123456789ABCDEF"}');
SELECT withdraw_callback('fiat', '{"uid": "test1", "orderid": "F-1", "amount": "100.00", "status": "success"}');
SELECT withdraw_callback('fiat', 'not json');
-- an authentic one for another merchant uid
SELECT withdraw_callback('fiat', jsonb_set(j, '{sign}', to_jsonb(withdraw._fiat_gateway_signature(j, 'SECRETKEY', 'amp_key')))::text)
FROM (SELECT '{"uid": "test2", "orderid": "F-1", "amount": "100.00", "status": "success"}'::jsonb AS j) s;
-- an authentic one, but stale
SELECT withdraw_callback('fiat', jsonb_set(j, '{sign}', to_jsonb(withdraw._fiat_gateway_signature(j, 'SECRETKEY', 'amp_key')))::text)
FROM (SELECT '{"uid": "test1", "orderid": "F-1", "amount": "100.00", "status": "success", "timestamp": "1600000000"}'::jsonb AS j) s;
SELECT count(*) AS nothing_recorded FROM withdraw.callbacks;
-- case: an authentic notification of an order this database does not know: acknowledged, kept
SELECT withdraw_callback('fiat', jsonb_set(j, '{sign}', to_jsonb(withdraw._fiat_gateway_signature(j, 'SECRETKEY', 'amp_key')))::text)
FROM (SELECT jsonb_build_object('uid', 'test1', 'orderid', 'nobody', 'amount', '1.00', 'status', 'success',
             'timestamp', extract(epoch FROM now())::bigint::text) AS j) s;
SELECT kind, verdict, idempotency_key, detail FROM withdraw.callbacks;
DELETE FROM withdraw.callback;
SELECT withdraw_account_drop('fiat');
SELECT count(*) AS rules_dropped_with_the_account FROM withdraw.form_rule;
