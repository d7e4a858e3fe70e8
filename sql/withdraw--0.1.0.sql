/* withdraw--0.1.0.sql: first release of the withdraw extension */

\echo Use "CREATE EXTENSION withdraw" to load this file. \quit

CREATE SCHEMA withdraw;
COMMENT ON SCHEMA withdraw IS 'Tables and views of the withdraw extension';

-- Roles are cluster-wide and outlive the extension; create them once.
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_user') THEN
		CREATE ROLE withdraw_user NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_admin') THEN
		CREATE ROLE withdraw_admin NOLOGIN;
	END IF;
END
$roles$;

REVOKE ALL ON SCHEMA withdraw FROM PUBLIC;
GRANT USAGE ON SCHEMA withdraw TO withdraw_user, withdraw_admin;

------------------------------------------------------------------------------
-- Tables (read through the views below)
------------------------------------------------------------------------------

CREATE TABLE withdraw.account (
	id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name text NOT NULL UNIQUE
		CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
	provider text NOT NULL,
	base_url text NOT NULL CHECK (base_url ~ '^https?://'),
	options jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE withdraw.account IS 'Provider accounts; secrets are in withdraw.account_secret';

CREATE TABLE withdraw.account_secret (
	account_id integer PRIMARY KEY REFERENCES withdraw.account ON DELETE CASCADE,
	credentials jsonb NOT NULL CHECK (jsonb_typeof(credentials) = 'object')
);
COMMENT ON TABLE withdraw.account_secret IS 'Credentials of each account; readable by the extension owner only';

-- The state machine: every allowed change of withdrawal.state.
CREATE TABLE withdraw.state_transition (
	from_state text NOT NULL,
	to_state text NOT NULL,
	PRIMARY KEY (from_state, to_state)
);
COMMENT ON TABLE withdraw.state_transition IS 'Allowed state changes of a withdrawal; any other is refused';

INSERT INTO withdraw.state_transition (from_state, to_state)
SELECT f, t FROM (VALUES
	('queued', ARRAY['sending', 'cancelled', 'failed']),
	('sending', ARRAY['submitted', 'queued', 'unknown', 'rejected', 'failed', 'review']),
	('unknown', ARRAY['sending', 'submitted', 'processing', 'review', 'succeeded', 'failed',
					  'rejected', 'cancelled', 'expired']),
	('submitted', ARRAY['processing', 'review', 'succeeded', 'failed', 'rejected', 'cancelled', 'expired']),
	('processing', ARRAY['review', 'succeeded', 'failed', 'rejected', 'cancelled', 'expired']),
	('review', ARRAY['processing', 'succeeded', 'failed', 'rejected', 'cancelled', 'expired'])
) AS s(f, ts), unnest(ts) AS t;

CREATE TABLE withdraw.withdrawal (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id integer NOT NULL REFERENCES withdraw.account,
	idempotency_key text NOT NULL,
	request jsonb NOT NULL,
	asset text,
	amount numeric NOT NULL CHECK (amount > 0),
	destination text,
	state text NOT NULL DEFAULT 'queued' CHECK (state IN
		('queued', 'sending', 'submitted', 'processing', 'succeeded', 'failed',
		 'rejected', 'cancelled', 'expired', 'review', 'unknown')),
	provider_status text,
	provider_id text,
	attempts integer NOT NULL DEFAULT 0,
	maybe_delivered boolean NOT NULL DEFAULT false,
	needs_reconcile boolean NOT NULL DEFAULT false,
	reconcile_cursor text,
	last_error text,
	created_by name NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	first_sent_at timestamptz,
	submitted_at timestamptz,
	finished_at timestamptz,
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	next_poll_at timestamptz,
	UNIQUE (account_id, idempotency_key)
);
COMMENT ON TABLE withdraw.withdrawal IS 'One row per withdrawal: the outbox the worker sends from';
COMMENT ON COLUMN withdraw.withdrawal.maybe_delivered IS 'Some attempt may have reached the provider: never declared failed without its word';
COMMENT ON COLUMN withdraw.withdrawal.needs_reconcile IS 'The provider knows the idempotency key: settle by status query only';
COMMENT ON COLUMN withdraw.withdrawal.reconcile_cursor IS 'Where the search of the provider''s list for this withdrawal goes on';

CREATE INDEX withdrawal_due_send ON withdraw.withdrawal (next_attempt_at)
	WHERE state IN ('queued', 'unknown');
CREATE INDEX withdrawal_due_poll ON withdraw.withdrawal (next_poll_at)
	WHERE state IN ('submitted', 'processing', 'review', 'unknown');
CREATE INDEX withdrawal_sending ON withdraw.withdrawal (id) WHERE state = 'sending';
CREATE UNIQUE INDEX withdrawal_provider_id ON withdraw.withdrawal (account_id, provider_id)
	WHERE provider_id IS NOT NULL;

CREATE TABLE withdraw.attempt (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	withdrawal_id bigint NOT NULL REFERENCES withdraw.withdrawal ON DELETE CASCADE,
	kind text NOT NULL CHECK (kind IN ('create', 'status')),
	started_at timestamptz NOT NULL,
	latency_ms double precision,
	method text NOT NULL,
	url text NOT NULL,
	request_body text,
	http_status integer,
	response_body text,
	error text,
	outcome text NOT NULL
);
COMMENT ON TABLE withdraw.attempt IS 'Every HTTP exchange with a provider, secrets redacted';
CREATE INDEX attempt_withdrawal ON withdraw.attempt (withdrawal_id);

-- Records of the providers' own withdrawal lists (withdraw_sync, scheduled syncs).
CREATE TABLE withdraw.remote_withdrawal (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id integer NOT NULL REFERENCES withdraw.account,
	provider_id text NOT NULL,
	withdrawal_id bigint REFERENCES withdraw.withdrawal,
	request_id text,
	asset text,
	amount numeric,
	fee numeric,
	fee_asset text,
	status text,
	state text NOT NULL CHECK (state IN
		('submitted', 'processing', 'succeeded', 'failed', 'rejected', 'cancelled',
		 'expired', 'review')),
	txid text,
	block_number bigint,
	chain_id text,
	nonce bigint,
	deadline timestamptz,
	requested_at timestamptz,
	confirmed_at timestamptz,
	raw jsonb NOT NULL,
	first_seen_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (account_id, provider_id)
);
COMMENT ON TABLE withdraw.remote_withdrawal IS 'Withdrawals as listed by the provider, kept current by syncs';
CREATE INDEX remote_withdrawal_open ON withdraw.remote_withdrawal (account_id, requested_at)
	WHERE state IN ('submitted', 'processing', 'review');

-- Where each syncing account's scheduled sync stands.
CREATE TABLE withdraw.sync_state (
	account_id integer PRIMARY KEY REFERENCES withdraw.account ON DELETE CASCADE,
	next_sync_at timestamptz NOT NULL DEFAULT now(),
	last_sync_at timestamptz,
	last_error text,
	last_error_at timestamptz,
	failures integer NOT NULL DEFAULT 0,
	high_water timestamptz,
	records_changed bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE withdraw.sync_state IS 'Schedule and outcome of the list syncs of each account';
COMMENT ON COLUMN withdraw.sync_state.high_water IS 'Newest requested_at seen: incremental syncs start from there or from the oldest open record';

CREATE TABLE withdraw.event (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	withdrawal_id bigint REFERENCES withdraw.withdrawal ON DELETE CASCADE,
	remote_withdrawal_id bigint REFERENCES withdraw.remote_withdrawal ON DELETE CASCADE,
	at timestamptz NOT NULL DEFAULT clock_timestamp(),
	from_state text NOT NULL,
	to_state text NOT NULL,
	provider_status text,
	detail text,
	CHECK (num_nonnulls(withdrawal_id, remote_withdrawal_id) = 1)
);
COMMENT ON TABLE withdraw.event IS 'Every state change of a withdrawal (or a remote record) after its creation';
CREATE INDEX event_withdrawal ON withdraw.event (withdrawal_id);
CREATE INDEX event_remote_withdrawal ON withdraw.event (remote_withdrawal_id);

------------------------------------------------------------------------------
-- State changes: checked, stamped, recorded and announced in one place
------------------------------------------------------------------------------

CREATE FUNCTION withdraw.check_transition() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM withdraw.state_transition
				   WHERE from_state = OLD.state AND to_state = NEW.state) THEN
		RAISE EXCEPTION 'withdrawal % cannot change from state % to state %',
			OLD.id, OLD.state, NEW.state
			USING ERRCODE = 'check_violation',
				  HINT = 'The allowed changes are listed in withdraw.state_transition.';
	END IF;
	IF NEW.state IN ('succeeded', 'failed', 'rejected', 'cancelled', 'expired') THEN
		NEW.finished_at := now();
		NEW.next_poll_at := NULL;
	END IF;
	RETURN NEW;
END
$$;

CREATE FUNCTION withdraw.record_transition() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO withdraw.event (withdrawal_id, from_state, to_state, provider_status, detail)
	VALUES (NEW.id, OLD.state, NEW.state, NEW.provider_status, NEW.last_error);
	PERFORM pg_notify('withdraw_status',
					  json_build_object('id', NEW.id, 'state', NEW.state,
										'previous_state', OLD.state,
										'provider_status', NEW.provider_status)::text);
	RETURN NULL;
END
$$;

CREATE FUNCTION withdraw.record_remote_transition() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO withdraw.event (remote_withdrawal_id, from_state, to_state, provider_status)
	VALUES (NEW.id, OLD.state, NEW.state, NEW.status);
	PERFORM pg_notify('withdraw_status',
					  json_build_object('remote_id', NEW.id, 'provider_id', NEW.provider_id,
										'state', NEW.state, 'previous_state', OLD.state,
										'provider_status', NEW.status)::text);
	RETURN NULL;
END
$$;

CREATE TRIGGER record_remote_transition AFTER UPDATE OF state ON withdraw.remote_withdrawal
	FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
	EXECUTE FUNCTION withdraw.record_remote_transition();

CREATE TRIGGER check_transition BEFORE UPDATE OF state ON withdraw.withdrawal
	FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
	EXECUTE FUNCTION withdraw.check_transition();
CREATE TRIGGER record_transition AFTER UPDATE OF state ON withdraw.withdrawal
	FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
	EXECUTE FUNCTION withdraw.record_transition();

------------------------------------------------------------------------------
-- C functions
------------------------------------------------------------------------------

CREATE FUNCTION withdraw._wake() RETURNS void
	AS 'MODULE_PATHNAME', 'withdraw_wake' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION withdraw._wake() IS 'Wakes the worker when the current transaction commits';

CREATE FUNCTION withdraw._calling_role() RETURNS name
	AS 'MODULE_PATHNAME', 'withdraw_calling_role' LANGUAGE C STABLE;
COMMENT ON FUNCTION withdraw._calling_role() IS 'The role that called the current SECURITY DEFINER function';

CREATE FUNCTION withdraw._zoomex_signature(api_secret text, params jsonb) RETURNS text[]
	AS 'MODULE_PATHNAME', 'withdraw_zoomex_signature' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._zoomex_signature(text, jsonb) IS
	'The zoomex string to sign and its signature, the code path the worker uses (for test vectors)';

CREATE FUNCTION withdraw._p99_signature(secret text, query text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_p99_signature' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._p99_signature(text, text) IS
	'The p99 signature of a query string, the code path the worker uses (for test vectors)';

CREATE FUNCTION withdraw._worker_info(
	OUT database text, OUT pid integer, OUT state text, OUT started_at timestamptz,
	OUT heartbeat_at timestamptz, OUT in_flight integer, OUT requests_sent bigint,
	OUT responses bigint, OUT last_error text, OUT last_error_at timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdraw_worker_info' LANGUAGE C VOLATILE;

CREATE FUNCTION withdraw_account_create(name text, provider text, base_url text,
										credentials jsonb, options jsonb DEFAULT '{}')
	RETURNS void
	AS 'MODULE_PATHNAME', 'withdraw_account_create' LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_account_create(text, text, text, jsonb, jsonb) IS
	'Creates a provider account; credentials are stored where only the extension owner reads them';

CREATE FUNCTION withdraw_account_update(name text, base_url text DEFAULT NULL,
										credentials jsonb DEFAULT NULL, options jsonb DEFAULT NULL)
	RETURNS void
	AS 'MODULE_PATHNAME', 'withdraw_account_update' LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_account_update(text, text, jsonb, jsonb) IS
	'Changes an account; NULL arguments leave that part unchanged';

CREATE FUNCTION withdraw_account_drop(name text) RETURNS void
	AS 'MODULE_PATHNAME', 'withdraw_account_drop' LANGUAGE C VOLATILE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_account_drop(text) IS
	'Drops an account that has no withdrawals';

CREATE FUNCTION withdraw_create(provider text, request jsonb) RETURNS bigint
	AS 'MODULE_PATHNAME', 'withdraw_create' LANGUAGE C VOLATILE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_create(text, jsonb) IS
	'Validates and queues a withdrawal on the named account; it is sent after the transaction commits';

------------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------------

CREATE VIEW withdraw.accounts AS
SELECT a.name, a.provider, a.base_url, a.options,
	   ARRAY(SELECT jsonb_object_keys(s.credentials) ORDER BY 1) AS credential_keys,
	   a.created_at, a.updated_at
FROM withdraw.account a
LEFT JOIN withdraw.account_secret s ON s.account_id = a.id;
COMMENT ON VIEW withdraw.accounts IS 'Provider accounts: the names of their credentials, never the values';

CREATE VIEW withdraw.withdrawals AS
SELECT w.id, a.name AS account, a.provider, w.idempotency_key, w.state, w.provider_status,
	   w.provider_id, w.asset, w.amount, w.destination, w.request, w.attempts, w.last_error,
	   w.created_by, w.created_at, w.first_sent_at, w.submitted_at, w.finished_at, w.updated_at,
	   CASE WHEN w.state IN ('queued', 'unknown') AND NOT w.needs_reconcile
			THEN w.next_attempt_at END AS next_attempt_at,
	   w.next_poll_at
FROM withdraw.withdrawal w
JOIN withdraw.account a ON a.id = w.account_id;
COMMENT ON VIEW withdraw.withdrawals IS 'One row per withdrawal with its current state';

CREATE VIEW withdraw.attempts AS
SELECT t.id, t.withdrawal_id, a.name AS account, a.provider, t.kind, t.started_at, t.latency_ms,
	   t.method, t.url, t.request_body, t.http_status, t.response_body, t.error, t.outcome
FROM withdraw.attempt t
JOIN withdraw.withdrawal w ON w.id = t.withdrawal_id
JOIN withdraw.account a ON a.id = w.account_id;
COMMENT ON VIEW withdraw.attempts IS 'Every HTTP exchange with a provider, secrets and signatures redacted';

CREATE VIEW withdraw.events AS
SELECT e.withdrawal_id, e.remote_withdrawal_id, e.at, e.from_state, e.to_state, e.provider_status, e.detail
FROM withdraw.event e
UNION ALL
SELECT w.id, NULL, w.created_at, NULL, 'queued', NULL, 'created by ' || w.created_by
FROM withdraw.withdrawal w;
COMMENT ON VIEW withdraw.events IS 'Every state change of every withdrawal, its creation included';

CREATE VIEW withdraw.stats AS
SELECT a.name AS account, a.provider,
	   count(w.id) AS withdrawals,
	   count(w.id) FILTER (WHERE w.state = 'queued') AS queued,
	   count(w.id) FILTER (WHERE w.state IN ('sending', 'submitted', 'processing', 'review', 'unknown')) AS open,
	   count(w.id) FILTER (WHERE w.state = 'succeeded') AS succeeded,
	   count(w.id) FILTER (WHERE w.state IN ('failed', 'rejected', 'expired')) AS failed,
	   count(w.id) FILTER (WHERE w.state = 'cancelled') AS cancelled,
	   count(w.id) FILTER (WHERE w.state IN ('review', 'unknown')) AS needs_attention,
	   round(100.0 * count(w.id) FILTER (WHERE w.state = 'succeeded')
			 / nullif(count(w.id) FILTER (WHERE w.state IN ('succeeded', 'failed', 'rejected', 'expired')), 0),
			 2) AS success_rate_pct,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM w.submitted_at - w.created_at) * 1000)
		   AS submit_latency_p50_ms,
	   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM w.submitted_at - w.created_at) * 1000)
		   AS submit_latency_p99_ms,
	   (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t.latency_ms)
		FROM withdraw.attempt t JOIN withdraw.withdrawal w2 ON w2.id = t.withdrawal_id
		WHERE w2.account_id = a.id) AS http_latency_p50_ms,
	   (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY t.latency_ms)
		FROM withdraw.attempt t JOIN withdraw.withdrawal w2 ON w2.id = t.withdrawal_id
		WHERE w2.account_id = a.id) AS http_latency_p99_ms
