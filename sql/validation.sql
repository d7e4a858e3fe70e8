--
-- validation: withdraw_create checks a zoomex request before storing anything
--
-- A bad request raises an ERROR with SQLSTATE 22023 (invalid_parameter_value)
-- whose message names the field; the SQLSTATE is echoed under each error.
-- Nothing of a failed call is stored: the number of withdrawals is printed
-- at the end of the file.
--
-- Most cases start from this valid request and change one field.
\set ok '{"coin": "USDT", "addressType": 1, "address": "alice@example.com", "amount": "1.5"}'
SELECT count(*) AS withdrawals_before FROM withdraw.withdrawal \gset
-- case: the request must be a JSON object
SELECT withdraw_create('zoomex', '["USDT", 1]');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', '"USDT"');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: a field zoomex does not know (the detail lists the known ones)
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"memo": "x"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: coin, addressType, address and amount are required
SELECT withdraw_create('zoomex', :'ok'::jsonb - 'coin');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb - 'addressType');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb - 'address');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb - 'amount');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: a JSON null counts as missing
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"coin": null}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: wrong JSON types
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"coin": 5}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"addressType": "1"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"addressType": 1.5}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"address": ["alice@example.com"]}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: an amount must be a string, never a JSON number (the hint says why)
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"amount": 1.5}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: addressType is 1 (email), 2 (phone) or 3 (UID)
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"addressType": 0}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"addressType": 4}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: a phone number needs its areaCode
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"addressType": 2, "address": "5550100"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: areaCode is a calling code between 1 and 9999
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"addressType": 2, "areaCode": 0, "address": "5550100"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"addressType": 2, "areaCode": 10000, "address": "5550100"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: requestId is 1 to 64 letters, digits, '-' or '_' (issue 15: the seed says only "Custom ID, globally unique")
SELECT withdraw_create('zoomex', :'ok'::jsonb || jsonb_build_object('requestId', repeat('a', 65)));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "order 1"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
BEGIN;
-- a UUID as applications generate it, one as the seed's example (uuid4().hex), one with '_'
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "9f2a1c4e-5b67-4d8a-bf93-2e1f4a6c8d10"}') > 0 AS uuid_with_hyphens,
       withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "9f2a1c4e5b674d8abf932e1f4a6c8d10"}') > 0 AS uuid_hex,
       withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": "order_1"}') > 0 AS underscore;
ROLLBACK;
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"requestId": ""}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: remark is at most 50 characters
SELECT withdraw_create('zoomex', :'ok'::jsonb || jsonb_build_object('remark', repeat('r', 51)));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: characters, not bytes, are counted: 50 letters e-acute, chr(233), are
-- accepted, 51 are not (in a UTF8 database each is two bytes; the accepted
-- withdrawal is rolled back)
BEGIN;
SELECT withdraw_create('zoomex', :'ok'::jsonb || jsonb_build_object('remark', repeat(chr(233), 50))) AS id \gset
SELECT char_length(request->>'remark') AS characters
FROM withdraw.withdrawals WHERE id = :id;
ROLLBACK;
SELECT withdraw_create('zoomex', :'ok'::jsonb || jsonb_build_object('remark', repeat(chr(233), 51)));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: an amount is a positive decimal: digits, optionally a point and digits
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"amount": "0"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"amount": "0.000"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"amount": "-1"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"amount": "1."}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"amount": ".5"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"amount": "1e5"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"amount": "abc"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"amount": " 1"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"amount": ""}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: an amount of more than 64 characters
SELECT withdraw_create('zoomex', :'ok'::jsonb || jsonb_build_object('amount', '1.' || repeat('0', 63)));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: coin is at most 32 characters, address at most 256
SELECT withdraw_create('zoomex', :'ok'::jsonb || jsonb_build_object('coin', repeat('C', 33)));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || jsonb_build_object('address', repeat('a', 257)));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: no control characters in strings
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"address": "alice@example.com\u0001"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"address": "alice@example.com\n"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"address": "alice\u007f@example.com"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_create('zoomex', :'ok'::jsonb || '{"remark": "line 1\r\nline 2"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: an account that does not exist: 42704 (undefined_object) with a hint
SELECT withdraw_create('nosuch', :'ok');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: the account is checked before the request
SELECT withdraw_create('nosuch', '[]');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: withdraw_create is STRICT: a NULL argument returns NULL, stores nothing
SELECT withdraw_create(NULL, :'ok') IS NULL AS null_account;
SELECT withdraw_create('zoomex', NULL) IS NULL AS null_request;
-- case: none of the calls above stored anything
SELECT count(*) - :withdrawals_before AS withdrawals_stored FROM withdraw.withdrawal;
