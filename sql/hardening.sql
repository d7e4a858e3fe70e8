-- What stops a database owner or an application role from running code with
-- the extension's rights (issue 14, finding 1).  The integration suite
-- test/integration/test_hardening.py shows the same against the workers.

-- case: every function of the extension that runs as its owner, or runs SQL
-- of its own, has its search_path pinned (none listed here)
SELECT p.oid::regprocedure AS unpinned
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'withdraw'
WHERE (p.prosecdef OR p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('plpgsql', 'sql')))
  AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
ORDER BY 1::text;
-- case: ... and so do the C functions that run SQL without being SECURITY
-- DEFINER (their callers pin it too, but they do not rely on them)
SELECT oid::regprocedure AS c_function_running_sql, proconfig FROM pg_proc
WHERE oid IN ('withdraw._refresh_remote(text, text)'::regprocedure, 'withdraw._desk_admit(bigint)'::regprocedure)
ORDER BY 1::text;

-- case: the role the workers' SQL runs as: no login, no attribute, no membership
SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls
FROM pg_roles WHERE rolname = 'withdraw_worker';
SELECT count(*) AS memberships FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
WHERE r.rolname = 'withdraw_worker';
-- case: it may read and write the extension's tables, call the one function
-- its queries use (opening credentials), and nothing else of ours
SELECT c.relname,
       has_table_privilege('withdraw_worker', c.oid, 'SELECT') AS sel,
       has_table_privilege('withdraw_worker', c.oid, 'INSERT') AS ins,
       has_table_privilege('withdraw_worker', c.oid, 'UPDATE') AS upd,
       has_table_privilege('withdraw_worker', c.oid, 'DELETE') AS del,
       has_table_privilege('withdraw_worker', c.oid, 'TRUNCATE') AS trunc,
       has_table_privilege('withdraw_worker', c.oid, 'TRIGGER') AS trig
FROM pg_class c WHERE c.relnamespace = 'withdraw'::regnamespace AND c.relkind = 'r' ORDER BY 1;
-- and no view: it reads and writes the tables only
SELECT count(*) AS views_the_worker_may_use FROM pg_class c
WHERE c.relnamespace = 'withdraw'::regnamespace AND c.relkind = 'v'
  AND (has_table_privilege('withdraw_worker', c.oid, 'SELECT') OR has_table_privilege('withdraw_worker', c.oid, 'INSERT')
       OR has_table_privilege('withdraw_worker', c.oid, 'UPDATE') OR has_table_privilege('withdraw_worker', c.oid, 'DELETE'));
SELECT p.oid::regprocedure AS worker_may_execute
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'withdraw'
WHERE has_function_privilege('withdraw_worker', p.oid, 'EXECUTE')
  AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
ORDER BY 1::text;

-- case: a C trigger's queries do not take the session's search_path: a
-- session whose path starts with a schema holding an exact-match operator
-- changes a withdrawal's state and the event is recorded by the
-- extension's own query (the planted operator would fail the statement)
CREATE SCHEMA planted;
CREATE FUNCTION planted.refuse(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'planted operator ran'; END $$;
CREATE OPERATOR planted.= (LEFTARG = text, RIGHTARG = text, FUNCTION = planted.refuse);
SELECT withdraw_account_create('hard', 'zoomex', 'https://openapi.zoomex.com',
	'{"api_key": "k", "api_secret": "s"}', '{}') IS NULL AS account;
BEGIN;
SELECT withdraw_create('hard', '{"requestId": "h1", "coin": "USDT", "addressType": 3, "address": "1", "amount": "1"}') > 0 AS created;
SET LOCAL search_path = planted, pg_catalog, public;
UPDATE withdraw.withdrawal SET state = 'cancelled', finished_at = pg_catalog.now() WHERE idempotency_key OPERATOR(pg_catalog.=) 'h1';
SELECT from_state, to_state FROM withdraw.event e JOIN withdraw.withdrawal w ON w.id OPERATOR(pg_catalog.=) e.withdrawal_id
WHERE w.idempotency_key OPERATOR(pg_catalog.=) 'h1' ORDER BY e.id;
ROLLBACK;
DROP SCHEMA planted CASCADE;
SELECT withdraw_account_drop('hard');
