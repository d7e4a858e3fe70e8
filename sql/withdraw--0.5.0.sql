/* withdraw--0.5.0.sql: the whole schema of version 0.5.0, for a fresh install.

   CREATE EXTENSION withdraw runs this file alone.  A database installed at an
   older version reaches the same objects by ALTER EXTENSION withdraw UPDATE,
   through withdraw--0.1.0.sql and the upgrade scripts withdraw--A--B.sql,
   which are never edited once released.  This file is the one to read: every
   object as it stands after all the upgrades (the functions replaced along the
   way appear only in their last form, the foreign keys and indexes that an
   upgrade dropped or rebuilt only as they are now).

   Keeping it in step: every change of the schema goes into BOTH the upgrade
   script of the new version (withdraw--A--B.sql, frozen once released) and
   the full script of that version.  When version B opens, this file becomes
   withdraw--B.sql (git mv, and the Makefile's DATA), and each change is
   made where its object lives here, as if it had always been so: a column
   added goes into its CREATE TABLE (last, where ALTER TABLE ADD COLUMN puts
   it), a function replaced is replaced in place, a grant joins section 11.
   (Version A still installs, as 0.1.0 updated step by step.)  The pg_regress
   test sql/catalog.sql installs this file, then 0.1.0 updated step by step,
   and prints every difference between the two catalogs (columns, defaults,
   constraints, indexes, triggers, functions, views, privileges, comments,
   config tables, roles): it fails until both agree.

   Layout (one section per concern; the objects of a concern stay together):
     1. the schema
     2. accounts and secrets
     3. withdrawals and the state machine
     4. remote lists (the providers' own withdrawal lists, and their syncs;
        before 5, as an event may name a remote record)
     5. attempts and events
     6. form rules
     7. callbacks; then the tables and sequences pg_dump keeps
     8. the workers and the session (C helpers the views and functions use)
     9. who sees what (ownership and masking), and the views
    10. API functions, by concern; test vectors for the signing code
    11. roles and grants
    12. the 0.5.0 additions (placeholder)
   Names in the extension's own schema (the API functions: withdraw_create ...)
   are unqualified, as in the upgrade scripts: CREATE EXTENSION puts them in
   the schema it installs into. */

\echo Use "CREATE EXTENSION withdraw" to load this file. \quit

------------------------------------------------------------------------------
-- 1. The schema: tables and views live in withdraw; the API functions in the
--    extension's schema
------------------------------------------------------------------------------

CREATE SCHEMA withdraw;
COMMENT ON SCHEMA withdraw IS 'Tables and views of the withdraw extension';

------------------------------------------------------------------------------
-- 2. Accounts and secrets
--
-- Credentials are sealed at rest with AES-256-GCM under the key in
-- withdraw.secrets_key_file; rows upgraded from 0.1.0 keep their plaintext
-- (credentials) until withdraw_rotate_secrets() seals them: exactly one of
-- the two is set.
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
	credentials jsonb CHECK (jsonb_typeof(credentials) = 'object'),
	sealed bytea,
	key_id text,
	credential_keys text[],
	CONSTRAINT account_secret_sealed_or_plain
		CHECK ((credentials IS NULL) <> (sealed IS NULL) AND (sealed IS NULL) = (key_id IS NULL))
);
COMMENT ON TABLE withdraw.account_secret IS 'Credentials of each account; readable by the extension owner only';
COMMENT ON COLUMN withdraw.account_secret.sealed IS
	'Credentials sealed with AES-256-GCM: nonce || ciphertext || tag, bound to the account id';
COMMENT ON COLUMN withdraw.account_secret.key_id IS
	'The first 8 bytes of the SHA-256 of the sealing key, in hex';

CREATE FUNCTION withdraw._credentials(account_id integer, sealed bytea, key_id text) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'withdraw_open_credentials' LANGUAGE C STABLE;
COMMENT ON FUNCTION withdraw._credentials(integer, bytea, text) IS
	'An account''s credentials, opened with the configured key (the extension''s own queries; owner only)';