FROM withdraw.account a
LEFT JOIN withdraw.withdrawal w ON w.account_id = a.id
GROUP BY a.id, a.name, a.provider;
COMMENT ON VIEW withdraw.stats IS 'Counts, success rate and latency percentiles by account';

CREATE VIEW withdraw.remote_withdrawals AS
SELECT r.id, a.name AS account, a.provider, r.provider_id, r.request_id, r.withdrawal_id,
	   r.state, r.status, r.asset, r.amount, r.fee, r.fee_asset, r.txid, r.block_number,
	   r.chain_id, r.nonce, r.deadline, r.requested_at, r.confirmed_at, r.first_seen_at,
	   r.updated_at, r.raw
FROM withdraw.remote_withdrawal r
JOIN withdraw.account a ON a.id = r.account_id;
COMMENT ON VIEW withdraw.remote_withdrawals IS 'Withdrawals as listed by their provider, with our state beside the provider''s status';

CREATE VIEW withdraw.syncs AS
SELECT a.name AS account, a.provider, s.last_sync_at, s.next_sync_at, s.high_water,
	   s.records_changed, s.failures, s.last_error, s.last_error_at
FROM withdraw.sync_state s
JOIN withdraw.account a ON a.id = s.account_id;
COMMENT ON VIEW withdraw.syncs IS 'The list syncs of each account: when, how far, and the last failure';

