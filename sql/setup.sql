--
-- setup: install the extension and create the account the other files use
--
-- The files of this suite run in order in one database; the background
-- worker serves this database (test/regress.conf) once the extension exists.
--
-- case: CREATE EXTENSION installs the default version from its full script
CREATE EXTENSION withdraw;
SELECT extname, extversion, extrelocatable, extnamespace::regnamespace AS schema
FROM pg_extension WHERE extname = 'withdraw';
-- case: the functions of the extension
SELECT p.oid::regprocedure AS function, pg_get_function_result(p.oid) AS returns,
       p.prosecdef AS security_definer, p.proisstrict AS strict
FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
  AND d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'withdraw')
ORDER BY p.oid::regprocedure::text COLLATE "C";
-- case: the views, in schema withdraw
SELECT c.relname AS view
FROM pg_class c
WHERE c.relnamespace = 'withdraw'::regnamespace AND c.relkind = 'v'
ORDER BY c.relname;
-- case: the tables behind them
SELECT c.relname AS table
FROM pg_class c
WHERE c.relnamespace = 'withdraw'::regnamespace AND c.relkind = 'r'
ORDER BY c.relname;
-- case: the roles the extension grants to
SELECT rolname, rolcanlogin, rolsuper
FROM pg_roles WHERE rolname IN ('withdraw_user', 'withdraw_admin', 'withdraw_webhook', 'withdraw_auditor')
ORDER BY rolname;
-- case: the settings (test/regress.conf sets database_name, allow_http, naptime
-- and secrets_key_file, whose path depends on the checkout)
SELECT name, CASE WHEN name = 'withdraw.secrets_key_file' THEN '(set: ' || (setting <> '') || ')'
                  ELSE setting END AS setting, unit, context
FROM pg_settings WHERE name LIKE 'withdraw.%' ORDER BY name;
-- case: the zoomex account the next files use; nothing listens at its URL,
-- so the worker's attempts fail to connect and are retried later
SELECT withdraw_account_create('zoomex', 'zoomex', 'http://127.0.0.1:9/zoomex',
                               '{"api_key": "k1", "api_secret": "s3cr3t-value"}');
SELECT name, provider, base_url, options, credential_keys FROM withdraw.accounts;