-- An account whose credentials cannot be opened (their key is not
-- configured, or they do not authenticate) is not sent for; the others are.
CREATE FUNCTION withdraw._credentials_problem(account_id integer, sealed bytea, key_id text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_credentials_problem' LANGUAGE C STABLE;
COMMENT ON FUNCTION withdraw._credentials_problem(integer, bytea, text) IS
	'Why an account''s sealed credentials cannot be opened, or NULL when they can (never a secret)';

------------------------------------------------------------------------------
-- 3. Withdrawals and the state machine
--
-- Changes of state are checked (check_transition, per row), recorded as
-- events and announced on the channel withdraw_status (record_transitions,
-- once per statement from its transition tables), in C.
------------------------------------------------------------------------------

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

-- Every backend keeps the state machine in memory until the table changes.
CREATE FUNCTION withdraw.state_machine_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdraw_state_machine_changed' LANGUAGE C;
COMMENT ON FUNCTION withdraw.state_machine_changed() IS
	'Trigger: every backend reads withdraw.state_transition again';
CREATE TRIGGER state_machine_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdraw.state_transition
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.state_machine_changed();
COMMENT ON TRIGGER state_machine_changed ON withdraw.state_transition IS
	'A change of the state machine reaches every backend';

-- Columns in the order the upgrades left them: those after next_poll_at
-- came with 0.2.0 (details), 0.3.0 (claimed_by) and 0.4.0 (strikes, polling).
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
	details jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
	claimed_by smallint,
	strikes smallint NOT NULL DEFAULT 0,
	polling boolean NOT NULL DEFAULT false,
	UNIQUE (account_id, idempotency_key)
);
COMMENT ON TABLE withdraw.withdrawal IS 'One row per withdrawal: the outbox the worker sends from';
COMMENT ON COLUMN withdraw.withdrawal.maybe_delivered IS 'Some attempt may have reached the provider: never declared failed without its word';
COMMENT ON COLUMN withdraw.withdrawal.needs_reconcile IS 'The provider knows the idempotency key: settle by status query only';
COMMENT ON COLUMN withdraw.withdrawal.reconcile_cursor IS 'Where the search of the provider''s list for this withdrawal goes on';
COMMENT ON COLUMN withdraw.withdrawal.details IS
	'What the provider reported beyond the state (txid, confirmations, fee, fee_asset, real_fee, real_fee_asset, ...)';
COMMENT ON COLUMN withdraw.withdrawal.claimed_by IS
	'The worker (0 .. withdraw.workers - 1) that last claimed this row for sending or polling';
COMMENT ON COLUMN withdraw.withdrawal.strikes IS
	'Handlings of this withdrawal''s answers that failed in a row (an error, or the worker stopped while reading it); at withdraw.quarantine_after it goes to review';
COMMENT ON COLUMN withdraw.withdrawal.polling IS
	'A status query of this withdrawal is in flight (set when claimed, cleared when its outcome is recorded)';

-- Claims go account by account (src/store.c): due rows by account, then time.
CREATE INDEX withdrawal_due_send ON withdraw.withdrawal (account_id, next_attempt_at, id)
	WHERE state IN ('queued', 'unknown');
CREATE INDEX withdrawal_due_poll ON withdraw.withdrawal (account_id, next_poll_at, id)
	WHERE state IN ('submitted', 'processing', 'review', 'unknown');
CREATE INDEX withdrawal_sending ON withdraw.withdrawal (id) WHERE state = 'sending';
CREATE UNIQUE INDEX withdrawal_provider_id ON withdraw.withdrawal (account_id, provider_id)
	WHERE provider_id IS NOT NULL;

-- Refuses a change of state the state machine does not list; stamps
-- finished_at on a final state.
CREATE FUNCTION withdraw.check_transition() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdraw_check_transition' LANGUAGE C;
COMMENT ON FUNCTION withdraw.check_transition() IS
	'Trigger: refuses a change of state that withdraw.state_transition does not list; a final state stamps finished_at';
CREATE TRIGGER check_transition BEFORE UPDATE OF state ON withdraw.withdrawal
	FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
	EXECUTE FUNCTION withdraw.check_transition();

-- The events of one UPDATE are recorded by one statement-level trigger from
-- its transition tables.  It fires for every UPDATE (a trigger with
-- transition tables cannot name columns) and records only the rows whose
-- state changed.
CREATE FUNCTION withdraw.record_transitions() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdraw_record_transitions' LANGUAGE C;
COMMENT ON FUNCTION withdraw.record_transitions() IS
	'Trigger: records each change of state of an UPDATE in withdraw.event and announces it on withdraw_status';
CREATE TRIGGER record_transitions AFTER UPDATE ON withdraw.withdrawal
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.record_transitions();
COMMENT ON TRIGGER record_transitions ON withdraw.withdrawal IS
	'Every change of state becomes an event and a notification, one INSERT per statement';

------------------------------------------------------------------------------
-- 4. Remote lists: the providers' own withdrawal lists (withdraw_sync,
--    scheduled syncs)
------------------------------------------------------------------------------

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
	confirmations bigint,
	real_fee numeric,
	real_fee_asset text,
	UNIQUE (account_id, provider_id)
);
COMMENT ON TABLE withdraw.remote_withdrawal IS 'Withdrawals as listed by the provider, kept current by syncs';
COMMENT ON COLUMN withdraw.remote_withdrawal.real_fee IS 'The fee actually charged, where the provider reports it apart from the quoted fee';
CREATE INDEX remote_withdrawal_open ON withdraw.remote_withdrawal (account_id, requested_at)
	WHERE state IN ('submitted', 'processing', 'review');

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
COMMENT ON FUNCTION withdraw.record_remote_transition() IS
	'Trigger: records a change of state of a provider''s record as an event and announces it on withdraw_status';
