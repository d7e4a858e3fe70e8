/* withdraw--0.3.0--0.4.0.sql: the second security round (see README, Security):
   every SECURITY DEFINER function pinned to search_path = pg_catalog, pg_temp;
   the workers' SQL runs as the non-superuser role withdraw_worker; (further
   sections below, one per concern) */

\echo Use "ALTER EXTENSION withdraw UPDATE TO '0.4.0'" to load this file. \quit

-- == search_path: pinned on every SECURITY DEFINER function ==

-- == the workers' role ==

-- == network: credentials bound to their host ==

-- == poison answers: quarantine ==

-- A withdrawal whose answer could not be handled (reading it raised an
-- error, or the worker stopped while reading it) gets a strike; an answer
-- read normally clears them.  At withdraw.quarantine_after strikes it goes
-- to review with the reason, and the other withdrawals keep flowing.
ALTER TABLE withdraw.withdrawal
	ADD COLUMN strikes smallint NOT NULL DEFAULT 0,
	ADD COLUMN polling boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN withdraw.withdrawal.strikes IS
	'Handlings of this withdrawal''s answers that failed in a row (an error, or the worker stopped while reading it); at withdraw.quarantine_after it goes to review';
COMMENT ON COLUMN withdraw.withdrawal.polling IS
	'A status query of this withdrawal is in flight (set when claimed, cleared when its outcome is recorded)';

-- An account whose credentials cannot be opened (their key is not
-- configured, or they do not authenticate) is not sent for; the others are.
CREATE FUNCTION withdraw._credentials_problem(account_id integer, sealed bytea, key_id text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_credentials_problem' LANGUAGE C STABLE;
COMMENT ON FUNCTION withdraw._credentials_problem(integer, bytea, text) IS
	'Why an account''s sealed credentials cannot be opened, or NULL when they can (never a secret)';
REVOKE ALL ON FUNCTION withdraw._credentials_problem(integer, bytea, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdraw._credentials_problem(integer, bytea, text) TO withdraw_admin;
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_worker') THEN
		GRANT EXECUTE ON FUNCTION withdraw._credentials_problem(integer, bytea, text) TO withdraw_worker;
	END IF;
END
$$;

CREATE OR REPLACE VIEW withdraw.accounts AS
SELECT a.name, a.provider, a.base_url, a.options,
	   coalesce(s.credential_keys, ARRAY(SELECT jsonb_object_keys(s.credentials) ORDER BY 1)) AS credential_keys,
	   a.created_at, a.updated_at,
	   CASE WHEN s.account_id IS NULL THEN 'the account has no credentials'
			WHEN s.credentials IS NULL
			THEN withdraw._credentials_problem(s.account_id, s.sealed, s.key_id) END AS not_sending
FROM withdraw.account a
LEFT JOIN withdraw.account_secret s ON s.account_id = a.id;
COMMENT ON COLUMN withdraw.accounts.not_sending IS
	'Why the workers send nothing for this account (its credentials cannot be opened), or NULL';

-- == credentials in logs, ownership and privacy ==

-- == callbacks: bounded storage, freshness ==
