/* withdraw--0.3.0--0.4.0.sql: the second security round (README, Security).
   - withdraw._refresh_remote pinned to search_path = pg_catalog, pg_temp
   - role withdraw_worker (NOLOGIN), as which the workers run their SQL,
     with DML on the extension's tables and the functions that open
     credentials
   - withdraw.withdrawal.strikes and polling (quarantine of poison answers);
     withdraw._credentials_problem(); withdraw.accounts.not_sending
   - role withdraw_auditor; withdraw.withdrawals, attempts, events,
     remote_withdrawals and callbacks redefined as security barriers that
     show a withdraw_user its own withdrawals, personal data masked;
     withdraw_cancel and withdraw_refresh(id) follow the same rule
   - withdraw.callback: verdict 'confirming' */

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
-- and the functions its queries call to open credentials, nothing else.
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

-- (Credentials in logs needs no schema change: see src/accounts.c.)
--
-- Who sees what.  Each withdrawal names the role that created it
-- (created_by, the session's role: withdraw._calling_role()).  A
-- withdraw_user sees, refreshes and cancels only the withdrawals its own
-- role created; members of withdraw_auditor (read-only) and withdraw_admin
-- (operators: may also cancel) see all of them.  Personal data in a request
-- (bank account numbers, account holder and real names, the member's IP,
-- e-mail and phone destinations, Cwallet users) is shown only to the role
-- that created the withdrawal and to roles that can read the tables anyway
-- (the extension's owner, superusers, the workers); everyone else sees it
-- masked in withdraw.withdrawals, withdraw.attempts and withdraw.callbacks.
-- The views are security barriers, so a function in a query's WHERE clause
-- never sees a row or a value the view hides.

DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_auditor') THEN
		CREATE ROLE withdraw_auditor NOLOGIN;
	END IF;
END
$roles$;
GRANT USAGE ON SCHEMA withdraw TO withdraw_auditor;

CREATE FUNCTION withdraw._sees_all() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT pg_catalog.pg_has_role(withdraw._calling_role(), 'withdraw_auditor', 'USAGE')
		OR pg_catalog.pg_has_role(withdraw._calling_role(), 'withdraw_admin', 'USAGE')
		OR pg_catalog.has_table_privilege(withdraw._calling_role(), 'withdraw.withdrawal', 'SELECT')
$$;
COMMENT ON FUNCTION withdraw._sees_all() IS
	'The calling role sees every withdrawal (withdraw_auditor, withdraw_admin, readers of the tables), not only its own';

CREATE FUNCTION withdraw._sees_personal_data() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT pg_catalog.has_table_privilege(withdraw._calling_role(), 'withdraw.withdrawal', 'SELECT')
$$;
COMMENT ON FUNCTION withdraw._sees_personal_data() IS
	'The calling role sees personal data of withdrawals it did not create (it can read the tables anyway)';

CREATE FUNCTION withdraw._cancels_all() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT pg_catalog.pg_has_role(withdraw._calling_role(), 'withdraw_admin', 'USAGE')
		OR pg_catalog.has_table_privilege(withdraw._calling_role(), 'withdraw.withdrawal', 'UPDATE')
$$;
COMMENT ON FUNCTION withdraw._cancels_all() IS
	'The calling role may cancel and refresh any withdrawal (withdraw_admin, writers of the tables), not only its own';

-- ****1234 for an identifier of 8 characters or more, **** otherwise
CREATE FUNCTION withdraw._mask(value text, keep_tail boolean) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN keep_tail AND length(value) >= 8 THEN '****' || right(value, 4) ELSE '****' END
$$;
COMMENT ON FUNCTION withdraw._mask(text, boolean) IS
	'A personal value masked: its last 4 characters kept when asked and it has at least 8';

CREATE FUNCTION withdraw._mask_personal(doc jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	masked jsonb := '{}';
	k text;
	v jsonb;
BEGIN
	IF jsonb_typeof(doc) = 'array' THEN
		RETURN (SELECT coalesce(jsonb_agg(withdraw._mask_personal(e) ORDER BY n), '[]')
				FROM jsonb_array_elements(doc) WITH ORDINALITY AS x(e, n));
	ELSIF jsonb_typeof(doc) IS DISTINCT FROM 'object' THEN
		RETURN doc;
	END IF;
	FOR k, v IN SELECT key, value FROM jsonb_each(doc) LOOP
		IF jsonb_typeof(v) NOT IN ('string', 'number') THEN
			masked := masked || jsonb_build_object(k, withdraw._mask_personal(v));
		ELSIF k IN ('bank_no', 'cwalletUser')
			  OR (k = 'address' AND doc->>'addressType' IN ('1', '2')) THEN
			masked := masked || jsonb_build_object(k, withdraw._mask(v #>> '{}', true));
		ELSIF k IN ('bank_account', 'user_name', 'userip') THEN
			masked := masked || jsonb_build_object(k, withdraw._mask(v #>> '{}', false));
		ELSE
			masked := masked || jsonb_build_object(k, v);
		END IF;
	END LOOP;
	RETURN masked;
END
$$;
COMMENT ON FUNCTION withdraw._mask_personal(jsonb) IS
	'A request or answer with its personal fields masked: bank_no, cwalletUser, e-mail and phone addresses (last 4 kept), bank_account, user_name, userip';

-- a JSON body masked; any other body is kept as it is (the providers'
-- requests are JSON, and what is not JSON is not one of ours)
CREATE FUNCTION withdraw._mask_body(body text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF body !~ '^\s*[\[{]' THEN
		RETURN body;
	END IF;
	RETURN withdraw._mask_personal(body::jsonb)::text;
EXCEPTION WHEN others THEN
	RETURN '(masked: not readable as JSON)';
END
$$;
COMMENT ON FUNCTION withdraw._mask_body(text) IS
	'An HTTP body with its personal fields masked (JSON bodies; others as they are)';

-- the destination column holds one of the request's fields
CREATE FUNCTION withdraw._mask_destination(destination text, request jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN destination IN (request->>'bank_no', request->>'cwalletUser',
									  CASE WHEN request->>'addressType' IN ('1', '2')
										   THEN request->>'address' END)
				THEN withdraw._mask(destination, true) ELSE destination END
$$;
COMMENT ON FUNCTION withdraw._mask_destination(text, jsonb) IS
	'A withdrawal''s destination, masked when it is personal data (a bank account number, an e-mail or phone)';

CREATE OR REPLACE VIEW withdraw.withdrawals WITH (security_barrier) AS
SELECT w.id, a.name AS account, a.provider, w.idempotency_key, w.state, w.provider_status,
	   w.provider_id, w.asset, w.amount,
	   CASE WHEN w.created_by = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_personal_data())
			THEN w.destination ELSE withdraw._mask_destination(w.destination, w.request) END AS destination,
	   CASE WHEN w.created_by = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_personal_data())
			THEN w.request ELSE withdraw._mask_personal(w.request) END AS request,
	   w.attempts, w.last_error,
	   w.created_by, w.created_at, w.first_sent_at, w.submitted_at, w.finished_at, w.updated_at,
	   CASE WHEN w.state IN ('queued', 'unknown') AND NOT w.needs_reconcile
			THEN w.next_attempt_at END AS next_attempt_at,
	   w.next_poll_at,
	   w.details->>'txid' AS txid,
	   (w.details->>'confirmations')::bigint AS confirmations,
	   (w.details->>'fee')::numeric AS fee,
	   w.details->>'fee_asset' AS fee_asset,
	   (w.details->>'real_fee')::numeric AS real_fee,
	   w.details->>'real_fee_asset' AS real_fee_asset,
	   w.details
FROM withdraw.withdrawal w
JOIN withdraw.account a ON a.id = w.account_id
WHERE w.created_by = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_all());
COMMENT ON VIEW withdraw.withdrawals IS
	'One row per withdrawal with its current state: a withdraw_user sees those its role created; personal data masked but for their creator';

CREATE OR REPLACE VIEW withdraw.attempts WITH (security_barrier) AS
SELECT t.id, t.withdrawal_id, a.name AS account, a.provider, t.kind, t.started_at, t.latency_ms,
	   t.method, t.url,
	   CASE WHEN w.created_by = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_personal_data())
			THEN t.request_body ELSE withdraw._mask_body(t.request_body) END AS request_body,
	   t.http_status,
	   CASE WHEN w.created_by = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_personal_data())
			THEN t.response_body ELSE withdraw._mask_body(t.response_body) END AS response_body,
	   t.error, t.outcome
FROM withdraw.attempt t
JOIN withdraw.withdrawal w ON w.id = t.withdrawal_id
JOIN withdraw.account a ON a.id = w.account_id
WHERE w.created_by = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_all());
COMMENT ON VIEW withdraw.attempts IS
	'Every HTTP exchange with a provider, secrets and signatures redacted; rows and personal data as in withdraw.withdrawals';

CREATE OR REPLACE VIEW withdraw.events WITH (security_barrier) AS
SELECT e.withdrawal_id, e.remote_withdrawal_id, e.at, e.from_state, e.to_state, e.provider_status, e.detail
FROM withdraw.event e
WHERE (SELECT withdraw._sees_all())
   OR EXISTS (SELECT FROM withdraw.withdrawal w
			  WHERE w.id = e.withdrawal_id AND w.created_by = (SELECT withdraw._calling_role()))
   OR EXISTS (SELECT FROM withdraw.remote_withdrawal r JOIN withdraw.withdrawal w ON w.id = r.withdrawal_id
			  WHERE r.id = e.remote_withdrawal_id AND w.created_by = (SELECT withdraw._calling_role()))
UNION ALL
SELECT w.id, NULL, w.created_at, NULL, 'queued', NULL, 'created by ' || w.created_by
FROM withdraw.withdrawal w
WHERE w.created_by = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_all())
UNION ALL
SELECT c.withdrawal_id, NULL, c.received_at, NULL, NULL, NULL,
	   c.kind || ' callback refused: ' || coalesce(c.detail, '')
FROM withdraw.callback c
JOIN withdraw.withdrawal w ON w.id = c.withdrawal_id
WHERE c.verdict = 'refused'
  AND (w.created_by = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_all()));
COMMENT ON VIEW withdraw.events IS
	'Every state change of every withdrawal, its creation included; rows as in withdraw.withdrawals';

CREATE OR REPLACE VIEW withdraw.remote_withdrawals WITH (security_barrier) AS
SELECT r.id, a.name AS account, a.provider, r.provider_id, r.request_id, r.withdrawal_id,
	   r.state, r.status, r.asset, r.amount, r.fee, r.fee_asset, r.txid, r.block_number,
	   r.chain_id, r.nonce, r.deadline, r.requested_at, r.confirmed_at, r.first_seen_at,
	   r.updated_at, r.raw, r.confirmations, r.real_fee, r.real_fee_asset
FROM withdraw.remote_withdrawal r
JOIN withdraw.account a ON a.id = r.account_id
WHERE (SELECT withdraw._sees_all())
   OR EXISTS (SELECT FROM withdraw.withdrawal w
			  WHERE w.id = r.withdrawal_id AND w.created_by = (SELECT withdraw._calling_role()));
COMMENT ON VIEW withdraw.remote_withdrawals IS
	'Withdrawals as listed by their provider, with our state beside the provider''s status; a withdraw_user sees those of its own withdrawals';

CREATE OR REPLACE VIEW withdraw.callbacks WITH (security_barrier) AS
SELECT c.id, a.name AS account, a.provider, c.kind, c.verdict, c.withdrawal_id, c.idempotency_key,
	   c.detail,
	   CASE WHEN (SELECT withdraw._sees_personal_data())
				 OR EXISTS (SELECT FROM withdraw.withdrawal w
							WHERE w.id = c.withdrawal_id AND w.created_by = (SELECT withdraw._calling_role()))
			THEN c.content ELSE withdraw._mask_personal(c.content) END AS content,
	   c.received_at
FROM withdraw.callback c
JOIN withdraw.account a ON a.id = c.account_id;
COMMENT ON VIEW withdraw.callbacks IS
	'Provider callbacks received (notifications, deposits, second confirmations) and what was made of them; personal data masked';

-- withdraw_cancel and withdraw_refresh: only the creating role, or an operator
CREATE OR REPLACE FUNCTION withdraw_cancel(id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	current_state text;
	creator name;
BEGIN
	-- created_by never changes: check it before taking the row's lock
	SELECT w.created_by INTO creator FROM withdraw.withdrawal w WHERE w.id = withdraw_cancel.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'withdrawal % does not exist', withdraw_cancel.id
			USING ERRCODE = 'no_data_found';
	END IF;
	IF creator <> withdraw._calling_role() AND NOT withdraw._cancels_all() THEN
		RAISE EXCEPTION 'withdrawal % was created by another role', withdraw_cancel.id
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A role cancels only the withdrawals it created; nothing was changed.',
				  HINT = 'Cancel it as the role that created it, or as a member of withdraw_admin.';
	END IF;
	-- waits for the worker if it is claiming this row right now
	SELECT w.state INTO current_state FROM withdraw.withdrawal w
	WHERE w.id = withdraw_cancel.id FOR UPDATE;
	IF current_state <> 'queued' THEN
		RETURN false;
	END IF;
	UPDATE withdraw.withdrawal w
	SET state = 'cancelled', last_error = 'cancelled by ' || withdraw._calling_role(), updated_at = now()
	WHERE w.id = withdraw_cancel.id;
	RETURN true;
END
$$;
COMMENT ON FUNCTION withdraw_cancel(bigint) IS
	'Cancels a withdrawal that nothing was sent for yet (one the calling role created, or any for withdraw_admin); false when it is too late';

CREATE OR REPLACE FUNCTION withdraw_refresh(id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	creator name;
BEGIN
	SELECT w.created_by INTO creator FROM withdraw.withdrawal w WHERE w.id = withdraw_refresh.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'withdrawal % does not exist', withdraw_refresh.id
			USING ERRCODE = 'no_data_found';
	END IF;
	IF creator <> withdraw._calling_role() AND NOT withdraw._cancels_all() THEN
		RAISE EXCEPTION 'withdrawal % was created by another role', withdraw_refresh.id
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A role asks for polls only of the withdrawals it created.',
				  HINT = 'Ask as the role that created it, or as a member of withdraw_admin.';
	END IF;
	UPDATE withdraw.withdrawal w
	SET next_poll_at = CASE WHEN w.state <> 'unknown' OR w.needs_reconcile THEN now() END,
		next_attempt_at = CASE WHEN w.state = 'unknown' AND NOT w.needs_reconcile
							   THEN now() ELSE w.next_attempt_at END
	WHERE w.id = withdraw_refresh.id
	  AND w.state IN ('submitted', 'processing', 'review', 'unknown');
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	PERFORM withdraw._wake();
	RETURN true;
END
$$;
COMMENT ON FUNCTION withdraw_refresh(bigint) IS
	'Asks the worker to poll the withdrawal''s status now (one the calling role created, or any for withdraw_admin); false when it is not open at the provider';

REVOKE ALL ON FUNCTION withdraw._sees_all(), withdraw._sees_personal_data(), withdraw._cancels_all(),
	withdraw._mask(text, boolean), withdraw._mask_personal(jsonb), withdraw._mask_body(text),
	withdraw._mask_destination(text, jsonb) FROM PUBLIC;
-- the views call these as the querying role
GRANT EXECUTE ON FUNCTION withdraw._calling_role(), withdraw._sees_all(), withdraw._sees_personal_data(),
	withdraw._mask(text, boolean), withdraw._mask_personal(jsonb), withdraw._mask_body(text),
	withdraw._mask_destination(text, jsonb)
	TO withdraw_user, withdraw_admin, withdraw_auditor;
GRANT SELECT ON withdraw.withdrawals, withdraw.attempts, withdraw.events, withdraw.stats,
	withdraw.workers, withdraw.remote_withdrawals, withdraw.form_rules, withdraw.callbacks,
	withdraw.accounts, withdraw.syncs, withdraw.state_transition TO withdraw_auditor;
GRANT EXECUTE ON FUNCTION withdraw_status(bigint), withdraw_status(text, text), withdraw._worker_info()
	TO withdraw_auditor;

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