CREATE TRIGGER record_remote_transition AFTER UPDATE OF state ON withdraw.remote_withdrawal
	FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
	EXECUTE FUNCTION withdraw.record_remote_transition();

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

------------------------------------------------------------------------------
-- 5. Attempts and events
--
-- The history tables name their withdrawal without a foreign key (one query
-- per inserted row was 12% of the dispatch rate): one statement-level
-- trigger per table and statement checks all the new rows at once
-- (check_withdrawal_ids, SQLSTATE 23503 as a foreign key), and deleting
-- withdrawals deletes their history (delete_history) as ON DELETE CASCADE
-- did.  What the check does not do that a foreign key did: lock the
-- withdrawal against a concurrent DELETE.  The extension never deletes a
-- withdrawal, and only its owner can.
------------------------------------------------------------------------------

CREATE TABLE withdraw.attempt (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	withdrawal_id bigint NOT NULL,
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

-- An event belongs to a withdrawal or to a remote record, never both; each
-- index holds only the rows that have its column.
CREATE TABLE withdraw.event (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	withdrawal_id bigint,
	remote_withdrawal_id bigint REFERENCES withdraw.remote_withdrawal ON DELETE CASCADE,
	at timestamptz NOT NULL DEFAULT clock_timestamp(),
	from_state text NOT NULL,
	to_state text NOT NULL,
	provider_status text,
	detail text,
	CHECK (num_nonnulls(withdrawal_id, remote_withdrawal_id) = 1)
);
COMMENT ON TABLE withdraw.event IS 'Every state change of a withdrawal (or a remote record) after its creation';
CREATE INDEX event_withdrawal ON withdraw.event (withdrawal_id) WHERE withdrawal_id IS NOT NULL;
CREATE INDEX event_remote_withdrawal ON withdraw.event (remote_withdrawal_id)
	WHERE remote_withdrawal_id IS NOT NULL;

CREATE FUNCTION withdraw.check_withdrawal_ids() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdraw_check_withdrawal_ids' LANGUAGE C;
COMMENT ON FUNCTION withdraw.check_withdrawal_ids() IS
	'Trigger: every withdrawal_id of a statement''s new rows names a withdrawal (in place of a foreign key)';
CREATE TRIGGER check_withdrawal_ids AFTER INSERT ON withdraw.attempt
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.check_withdrawal_ids();
CREATE TRIGGER check_withdrawal_ids_updated AFTER UPDATE ON withdraw.attempt
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.check_withdrawal_ids();
CREATE TRIGGER check_withdrawal_ids AFTER INSERT ON withdraw.event
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.check_withdrawal_ids();
CREATE TRIGGER check_withdrawal_ids_updated AFTER UPDATE ON withdraw.event
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.check_withdrawal_ids();
COMMENT ON TRIGGER check_withdrawal_ids ON withdraw.attempt IS 'Each new attempt names a withdrawal';
COMMENT ON TRIGGER check_withdrawal_ids_updated ON withdraw.attempt IS 'Each changed attempt names a withdrawal';
COMMENT ON TRIGGER check_withdrawal_ids ON withdraw.event IS 'Each new event names a withdrawal (or none)';
COMMENT ON TRIGGER check_withdrawal_ids_updated ON withdraw.event IS 'Each changed event names a withdrawal (or none)';

CREATE FUNCTION withdraw.delete_history() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	DELETE FROM withdraw.attempt a USING old_rows o WHERE a.withdrawal_id = o.id;
	DELETE FROM withdraw.event e USING old_rows o WHERE e.withdrawal_id = o.id;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION withdraw.delete_history() IS
	'Trigger: deleted withdrawals take their attempts and events with them (as ON DELETE CASCADE did)';
CREATE TRIGGER delete_history AFTER DELETE ON withdraw.withdrawal
	REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION withdraw.delete_history();
COMMENT ON TRIGGER delete_history ON withdraw.withdrawal IS
	'Deleted withdrawals take their attempts and events with them';

------------------------------------------------------------------------------
-- 6. Form rules of providers that publish them (fiat_gateway: per pay_code)
------------------------------------------------------------------------------

CREATE TABLE withdraw.form_rule (
	account_id integer NOT NULL REFERENCES withdraw.account ON DELETE CASCADE,
	rule_key text NOT NULL,
	currency text,
	rules jsonb,
	fetched_at timestamptz,
	next_fetch_at timestamptz NOT NULL DEFAULT now(),
	last_error text,
	last_error_at timestamptz,
	PRIMARY KEY (account_id, rule_key)
);
COMMENT ON TABLE withdraw.form_rule IS
	'The provider''s form rules per pay_code, as last fetched; withdraw_create checks requests against them';
CREATE INDEX form_rule_due ON withdraw.form_rule (next_fetch_at);

------------------------------------------------------------------------------
-- 7. Callbacks: every call of withdraw_callback / withdraw_confirm,
--    authentic or not (pruned by the workers after withdraw.retention)
------------------------------------------------------------------------------

CREATE TABLE withdraw.callback (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id integer NOT NULL REFERENCES withdraw.account ON DELETE CASCADE,
	kind text NOT NULL CHECK (kind IN ('withdrawal', 'deposit', 'confirm', 'unknown')),
	verdict text NOT NULL CHECK (verdict IN
		('applied', 'unchanged', 'deferred', 'unmatched', 'recorded', 'confirmed', 'refused', 'rejected',
		 'confirming')),
	withdrawal_id bigint REFERENCES withdraw.withdrawal ON DELETE CASCADE,
	idempotency_key text,
	detail text,
	content jsonb,
	received_at timestamptz NOT NULL DEFAULT now(),
	source inet,
	http_status smallint
);
COMMENT ON TABLE withdraw.callback IS
	'Every provider callback received: notifications, deposits, second confirmations; content only once authenticated; pruned after withdraw.retention';
COMMENT ON COLUMN withdraw.callback.verdict IS
	'applied (state changed), unchanged (repeat or stale), deferred (its create in flight: not acknowledged, the provider repeats it), unmatched (not ours), recorded (deposit), confirmed, refused (authentic but wrong, or outside the account''s window), rejected (not authentic; no content kept), confirming (a state the provider cannot vouch for alone: a status poll decides)';
COMMENT ON COLUMN withdraw.callback.source IS
	'The address the callback came from, as the receiving daemon saw it (X-Forwarded-For only from a trusted proxy); NULL when the SQL function was called directly';
COMMENT ON COLUMN withdraw.callback.http_status IS
	'The HTTP status the callback was answered with (withdraw_receive); NULL when the SQL function was called directly';
CREATE INDEX callback_withdrawal ON withdraw.callback (withdrawal_id) WHERE withdrawal_id IS NOT NULL;
CREATE INDEX callback_received ON withdraw.callback (received_at);

------------------------------------------------------------------------------
-- pg_dump: the tables of an extension are not dumped unless registered; a
-- backup must keep every withdrawal, attempt and event, and the sealed
-- credentials (useless without the key file, which no dump contains), and
-- the identity sequences, so that a restored database goes on numbering.
-- (withdraw.state_transition is the extension's own data: not dumped.)
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('withdraw.account', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.account_secret', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.withdrawal', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.attempt', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.event', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.remote_withdrawal', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.sync_state', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.callback', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.form_rule', '');
-- one call per statement: each updates the extension's catalog row
SELECT pg_catalog.pg_extension_config_dump('withdraw.account_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.withdrawal_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.attempt_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.remote_withdrawal_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.callback_id_seq', '');

------------------------------------------------------------------------------
-- 8. The workers and the session
------------------------------------------------------------------------------

CREATE FUNCTION withdraw._wake() RETURNS void
	AS 'MODULE_PATHNAME', 'withdraw_wake' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION withdraw._wake() IS 'Wakes the worker when the current transaction commits';

CREATE FUNCTION withdraw._calling_role() RETURNS name
	AS 'MODULE_PATHNAME', 'withdraw_calling_role' LANGUAGE C STABLE;
COMMENT ON FUNCTION withdraw._calling_role() IS 'The role that called the current SECURITY DEFINER function';

CREATE FUNCTION withdraw._worker_info(
	OUT worker integer, OUT database text, OUT pid integer, OUT state text,
	OUT started_at timestamptz, OUT heartbeat_at timestamptz, OUT in_flight integer,
	OUT requests_sent bigint, OUT responses bigint, OUT last_error text,
	OUT last_error_at timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdraw_worker_info' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION withdraw._worker_info() IS
	'One row per worker from shared memory, for the view withdraw.workers';

------------------------------------------------------------------------------
-- 9. Who sees what, and the views
--
-- Each withdrawal names the role that created it (created_by, the
-- session's role: withdraw._calling_role()).  A withdraw_user sees,
-- refreshes and cancels only the withdrawals its own role created; members
-- of withdraw_auditor (read-only) and withdraw_admin (operators: may also
-- cancel) see all of them.  Personal data in a request (bank account
-- numbers, account holder and real names, the member's IP, e-mail and phone
-- destinations, Cwallet users) is shown only to the role that created the
-- withdrawal and to roles that can read the tables anyway (the extension's
-- owner, superusers, the workers); everyone else sees it masked in
-- withdraw.withdrawals, withdraw.attempts and withdraw.callbacks.  These
-- views are security barriers, so a function in a query's WHERE clause
-- never sees a row or a value the view hides.
------------------------------------------------------------------------------

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

-- Accounts: the names of the credentials (kept beside the sealed value),
-- never the values; and why the workers send nothing for an account.
CREATE VIEW withdraw.accounts AS
SELECT a.name, a.provider, a.base_url, a.options,
	   coalesce(s.credential_keys, ARRAY(SELECT jsonb_object_keys(s.credentials) ORDER BY 1)) AS credential_keys,
	   a.created_at, a.updated_at,
	   CASE WHEN s.account_id IS NULL THEN 'the account has no credentials'
			WHEN s.credentials IS NULL
			THEN withdraw._credentials_problem(s.account_id, s.sealed, s.key_id) END AS not_sending
FROM withdraw.account a
LEFT JOIN withdraw.account_secret s ON s.account_id = a.id;
COMMENT ON VIEW withdraw.accounts IS 'Provider accounts: the names of their credentials, never the values';
COMMENT ON COLUMN withdraw.accounts.not_sending IS
	'Why the workers send nothing for this account (its credentials cannot be opened), or NULL';

CREATE VIEW withdraw.withdrawals WITH (security_barrier) AS
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

CREATE VIEW withdraw.attempts WITH (security_barrier) AS
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

-- a withdrawal's creation, and a refused confirmation or notification of
-- it, are among its events
CREATE VIEW withdraw.events WITH (security_barrier) AS
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

CREATE VIEW withdraw.remote_withdrawals WITH (security_barrier) AS
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

CREATE VIEW withdraw.syncs AS
SELECT a.name AS account, a.provider, s.last_sync_at, s.next_sync_at, s.high_water,
	   s.records_changed, s.failures, s.last_error, s.last_error_at
FROM withdraw.sync_state s
JOIN withdraw.account a ON a.id = s.account_id;
COMMENT ON VIEW withdraw.syncs IS 'The list syncs of each account: when, how far, and the last failure';

CREATE VIEW withdraw.workers AS
SELECT * FROM withdraw._worker_info();
COMMENT ON VIEW withdraw.workers IS
	'The background workers, one row each: heartbeat, requests in flight, last error';

CREATE VIEW withdraw.callbacks WITH (security_barrier) AS
SELECT c.id, a.name AS account, a.provider, c.kind, c.verdict, c.withdrawal_id, c.idempotency_key,
	   c.detail,
	   CASE WHEN (SELECT withdraw._sees_personal_data())
				 OR EXISTS (SELECT FROM withdraw.withdrawal w
							WHERE w.id = c.withdrawal_id AND w.created_by = (SELECT withdraw._calling_role()))
			THEN c.content ELSE withdraw._mask_personal(c.content) END AS content,
	   c.received_at, c.source, c.http_status
FROM withdraw.callback c
JOIN withdraw.account a ON a.id = c.account_id;
COMMENT ON VIEW withdraw.callbacks IS
	'Provider callbacks received (notifications, deposits, second confirmations) and what was made of them; personal data masked';

CREATE VIEW withdraw.form_rules AS
SELECT a.name AS account, a.provider, r.rule_key AS pay_code, r.currency, r.rules,
	   jsonb_array_length(coalesce(r.rules->'form_fields', '[]')) AS fields,
	   r.fetched_at, r.next_fetch_at, r.last_error, r.last_error_at
FROM withdraw.form_rule r
JOIN withdraw.account a ON a.id = r.account_id;
COMMENT ON VIEW withdraw.form_rules IS
	'Cached form rules per pay_code: what withdraw_create checks requests against';

------------------------------------------------------------------------------
-- 10. API functions.  Every SECURITY DEFINER function pins search_path and
--     schema-qualifies what it names.
------------------------------------------------------------------------------

-- accounts (withdraw_admin)

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

CREATE FUNCTION withdraw_rotate_secrets() RETURNS integer
	AS 'MODULE_PATHNAME', 'withdraw_rotate_secrets' LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_rotate_secrets() IS
	'Re-seals every account''s credentials under withdraw.secrets_key_file; returns how many';

-- withdrawals (withdraw_user): create, read, cancel, ask for a poll

CREATE FUNCTION withdraw_create(provider text, request jsonb) RETURNS bigint
	AS 'MODULE_PATHNAME', 'withdraw_create' LANGUAGE C VOLATILE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_create(text, jsonb) IS
	'Validates and queues a withdrawal on the named account; it is sent after the transaction commits';

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

-- withdraw_cancel and withdraw_refresh: only the creating role, or an operator
CREATE FUNCTION withdraw_cancel(id bigint) RETURNS boolean
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

CREATE FUNCTION withdraw_refresh(id bigint) RETURNS boolean
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

-- remote lists (withdraw_admin)

CREATE FUNCTION withdraw_sync(account text, filters jsonb DEFAULT '{}') RETURNS integer
	AS 'MODULE_PATHNAME', 'withdraw_sync' LANGUAGE C VOLATILE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_sync(text, jsonb) IS
	'Fetches the account''s withdrawal list from its provider now, into withdraw.remote_withdrawals; returns the records added or changed';

-- runs SQL, so it pins search_path although only withdraw_refresh calls it
CREATE FUNCTION withdraw._refresh_remote(account text, provider_id text) RETURNS void
	AS 'MODULE_PATHNAME', 'withdraw_refresh_remote' LANGUAGE C VOLATILE STRICT
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw._refresh_remote(text, text) IS
	'Fetches one record of the account''s list from its provider into withdraw.remote_withdrawal (withdraw_refresh calls it)';

CREATE FUNCTION withdraw_refresh(account text, provider_id text) RETURNS withdraw.remote_withdrawals
LANGUAGE sql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT withdraw._refresh_remote(account, provider_id);
	SELECT * FROM withdraw.remote_withdrawals r
	WHERE r.account = withdraw_refresh.account AND r.provider_id = withdraw_refresh.provider_id
$$;
COMMENT ON FUNCTION withdraw_refresh(text, text) IS
	'Looks one record of the provider''s list up now and returns it as stored';

-- form rules (withdraw_admin)

CREATE FUNCTION withdraw_form_rules(account text, pay_code text, currency text DEFAULT NULL)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'withdraw_form_rules' LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_form_rules(text, text, text) IS
	'Fetches a pay_code''s form rules from the provider now, caches them (withdraw.form_rules) and returns them';

-- callbacks (withdraw_webhook: the application's web handler)

CREATE FUNCTION withdraw_callback(provider text, body text, headers jsonb DEFAULT '{}')
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_callback' LANGUAGE C VOLATILE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_callback(text, text, jsonb) IS
	'Verifies and applies a provider''s notification to the named account; returns the reply body the provider expects';

CREATE FUNCTION withdraw_confirm(provider text, body text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_confirm' LANGUAGE C VOLATILE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_confirm(text, text) IS
	'Answers chainup''s second-confirmation request: confirms only a withdrawal this database created and is sending';

-- One received HTTP callback, as withdraw-callbackd (or any web handler)
-- passes it: the raw body and headers (bytes: what is not UTF-8 or not JSON
-- is refused here, and recorded), the route's kind ('notify' or 'confirm')
-- and the source address.  Calls withdraw_callback or withdraw_confirm,
-- records the source and the status on the callback's row and returns the
-- status, the reply body and the verdict: 200 only when the callback was
-- applied, recorded or confirmed (repeats and callbacks that are not ours are
-- acknowledged, or the provider would repeat them for ever); 503 when the
-- provider must send it again (deferred: the create is in flight, or the
-- database could not take it now); 403 when it is not authentic, 409 when it is
-- authentic but refused (wrong, stale or replayed), 400 when it is malformed,
-- 404 when the account takes no such callback.
CREATE FUNCTION withdraw_receive(account text, kind text, body bytea, headers bytea, source inet,
	OUT http_status integer, OUT reply text, OUT verdict text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	acct integer;
	row_id bigint;
	state text;
	message text;
BEGIN
	IF withdraw_receive.kind IS NULL OR withdraw_receive.kind NOT IN ('notify', 'confirm') THEN
		RAISE EXCEPTION 'callback kind must be notify or confirm' USING ERRCODE = '22023';
	END IF;
	SELECT a.id INTO acct FROM withdraw.account a WHERE a.name = withdraw_receive.account;
	IF NOT FOUND THEN
		http_status := 404;
		reply := 'no such account';
		RETURN;
	END IF;
	BEGIN
		IF withdraw_receive.kind = 'confirm' THEN
			reply := @extschema@.withdraw_confirm(withdraw_receive.account,
												  pg_catalog.convert_from(withdraw_receive.body, 'UTF8'));
		ELSE
			reply := @extschema@.withdraw_callback(withdraw_receive.account,
												   pg_catalog.convert_from(withdraw_receive.body, 'UTF8'),
												   pg_catalog.convert_from(coalesce(withdraw_receive.headers, '\x7b7d'::bytea), 'UTF8')::jsonb);
		END IF;
		-- every answer of the two functions leaves one row of withdraw.callback
		row_id := pg_catalog.currval('withdraw.callback_id_seq');
		SELECT c.verdict INTO verdict FROM withdraw.callback c
		WHERE c.id = row_id AND c.http_status IS NULL AND c.account_id = acct;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'the callback left no row' USING ERRCODE = 'XX000';
		END IF;
		http_status := CASE verdict
			WHEN 'deferred' THEN 503
			WHEN 'rejected' THEN 403
			WHEN 'refused' THEN 409
			ELSE 200 END;
		UPDATE withdraw.callback c SET source = withdraw_receive.source, http_status = withdraw_receive.http_status
		WHERE c.id = row_id;
		RETURN;
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
	END;
	-- the call raised an error: nothing it did is kept; say so in one row
	IF state = '28000' THEN
		http_status := 403; verdict := 'rejected'; reply := 'not authentic';
	ELSIF state = '0A000' THEN
		http_status := 404; verdict := 'rejected'; reply := 'this account takes no such callback';
	ELSIF state LIKE '22%' THEN
		http_status := 400; verdict := 'rejected'; reply := 'malformed callback';
	ELSE
		http_status := 503; verdict := 'deferred'; reply := 'not taken now: send it again';
	END IF;
	INSERT INTO withdraw.callback (account_id, kind, verdict, detail, source, http_status)
	VALUES (acct, CASE withdraw_receive.kind WHEN 'confirm' THEN 'confirm' ELSE 'unknown' END, verdict,
			'SQLSTATE ' || state || ': ' || pg_catalog.left(message, 180), withdraw_receive.source, http_status);
END
$$;
COMMENT ON FUNCTION withdraw_receive(text, text, bytea, bytea, inet) IS
	'One HTTP callback as received (raw body and headers, route kind notify or confirm, source address): passes it to withdraw_callback or withdraw_confirm and returns the HTTP status, reply and verdict, recording the source and status in withdraw.callback';

-- test vectors: the code paths the workers use, for the tests and the
-- benchmarks (owner only)

CREATE FUNCTION withdraw._zoomex_signature(api_secret text, params jsonb) RETURNS text[]
	AS 'MODULE_PATHNAME', 'withdraw_zoomex_signature' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._zoomex_signature(text, jsonb) IS
	'The zoomex string to sign and its signature, the code path the worker uses (for test vectors)';

CREATE FUNCTION withdraw._p99_signature(secret text, query text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_p99_signature' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._p99_signature(text, text) IS
	'The p99 signature of a query string, the code path the worker uses (for test vectors)';

CREATE FUNCTION withdraw._envelope_seal(plaintext text, private_key text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_envelope_seal' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._envelope_seal(text, text) IS
	'A chainup data envelope sealed with a private key, the code path the worker uses (for test vectors)';
CREATE FUNCTION withdraw._envelope_open(data text, public_key text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_envelope_open' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._envelope_open(text, text) IS
	'A chainup data envelope opened with a public key, the code path the worker uses (for test vectors)';

CREATE FUNCTION withdraw._ccpayment_signature(version integer, app_id text, app_secret text,
											   "timestamp" text, body text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_ccpayment_signature' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._ccpayment_signature(integer, text, text, text, text) IS
	'The ccpayment Sign (v1 SHA-256 or v2 HMAC), the code path the worker uses (for test vectors)';

CREATE FUNCTION withdraw._fiat_gateway_signature(params jsonb, secret text, sign_mode text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_fiat_gateway_signature' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._fiat_gateway_signature(jsonb, text, text) IS
	'The fiat_gateway MD5 sign of a parameter object, the code path the worker uses (for test vectors)';

CREATE FUNCTION withdraw._claim_query(kind text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_claim_query' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._claim_query(text) IS
	'The text of the worker''s claim query of a kind (create, status), for the benchmarks';

------------------------------------------------------------------------------
-- 11. Roles and grants
--
-- Roles are cluster-wide and outlive the extension: created only where
-- missing.  withdraw_user creates, reads and cancels its own withdrawals;
-- withdraw_admin also manages accounts and sees all withdrawals;
-- withdraw_auditor reads everything, changes nothing; withdraw_webhook only
-- calls the callback functions; withdraw_worker is the role as which the
-- workers run their SQL (NOLOGIN: nobody connects as it).  Nobody but the
-- owner reads the tables (and so the secrets), but the workers.
------------------------------------------------------------------------------

DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_user') THEN
		CREATE ROLE withdraw_user NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_admin') THEN
		CREATE ROLE withdraw_admin NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_auditor') THEN
		CREATE ROLE withdraw_auditor NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_webhook') THEN
		CREATE ROLE withdraw_webhook NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_worker') THEN
		CREATE ROLE withdraw_worker NOLOGIN;
	END IF;
END
$roles$;
COMMENT ON ROLE withdraw_worker IS 'The role as which the withdraw background workers run their SQL';

-- nothing for PUBLIC
REVOKE ALL ON SCHEMA withdraw FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA withdraw FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA withdraw FROM PUBLIC;
REVOKE ALL ON FUNCTION withdraw_account_create(text, text, text, jsonb, jsonb),
	withdraw_account_update(text, text, jsonb, jsonb), withdraw_account_drop(text),
	withdraw_rotate_secrets(), withdraw_create(text, jsonb), withdraw_status(bigint),
	withdraw_status(text, text), withdraw_cancel(bigint), withdraw_refresh(bigint),
	withdraw_sync(text, jsonb), withdraw_refresh(text, text), withdraw_form_rules(text, text, text),
	withdraw_callback(text, text, jsonb), withdraw_confirm(text, text) FROM PUBLIC;

GRANT USAGE ON SCHEMA withdraw TO withdraw_user, withdraw_admin, withdraw_auditor, withdraw_webhook,
	withdraw_worker;

-- the views call these as the querying role
GRANT EXECUTE ON FUNCTION withdraw._calling_role(), withdraw._sees_all(), withdraw._sees_personal_data(),
	withdraw._mask(text, boolean), withdraw._mask_personal(jsonb), withdraw._mask_body(text),
	withdraw._mask_destination(text, jsonb), withdraw._worker_info()
	TO withdraw_user, withdraw_admin, withdraw_auditor;

-- withdraw_user: its own withdrawals
GRANT SELECT ON withdraw.withdrawals, withdraw.attempts, withdraw.events, withdraw.stats,
	withdraw.workers, withdraw.remote_withdrawals, withdraw.form_rules TO withdraw_user;
GRANT EXECUTE ON FUNCTION withdraw_create(text, jsonb), withdraw_status(bigint),
	withdraw_status(text, text), withdraw_cancel(bigint), withdraw_refresh(bigint) TO withdraw_user;

-- withdraw_admin: as withdraw_user, and accounts, syncs, form rules, callbacks
GRANT SELECT ON withdraw.withdrawals, withdraw.attempts, withdraw.events, withdraw.stats,
	withdraw.workers, withdraw.remote_withdrawals, withdraw.form_rules, withdraw.accounts,
	withdraw.syncs, withdraw.callbacks, withdraw.state_transition TO withdraw_admin;
GRANT EXECUTE ON FUNCTION withdraw_create(text, jsonb), withdraw_status(bigint),
	withdraw_status(text, text), withdraw_cancel(bigint), withdraw_refresh(bigint),
	withdraw_account_create(text, text, text, jsonb, jsonb), withdraw_account_update(text, text, jsonb, jsonb),
	withdraw_account_drop(text), withdraw_rotate_secrets(), withdraw._credentials_problem(integer, bytea, text),
	withdraw_sync(text, jsonb), withdraw_refresh(text, text), withdraw_form_rules(text, text, text)
	TO withdraw_admin;

-- withdraw_auditor: reads everything
GRANT SELECT ON withdraw.withdrawals, withdraw.attempts, withdraw.events, withdraw.stats,
	withdraw.workers, withdraw.remote_withdrawals, withdraw.form_rules, withdraw.callbacks,
	withdraw.accounts, withdraw.syncs, withdraw.state_transition TO withdraw_auditor;
GRANT EXECUTE ON FUNCTION withdraw_status(bigint), withdraw_status(text, text) TO withdraw_auditor;

-- withdraw_webhook: the callback functions only
GRANT EXECUTE ON FUNCTION withdraw_callback(text, text, jsonb), withdraw_confirm(text, text)
	TO withdraw_webhook;
REVOKE ALL ON FUNCTION withdraw_receive(text, text, bytea, bytea, inet) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdraw_receive(text, text, bytea, bytea, inet) TO withdraw_webhook;

-- withdraw_worker: the extension's tables, their sequences, and the
-- functions its queries call to open credentials; no view.
GRANT SELECT, INSERT, UPDATE, DELETE ON withdraw.account, withdraw.account_secret,
	withdraw.state_transition, withdraw.withdrawal, withdraw.attempt, withdraw.event,
	withdraw.remote_withdrawal, withdraw.sync_state, withdraw.form_rule, withdraw.callback
	TO withdraw_worker;
GRANT USAGE ON withdraw.account_id_seq, withdraw.withdrawal_id_seq, withdraw.attempt_id_seq,
	withdraw.event_id_seq, withdraw.remote_withdrawal_id_seq, withdraw.callback_id_seq TO withdraw_worker;
GRANT EXECUTE ON FUNCTION withdraw._credentials(integer, bytea, text),
	withdraw._credentials_problem(integer, bytea, text) TO withdraw_worker;

------------------------------------------------------------------------------
-- == 0.5.0 additions ==
--
-- The sections of withdraw--0.4.0--0.5.0.sql, each to be folded by the lead
-- into the section of this file where its objects belong (and its grants
-- into section 11) when the branches merge; sql/catalog.sql fails until
-- they are.
------------------------------------------------------------------------------

-- == provider conformance (issue 15) ==

-- == callback daemon (issue 18) ==
-- (folded above: section 7 columns, section 9 view, section 10 withdraw_receive, section 11 grants)

-- == failover (issue 20) ==

-- == payout desk (issue 17) ==

-- == restructure (issue 19) ==
-- (folded above: section 3 and 4 comments, section 11 grants)
