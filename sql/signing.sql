--
-- signing: the zoomex v1 signature, checked against the documented vectors
--
-- withdraw._zoomex_signature runs the code the worker signs with: every
-- parameter sorted by key in byte order, joined as k=v&... with raw values,
-- HMAC-SHA256 in lowercase hex.  It returns {string to sign, signature}.

-- case: the worked example of providers.md (secret YYYYsecret); integers are
-- signed in their plain form, and "address" sorts before "addressType"
SELECT s[1] AS string_to_sign, s[2] = '6eedcd99be91f8aa24b1c9034c39f2c2cabc21b1816bf546cc5e192c69e7e323' AS matches
FROM withdraw._zoomex_signature('YYYYsecret',
	'{"requestId": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "coin": "USDT", "addressType": 3, "address": "123456",
	  "amount": "1", "remark": "test", "api_key": "XXXXapikey", "timestamp": 1672196571000,
	  "recv_window": 5000}') AS s;

-- case: the public Bybit v2 vector that the zoomex legacy docs reuse
SELECT s[2] AS signature
FROM withdraw._zoomex_signature('t7T0YlFnYXk0Fx3JswQsDrViLg1Gh3DUU5Mr',
	'{"api_key": "B2Rou0PLPpGqcU0Vu2", "leverage": 100, "symbol": "BTCUSD", "timestamp": 1542434791000}') AS s;

-- case: uppercase keys sort before lowercase ones (byte order, not locale)
SELECT s[1] AS string_to_sign FROM withdraw._zoomex_signature('k', '{"b": "1", "a": "2", "B": "3", "ab": "4"}') AS s;

-- case: values are signed raw, so "&" and "=" in a value stay inside it; the
-- body is JSON, so they cannot become parameters of their own
SELECT s[1] AS string_to_sign FROM withdraw._zoomex_signature('k', '{"remark": "a&b=c", "amount": "1"}') AS s;
