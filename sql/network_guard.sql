--
-- network_guard: where an account may point (issue 14, finding 2)
--
-- withdraw.allowed_hosts (superuser, reload) limits the hosts an account's
-- base_url may name; a base_url that moves an account to another scheme,
-- host or port must come with credentials in the same call.  Both refusals
-- are 42501 (insufficient_privilege), echoed under each error.  The same
-- checks run again at every send (test/integration/test_network_guard.py).
--
\set creds '{"api_key": "k1", "api_secret": "s3cr3t-value"}'
\set creds2 '{"api_key": "k2", "api_secret": "an0ther-s3cr3t"}'
-- case: a malformed list is refused when it is set, not at the first request: 22023
ALTER SYSTEM SET withdraw.allowed_hosts = 'api.example.com, bad host';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET withdraw.allowed_hosts = 'api.example.com,,x.example.com';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET withdraw.allowed_hosts = 'https://api.example.com';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: the list: names, IP literals and "*.domain" (hosts below the domain)
ALTER SYSTEM SET withdraw.allowed_hosts = 'api.example.com, *.provider.test, 192.0.2.10';
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT current_setting('withdraw.allowed_hosts') AS allowed_hosts;
-- case: a listed host, in any case and with a final dot
SELECT withdraw_account_create('g_listed', 'zoomex', 'https://api.example.com/v5', :'creds');
SELECT withdraw_account_create('g_case', 'zoomex', 'https://API.Example.COM./v5', :'creds');
SELECT withdraw_account_create('g_ip', 'zoomex', 'https://192.0.2.10:8443', :'creds');
-- case: hosts below a "*." entry, at any depth
SELECT withdraw_account_create('g_wild', 'zoomex', 'https://eu.provider.test', :'creds');
SELECT withdraw_account_create('g_wild2', 'zoomex', 'https://a.b.provider.test', :'creds');
-- case: an unlisted host is refused, named in the error: 42501
SELECT withdraw_account_create('g_evil', 'zoomex', 'https://evil.example.net', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: "*.provider.test" does not allow provider.test itself, nor a look-alike suffix
SELECT withdraw_account_create('g_bare', 'zoomex', 'https://provider.test', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('g_suffix', 'zoomex', 'https://evilprovider.test', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_create('g_prefix', 'zoomex', 'https://api.example.com.evil.net', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: the host is the one libcurl would connect to: user-info does not hide another host
SELECT withdraw_account_create('g_userinfo', 'zoomex', 'https://api.example.com@evil.example.net/', :'creds');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: an update to an unlisted host is refused even with credentials: 42501
SELECT withdraw_account_update('g_listed', base_url => 'https://evil.example.net', credentials => :'creds2');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT name, base_url FROM withdraw.accounts WHERE name LIKE 'g\_%' ORDER BY name;
-- case: the list is for superusers: withdraw_admin cannot read it, nor set it
CREATE ROLE guard_admin NOLOGIN IN ROLE withdraw_admin;
SET ROLE guard_admin;
-- (the wording of the refusal differs between majors: its SQLSTATE is shown)
DO $$
BEGIN
	PERFORM current_setting('withdraw.allowed_hosts');
	RAISE NOTICE 'withdraw_admin can read withdraw.allowed_hosts';
EXCEPTION WHEN insufficient_privilege THEN
	RAISE NOTICE 'reading withdraw.allowed_hosts: SQLSTATE %', SQLSTATE;
END
$$;
ALTER SYSTEM SET withdraw.allowed_hosts = '';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
-- case: the empty list (the default) allows any host
ALTER SYSTEM RESET withdraw.allowed_hosts;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT current_setting('withdraw.allowed_hosts') = '' AS no_limit;
SELECT withdraw_account_create('g_any', 'zoomex', 'https://evil.example.net', :'creds');
--
-- credentials stay with the host they were given for
--
SELECT md5(s::text) AS sealed_before FROM withdraw.account_secret s
WHERE account_id = (SELECT id FROM withdraw.account WHERE name = 'g_listed') \gset
-- case: another host without credentials: 42501, nothing changes
SELECT withdraw_account_update('g_listed', base_url => 'https://api.attacker.test');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: the same host on another port, or over http, is another destination: 42501
SELECT withdraw_account_update('g_listed', base_url => 'https://api.example.com:8443/v5');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT withdraw_account_update('g_listed', base_url => 'http://api.example.com/v5');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- case: a refused change leaves the URL and the sealed credentials as they were
SELECT name, base_url FROM withdraw.accounts WHERE name = 'g_listed';
SELECT md5(s::text) = :'sealed_before' AS credentials_unchanged FROM withdraw.account_secret s
WHERE account_id = (SELECT id FROM withdraw.account WHERE name = 'g_listed');
-- case: another path, the explicit default port or another case of the same host keeps them
SELECT withdraw_account_update('g_listed', base_url => 'https://api.example.com/v6');
SELECT withdraw_account_update('g_listed', base_url => 'https://API.example.com:443/v6');
SELECT name, base_url FROM withdraw.accounts WHERE name = 'g_listed';
SELECT md5(s::text) = :'sealed_before' AS credentials_unchanged FROM withdraw.account_secret s
WHERE account_id = (SELECT id FROM withdraw.account WHERE name = 'g_listed');
-- case: another host with its credentials in the same call: both change
SELECT withdraw_account_update('g_listed', base_url => 'https://api.other.test', credentials => :'creds2');
SELECT name, base_url FROM withdraw.accounts WHERE name = 'g_listed';
SELECT md5(s::text) <> :'sealed_before' AS credentials_replaced FROM withdraw.account_secret s
WHERE account_id = (SELECT id FROM withdraw.account WHERE name = 'g_listed');
-- case: an error in those credentials undoes the new URL too
SELECT withdraw_account_update('g_listed', base_url => 'https://api.third.test', credentials => '{"api_key": "k3"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT name, base_url FROM withdraw.accounts WHERE name = 'g_listed';
-- clean up
SELECT withdraw_account_drop(name) FROM withdraw.account WHERE name LIKE 'g\_%';
DROP ROLE guard_admin;
