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

-- A chainup notification of a failure is not applied on its word: it makes the
-- withdrawal due for a status poll (verdict 'confirming'), whose sealed answer decides.
ALTER TABLE withdraw.callback DROP CONSTRAINT callback_verdict_check;
ALTER TABLE withdraw.callback ADD CONSTRAINT callback_verdict_check CHECK (verdict IN
	('applied', 'unchanged', 'deferred', 'unmatched', 'recorded', 'confirmed', 'refused', 'rejected',
	 'confirming'));
COMMENT ON COLUMN withdraw.callback.verdict IS
	'applied (state changed), unchanged (repeat or stale), deferred (its create in flight: not acknowledged, the provider repeats it), unmatched (not ours), recorded (deposit), confirmed, refused (authentic but wrong, or outside the account''s window), rejected (not authentic; no content kept), confirming (a state the provider cannot vouch for alone: a status poll decides)';
COMMENT ON TABLE withdraw.callback IS
	'Every provider callback received: notifications, deposits, second confirmations; content only once authenticated; pruned after withdraw.retention';
-- the worker prunes withdraw.callback with the rest of the history
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_worker') THEN
		GRANT SELECT, DELETE ON withdraw.callback TO withdraw_worker;
	END IF;
END
$$;
