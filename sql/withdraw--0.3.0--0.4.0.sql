/* withdraw--0.3.0--0.4.0.sql: the second security round (see README, Security):
   search_path pinned wherever SQL runs on another role's behalf;
   the workers' SQL runs as the non-superuser role withdraw_worker; (further
   sections below, one per concern) */

\echo Use "ALTER EXTENSION withdraw UPDATE TO '0.4.0'" to load this file. \quit

-- == search_path: pinned wherever SQL runs on another role's behalf ==
-- Every SECURITY DEFINER function has been declared with it from the start;
-- withdraw._refresh_remote runs SQL too, and is called only by one of them,
-- but a function that runs SQL does not rely on its caller for this.  The
-- C triggers pin it themselves around their queries (src/session.c).
ALTER FUNCTION withdraw._refresh_remote(text, text) SET search_path = pg_catalog, pg_temp;

-- == the workers' role ==
-- The workers connect as the bootstrap superuser (they start before any
-- role of ours exists) but run every transaction's SQL as this role, in a
-- security-restricted context (src/session.c): a function or operator
-- planted where their SQL could find it would run without superuser
-- rights.  NOLOGIN: nobody connects as it.  It gets the extension's tables
-- and the one function its queries call, nothing else.
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_worker') THEN
		CREATE ROLE withdraw_worker NOLOGIN;
	END IF;
END
$roles$;
COMMENT ON ROLE withdraw_worker IS 'The role as which the withdraw background workers run their SQL';
GRANT USAGE ON SCHEMA withdraw TO withdraw_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA withdraw TO withdraw_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA withdraw TO withdraw_worker;
GRANT EXECUTE ON FUNCTION withdraw._credentials(integer, bytea, text) TO withdraw_worker;

-- == network: credentials bound to their host ==

-- == poison answers: quarantine ==

-- == credentials in logs, ownership and privacy ==

-- == callbacks: bounded storage, freshness ==
