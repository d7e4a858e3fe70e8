--
-- accounts: withdraw_account_create, _update, _drop and the withdraw.accounts view
--
-- Account errors are 22023 (invalid_parameter_value) unless said otherwise;
-- the SQLSTATE is echoed under each error.  No error quotes a credential value.
--
\set creds '{"api_key": "k1", "api_secret": "s3cr3t-value"}'
-- case: an account name is 1 to 63 lower-case letters, digits or underscores, starting with a letter
SELECT withdraw_account_create('Zoomex2', 'zoomex', 'https://api.example.com', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('2zoomex', 'zoomex', 'https://api.example.com', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('zoomex-2', 'zoomex', 'https://api.example.com', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create(repeat('z', 64), 'zoomex', 'https://api.example.com', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('', 'zoomex', 'https://api.example.com', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: an unknown provider: 42704 (undefined_object), the hint lists the known ones
SELECT withdraw_account_create('acme', 'acme', 'https://api.example.com', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: base_url must be http(s) (plain http only because this instance sets
-- withdraw.allow_http = on, a setting reserved to tests)
SELECT withdraw_account_create('acme', 'zoomex', 'ftp://api.example.com', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'api.example.com', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: base_url has no query, fragment or spaces: paths are appended to it
SELECT withdraw_account_create('acme', 'zoomex', 'https://', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com/?x=1', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com/#top', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com/a b', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: credentials are an object with exactly the provider's keys, each a non-empty string
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', '["k1", "s3cr3t-value"]');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', '{"api_key": "k1"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', :'creds'::jsonb || '{"passphrase": "p"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', '{"api_key": "k1", "api_secret": 12345}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', '{"api_key": "", "api_secret": "s3cr3t-value"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: options: only known keys (generic ones and the provider's own)
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', :'creds', '{"rate_limit": 5}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', :'creds', '[]');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: options: integers within their range
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', :'creds', '{"create_interval_ms": -1}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', :'creds', '{"max_attempts": 0}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', :'creds', '{"recv_window": 3600001}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', :'creds', '{"recv_window": "5000"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- (an option that is not a whole number is refused, not rounded)
SELECT withdraw_account_create('acme_frac', 'zoomex', 'https://api.example.com', :'creds', '{"max_attempts": 2.5}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- (a huge number is out of the option's range, like any other)
SELECT withdraw_account_create('acme_huge', 'zoomex', 'https://api.example.com', :'creds', '{"max_attempts": 1e30}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: NULL arguments: 22004 (null_value_not_allowed)
SELECT withdraw_account_create(NULL, 'zoomex', 'https://api.example.com', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', NULL, :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: NULL options are no options
BEGIN;
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com', :'creds', NULL);
SELECT name, options FROM withdraw.accounts WHERE name = 'acme';
ROLLBACK;
-- case: none of the above created an account
SELECT name FROM withdraw.accounts ORDER BY name;
-- case: an account name is unique: 42710 (duplicate_object)
SELECT withdraw_account_create('zoomex', 'zoomex', 'https://api.example.com', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: a valid account with options
SELECT withdraw_account_create('acme', 'zoomex', 'https://api.example.com/', :'creds',
                               '{"recv_window": 10000, "create_interval_ms": 2000, "max_attempts": 5}');
SELECT name, provider, base_url, options, credential_keys FROM withdraw.accounts WHERE name = 'acme';
-- case: withdraw.accounts names the credentials but never shows their values
SELECT count(*) AS rows_showing_the_secret
FROM withdraw.accounts a WHERE row_to_json(a)::text LIKE '%s3cr3t-value%';
-- case: withdraw_account_update changes the options; NULL arguments keep the rest
SELECT withdraw_account_update('acme', options => '{"recv_window": 20000}');
SELECT name, base_url, options, credential_keys FROM withdraw.accounts WHERE name = 'acme';
-- case: withdraw_account_update replaces the credentials (all keys are needed)
SELECT md5(s::text) AS stored_before FROM withdraw.account_secret s
WHERE account_id = (SELECT id FROM withdraw.account WHERE name = 'acme') \gset
SELECT withdraw_account_update('acme', credentials => '{"api_key": "k9", "api_secret": "n3w-s3cr3t"}');
SELECT md5(s::text) <> :'stored_before' AS credentials_replaced FROM withdraw.account_secret s
WHERE account_id = (SELECT id FROM withdraw.account WHERE name = 'acme');
SELECT withdraw_account_update('acme', credentials => '{"api_key": "k10"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: withdraw_account_update changes the base URL, checked like at creation
-- (another host needs the credentials again: see network_guard.sql)
SELECT withdraw_account_update('acme', base_url => 'https://api2.example.com',
                               credentials => '{"api_key": "k9", "api_secret": "n3w-s3cr3t"}');
SELECT withdraw_account_update('acme', base_url => 'ftp://api2.example.com');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_update('acme', options => '{"max_attempts": 0}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT name, base_url, options FROM withdraw.accounts WHERE name = 'acme';
-- case: withdraw_account_update of an unknown account: 42704
SELECT withdraw_account_update('nosuch', options => '{}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: an account with withdrawals cannot be dropped: 2BP01 (dependent_objects_still_exist)
SELECT withdraw_account_drop('zoomex');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: an account without withdrawals is dropped, its credentials with it
SELECT id AS acme_id FROM withdraw.account WHERE name = 'acme' \gset
SELECT withdraw_account_drop('acme');
SELECT count(*) AS accounts_named_acme FROM withdraw.accounts WHERE name = 'acme';
SELECT count(*) AS secrets_of_acme FROM withdraw.account_secret WHERE account_id = :acme_id;
-- case: dropping an unknown account: 42704
SELECT withdraw_account_drop('acme');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: withdraw_account_drop is STRICT
SELECT withdraw_account_drop(NULL) IS NULL AS dropped_nothing;