CREATE VIEW withdraw.workers AS
SELECT * FROM withdraw._worker_info();
COMMENT ON VIEW withdraw.workers IS 'The background worker: heartbeat, requests in flight, last error';

------------------------------------------------------------------------------
-- SQL functions
------------------------------------------------------------------------------

CREATE FUNCTION withdraw_status(id bigint) RETURNS withdraw.withdrawals
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
	SELECT * FROM withdraw.withdrawals w WHERE w.id = withdraw_status.id
$$;
COMMENT ON FUNCTION withdraw_status(bigint) IS 'The withdrawal with this id';

CREATE FUNCTION withdraw_status(provider text, request_id text) RETURNS withdraw.withdrawals
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
	SELECT * FROM withdraw.withdrawals w
	WHERE w.account = withdraw_status.provider AND w.idempotency_key = withdraw_status.request_id
$$;
COMMENT ON FUNCTION withdraw_status(text, text) IS 'The withdrawal of this account with this idempotency key';

CREATE FUNCTION withdraw_cancel(id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	current_state text;
BEGIN
	-- waits for the worker if it is claiming this row right now
	SELECT w.state INTO current_state FROM withdraw.withdrawal w
	WHERE w.id = withdraw_cancel.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'withdrawal % does not exist', withdraw_cancel.id
			USING ERRCODE = 'no_data_found';
	END IF;
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
	'Cancels a withdrawal that nothing was sent for yet; false when it is too late';

CREATE FUNCTION withdraw_refresh(id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE withdraw.withdrawal w
	SET next_poll_at = CASE WHEN w.state <> 'unknown' OR w.needs_reconcile THEN now() END,
		next_attempt_at = CASE WHEN w.state = 'unknown' AND NOT w.needs_reconcile
							   THEN now() ELSE w.next_attempt_at END
	WHERE w.id = withdraw_refresh.id
	  AND w.state IN ('submitted', 'processing', 'review', 'unknown');
	IF NOT FOUND THEN
		IF NOT EXISTS (SELECT 1 FROM withdraw.withdrawal w WHERE w.id = withdraw_refresh.id) THEN
			RAISE EXCEPTION 'withdrawal % does not exist', withdraw_refresh.id
				USING ERRCODE = 'no_data_found';
		END IF;
		RETURN false;
	END IF;
	PERFORM withdraw._wake();
	RETURN true;
END
$$;
COMMENT ON FUNCTION withdraw_refresh(bigint) IS
	'Asks the worker to poll the withdrawal''s status now; false when it is not open at the provider';

CREATE FUNCTION withdraw_sync(account text, filters jsonb DEFAULT '{}') RETURNS integer
	AS 'MODULE_PATHNAME', 'withdraw_sync' LANGUAGE C VOLATILE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_sync(text, jsonb) IS
	'Fetches the account''s withdrawal list from its provider now, into withdraw.remote_withdrawals; returns the records added or changed';

CREATE FUNCTION withdraw._refresh_remote(account text, provider_id text) RETURNS void
	AS 'MODULE_PATHNAME', 'withdraw_refresh_remote' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION withdraw_refresh(account text, provider_id text) RETURNS withdraw.remote_withdrawals
LANGUAGE sql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT withdraw._refresh_remote(account, provider_id);
	SELECT * FROM withdraw.remote_withdrawals r
	WHERE r.account = withdraw_refresh.account AND r.provider_id = withdraw_refresh.provider_id
$$;
COMMENT ON FUNCTION withdraw_refresh(text, text) IS
	'Looks one record of the provider''s list up now and returns it as stored';

------------------------------------------------------------------------------
-- Privileges: withdraw_user creates, reads and cancels; withdraw_admin also
-- manages accounts; nobody but the owner reads secrets.
------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA withdraw FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA withdraw FROM PUBLIC;
REVOKE ALL ON FUNCTION withdraw_account_create(text, text, text, jsonb, jsonb),
	withdraw_account_update(text, text, jsonb, jsonb), withdraw_account_drop(text),
	withdraw_create(text, jsonb), withdraw_status(bigint), withdraw_status(text, text),
	withdraw_cancel(bigint), withdraw_refresh(bigint), withdraw_sync(text, jsonb),
	withdraw_refresh(text, text) FROM PUBLIC;

GRANT SELECT ON withdraw.withdrawals, withdraw.attempts, withdraw.events, withdraw.stats,
	withdraw.workers, withdraw.remote_withdrawals TO withdraw_user, withdraw_admin;
GRANT SELECT ON withdraw.syncs TO withdraw_admin;
GRANT EXECUTE ON FUNCTION withdraw_sync(text, jsonb), withdraw_refresh(text, text) TO withdraw_admin;
GRANT SELECT ON withdraw.accounts, withdraw.state_transition TO withdraw_admin;
GRANT EXECUTE ON FUNCTION withdraw_create(text, jsonb), withdraw_status(bigint),
	withdraw_status(text, text), withdraw_cancel(bigint), withdraw_refresh(bigint)
	TO withdraw_user, withdraw_admin;
GRANT EXECUTE ON FUNCTION withdraw_account_create(text, text, text, jsonb, jsonb),
	withdraw_account_update(text, text, jsonb, jsonb), withdraw_account_drop(text)
	TO withdraw_admin;
GRANT EXECUTE ON FUNCTION withdraw._worker_info() TO withdraw_user, withdraw_admin;
