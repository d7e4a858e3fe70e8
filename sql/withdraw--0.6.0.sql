/* withdraw--0.6.0.sql: the whole schema of version 0.6.0, for a fresh install.

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
    12. the payout desk
   Names in the extension's own schema (the API functions: withdraw_create ...)
   are unqualified, as in the upgrade scripts: CREATE EXTENSION puts them in
   the schema it installs into. */

\echo Use "CREATE EXTENSION withdraw" to load this file. \quit

-- The workers serve one database (withdraw.database_name, restart).  In any
-- other the extension would take withdrawals that are never sent and fail at
-- their deadline: refuse it there, before anything is created.
DO $desk$
BEGIN
	IF pg_catalog.current_database() OPERATOR(pg_catalog.<>)
	   pg_catalog.current_setting('withdraw.database_name') THEN
		RAISE EXCEPTION 'extension withdraw cannot be installed in database "%"', pg_catalog.current_database()
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = pg_catalog.format('The withdraw workers serve database "%s" (withdraw.database_name): withdrawals created here would never be sent.',
											 pg_catalog.current_setting('withdraw.database_name')),
				  HINT = 'Install it in that database, or set withdraw.database_name to this one in postgresql.conf and restart the server.';
	END IF;
END
$desk$;

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
	updated_at timestamptz NOT NULL DEFAULT now(),
	paused_at timestamptz,
	paused_by name,
	pause_reason text
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
-- the payout desk's states (section 12): awaiting_approval (above the
-- account's threshold, not sent until approved) and held (stopped by a
-- person until released); neither is claimed by the workers
INSERT INTO withdraw.state_transition (from_state, to_state) VALUES
	('queued', 'awaiting_approval'),	-- at creation, above the approval threshold
	('queued', 'held'),
	('awaiting_approval', 'queued'),	-- approved by the quorum
	('awaiting_approval', 'rejected'),
	('awaiting_approval', 'expired'),
	('awaiting_approval', 'cancelled'),
	('held', 'queued'),
	('held', 'cancelled'),
	('failed', 'queued');				-- withdraw_retry: nothing reached the provider

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
		('queued', 'sending', 'submitted', 'processing', 'succeeded', 'failed', 'rejected',
		 'cancelled', 'expired', 'review', 'unknown', 'awaiting_approval', 'held')),
	provider_status text,
	provider_id text,
	attempts integer NOT NULL DEFAULT 0,
	maybe_delivered boolean NOT NULL DEFAULT false,
	needs_reconcile boolean NOT NULL DEFAULT false,
	reconcile_cursor text,
	last_error text,
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
	finished_state text CONSTRAINT withdrawal_finished_state_check
		CHECK (finished_state IS NULL OR (finished_state = state AND finished_at IS NOT NULL)),
	created_by text NOT NULL,
	UNIQUE (account_id, idempotency_key)
) WITH (fillfactor = 50);
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
COMMENT ON COLUMN withdraw.withdrawal.created_by IS
	'The role that created the withdrawal; it decides who sees it.  text, last in the row: a name (64 bytes) amid the columns an update changes was logged with every update';
COMMENT ON COLUMN withdraw.withdrawal.finished_state IS
	'The final state, set with finished_at (check_transition): what the index of finished withdrawals sorts by, as no index may name state';

-- Claims go account by account (src/store.c): due rows by account, then time.
--
-- No index names state, in its columns or its predicate: the take (queued
-- to sending: state, attempts, claimed_by, first_sent_at, updated_at,
-- last_error) then changes no indexed column, so it is a HOT update, written
-- beside the old version on the same page (the table's fillfactor 50 leaves
-- the room) with no new index entry.  The two due-work indexes split the
-- open withdrawals (finished_at IS NULL) by whether a status poll is
-- scheduled: every open withdrawal is in exactly one of them, which is how
-- the health views read them.
--   withdrawal_due_send  no poll scheduled: queued, sending, unknown to be
--                        sent again, held, awaiting_approval, review left
--                        to a person; the send claim filters the states;
--   withdrawal_due_poll  a poll scheduled: submitted, processing, unknown
--                        being reconciled, review still polled.
-- A withdrawal with a poll scheduled is settled by polling, never sent.
CREATE INDEX withdrawal_due_send ON withdraw.withdrawal (account_id, next_attempt_at, id)
	WHERE finished_at IS NULL AND next_poll_at IS NULL;
CREATE INDEX withdrawal_due_poll ON withdraw.withdrawal (account_id, next_poll_at, id)
	WHERE finished_at IS NULL AND next_poll_at IS NOT NULL;
CREATE UNIQUE INDEX withdrawal_provider_id ON withdraw.withdrawal (account_id, provider_id)
	WHERE provider_id IS NOT NULL;

-- Refuses a change of state the state machine does not list; stamps
-- finished_at and finished_state on a final state, clears them when a row
-- leaves one.
CREATE FUNCTION withdraw.check_transition() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdraw_check_transition' LANGUAGE C;
COMMENT ON FUNCTION withdraw.check_transition() IS
	'Trigger: refuses a change of state that withdraw.state_transition does not list; a final state stamps finished_at and finished_state, leaving one clears them';
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
	CHECK (num_nonnulls(withdrawal_id, remote_withdrawal_id) = 1),
	actor name,
	actor_role name,
	action text,
	reason text,
	evidence jsonb CHECK (evidence IS NULL OR jsonb_typeof(evidence) = 'object'),
	feed_id bigint
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
		OR pg_catalog.pg_has_role(withdraw._calling_role(), 'withdraw_operator', 'USAGE')
		OR pg_catalog.pg_has_role(withdraw._calling_role(), 'withdraw_approver', 'USAGE')
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
		OR pg_catalog.pg_has_role(withdraw._calling_role(), 'withdraw_operator', 'USAGE')
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
	   w.created_by::name COLLATE pg_catalog."C" AS created_by, w.created_at, w.first_sent_at, w.submitted_at, w.finished_at, w.updated_at,
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
SELECT e.withdrawal_id, e.remote_withdrawal_id, e.at, e.from_state, e.to_state, e.provider_status, e.detail,
	   e.actor, e.actor_role, e.action, e.reason,
	   CASE WHEN (SELECT withdraw._sees_all()) THEN e.evidence END AS evidence, e.feed_id, e.id AS event_id
FROM withdraw.event e
WHERE (SELECT withdraw._sees_all())
   OR EXISTS (SELECT FROM withdraw.withdrawal w
			  WHERE w.id = e.withdrawal_id AND w.created_by = (SELECT withdraw._calling_role()))
   OR EXISTS (SELECT FROM withdraw.remote_withdrawal r JOIN withdraw.withdrawal w ON w.id = r.withdrawal_id
			  WHERE r.id = e.remote_withdrawal_id AND w.created_by = (SELECT withdraw._calling_role()))
UNION ALL
SELECT w.id, NULL, w.created_at, NULL, 'queued', NULL, ('created by ' || w.created_by) COLLATE pg_catalog."C",
	   NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM withdraw.withdrawal w
WHERE w.created_by = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_all())
UNION ALL
SELECT c.withdrawal_id, NULL, c.received_at, NULL, NULL, NULL,
	   c.kind || ' callback refused: ' || coalesce(c.detail, ''),
	   NULL, NULL, NULL, NULL, NULL, NULL, NULL
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
		WHERE w2.account_id = a.id) AS http_latency_p99_ms,
	   count(w.id) FILTER (WHERE w.state = 'awaiting_approval') AS awaiting_approval,
	   count(w.id) FILTER (WHERE w.state = 'held') AS held
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
				  HINT = 'Cancel it as the role that created it, or as a member of withdraw_admin or withdraw_operator.';
	END IF;
	-- waits for the worker, or a person, acting on this row right now
	SELECT w.state INTO current_state FROM withdraw.withdrawal w
	WHERE w.id = withdraw_cancel.id FOR UPDATE;
	IF current_state NOT IN ('queued', 'awaiting_approval', 'held') THEN
		RETURN false;
	END IF;
	UPDATE withdraw.withdrawal w
	SET state = 'cancelled', last_error = 'cancelled by ' || withdraw._calling_role(), updated_at = now()
	WHERE w.id = withdraw_cancel.id;
	UPDATE withdraw.event e SET actor = session_user, actor_role = withdraw._calling_role(), action = 'cancel'
	WHERE e.id = (SELECT max(e2.id) FROM withdraw.event e2 WHERE e2.withdrawal_id = withdraw_cancel.id);
	RETURN true;
END
$$;
COMMENT ON FUNCTION withdraw_cancel(bigint) IS
	'Cancels a withdrawal that nothing was sent for yet (queued, awaiting approval or held; one the calling role created, or any for withdraw_admin and withdraw_operator); false when it is too late';

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
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_operator') THEN
		CREATE ROLE withdraw_operator NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_approver') THEN
		CREATE ROLE withdraw_approver NOLOGIN;
	END IF;
END
$roles$;
COMMENT ON ROLE withdraw_operator IS 'People who run payouts: resolve, retry, hold, release, pause and resume';
COMMENT ON ROLE withdraw_approver IS 'People who approve or reject withdrawals above an account''s approval threshold';
GRANT USAGE ON SCHEMA withdraw TO withdraw_operator, withdraw_approver;

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
-- 12. the payout desk: what the people who run payouts do (README, Running
--     payouts): operator actions, approval (four eyes), destination
--     allowlists, the change feed, health.  Its states, event columns and
--     account columns are in sections 2, 3 and 5; its roles in 11.
------------------------------------------------------------------------------

-- -- who did what, and the feed ---------------------------------------------
COMMENT ON COLUMN withdraw.event.actor IS 'The person (session_user) whose action this is; NULL for the workers and providers';
COMMENT ON COLUMN withdraw.event.actor_role IS 'The role the person acted as (SET ROLE included): the one approvals and creators are told apart by';
COMMENT ON COLUMN withdraw.event.action IS 'The desk action (resolve, retry, hold, release, approve, reject, ...), NULL for the workers and providers';
COMMENT ON COLUMN withdraw.event.reason IS 'The reason the person gave';
COMMENT ON COLUMN withdraw.event.evidence IS 'What the person attached (a JSON object), if anything';
COMMENT ON COLUMN withdraw.event.feed_id IS
	'Position in the change feed (withdraw_feed): given once the event is committed, in the order events become visible';
CREATE UNIQUE INDEX event_feed ON withdraw.event (feed_id) WHERE feed_id IS NOT NULL;
CREATE INDEX event_unfed ON withdraw.event (id) WHERE feed_id IS NULL;
CREATE SEQUENCE withdraw.event_feed_seq;
COMMENT ON SEQUENCE withdraw.event_feed_seq IS 'Feed positions of withdraw.event (withdraw_feed)';

-- -- pause -----------------------------------------------------------------
COMMENT ON COLUMN withdraw.account.paused_at IS
	'Set by withdraw_account_pause: nothing of this account is sent (polls and callbacks go on)';

CREATE TABLE withdraw.account_action (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id integer NOT NULL REFERENCES withdraw.account ON DELETE CASCADE,
	action text NOT NULL CHECK (action IN ('paused', 'resumed')),
	actor name NOT NULL,
	reason text NOT NULL,
	at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE withdraw.account_action IS 'Pauses and resumptions of accounts: who, when, why';

-- -- approval ---------------------------------------------------------------
CREATE TABLE withdraw.approval_request (
	withdrawal_id bigint PRIMARY KEY REFERENCES withdraw.withdrawal ON DELETE CASCADE,
	threshold numeric NOT NULL,
	quorum smallint NOT NULL CHECK (quorum BETWEEN 1 AND 5),
	requested_by name NOT NULL,
	requested_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL
);
COMMENT ON TABLE withdraw.approval_request IS
	'Withdrawals above their account''s approval threshold: how many approvals they need, until when';
COMMENT ON COLUMN withdraw.approval_request.requested_by IS 'The role that created the withdrawal (or its copy): never one of its approvers';
-- the expiry (src/desk.c) walks withdrawal_due_send (those awaiting
-- approval are among them), not every request ever made

CREATE TABLE withdraw.approval (
	withdrawal_id bigint NOT NULL REFERENCES withdraw.approval_request ON DELETE CASCADE,
	approver name NOT NULL,
	approver_session name NOT NULL,
	approved_at timestamptz NOT NULL DEFAULT now(),
	reason text NOT NULL,
	evidence jsonb,
	PRIMARY KEY (withdrawal_id, approver)
);
COMMENT ON TABLE withdraw.approval IS 'One row per approval given (withdraw_approve): the approving role, and the session_user it acted in';

-- -- allowlist --------------------------------------------------------------
CREATE TABLE withdraw.allowlist_entry (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id integer NOT NULL REFERENCES withdraw.account ON DELETE CASCADE,
	destination text NOT NULL CHECK (destination <> ''),
	memo text NOT NULL DEFAULT '',
	fields jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(fields) = 'object'),
	label text NOT NULL CHECK (btrim(label) <> ''),
	added_by name NOT NULL,
	added_at timestamptz NOT NULL DEFAULT now(),
	usable_from timestamptz NOT NULL,
	UNIQUE (account_id, destination, memo, fields)
);
COMMENT ON TABLE withdraw.allowlist_entry IS
	'Destinations an account may pay (option allowlist.enforce): the withdrawal''s destination, its memo ('''' = none) and other fields it must carry';

CREATE TABLE withdraw.allowlist_change (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id integer NOT NULL REFERENCES withdraw.account ON DELETE CASCADE,
	entry_id bigint NOT NULL,
	change text NOT NULL CHECK (change IN ('added', 'removed')),
	destination text NOT NULL,
	memo text NOT NULL,
	fields jsonb NOT NULL,
	label text NOT NULL,
	usable_from timestamptz,
	changed_by name NOT NULL,
	changed_at timestamptz NOT NULL DEFAULT now(),
	reason text
);
COMMENT ON TABLE withdraw.allowlist_change IS 'Every addition to and removal from an allowlist: who, when, why';

-- -- copies made by withdraw_retry --------------------------------------------
CREATE TABLE withdraw.withdrawal_copy (
	copy_id bigint PRIMARY KEY REFERENCES withdraw.withdrawal ON DELETE CASCADE,
	original_id bigint NOT NULL REFERENCES withdraw.withdrawal ON DELETE CASCADE,
	copied_by name NOT NULL,
	copied_at timestamptz NOT NULL DEFAULT now(),
	reason text NOT NULL
);
CREATE INDEX withdrawal_copy_original ON withdraw.withdrawal_copy (original_id);
COMMENT ON TABLE withdraw.withdrawal_copy IS 'A withdrawal retried under a new idempotency key, and the one it copies';

-- -- who sees and cancels what: operators and approvers see every withdrawal ---

-- -- helpers of the desk functions (owner only) ----------------------------------

-- a reason is required (1..1000 characters), evidence is a JSON object of at most 64 kB
CREATE FUNCTION withdraw._desk_check_args(reason text, evidence jsonb) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'a reason is required'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Every action of the desk is recorded with the reason given; nothing was changed.',
				  HINT = 'Pass the reason as text, for example reason => ''provider confirmed by e-mail, ticket 123''.';
	END IF;
	IF length(reason) > 1000 THEN
		RAISE EXCEPTION 'the reason is longer than 1000 characters'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Put long material in evidence.';
	END IF;
	IF evidence IS NOT NULL AND jsonb_typeof(evidence) <> 'object' THEN
		RAISE EXCEPTION 'evidence must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example {"ticket": "OPS-123", "txid": "0x..."}.';
	END IF;
	IF evidence IS NOT NULL AND pg_column_size(evidence) > 65536 THEN
		RAISE EXCEPTION 'evidence is larger than 64 kB'
			USING ERRCODE = 'program_limit_exceeded', HINT = 'Attach a reference to the document instead.';
	END IF;
END
$$;

-- Locks the withdrawal (a second person acting at once waits here, then
-- sees the state the first one left) and checks its state allows action.
CREATE FUNCTION withdraw._desk_lock(id bigint, action text, allowed text[], hint text)
	RETURNS withdraw.withdrawal
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w withdraw.withdrawal;
BEGIN
	IF id IS NULL THEN
		RAISE EXCEPTION 'a withdrawal id is required' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO w FROM withdraw.withdrawal x WHERE x.id = _desk_lock.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'withdrawal % does not exist', id USING ERRCODE = 'no_data_found';
	END IF;
	IF w.state <> ALL (allowed) THEN
		RAISE EXCEPTION 'withdrawal % is in state %', id, w.state
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('%s needs a withdrawal in state %s; nothing was changed.',
								  action, array_to_string(allowed, ' or ')),
				  HINT = hint;
	END IF;
	RETURN w;
END
$$;

-- Names the person, action, reason and evidence on the event the last
-- state change of this withdrawal recorded, or records one without a
-- change of state (an approval short of the quorum, a copy).
CREATE FUNCTION withdraw._desk_record(id bigint, changed boolean, action text, reason text,
									  evidence jsonb, detail text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF changed THEN
		UPDATE withdraw.event e SET actor = session_user, actor_role = withdraw._calling_role(), action = _desk_record.action,
			reason = _desk_record.reason, evidence = _desk_record.evidence
		WHERE e.id = (SELECT max(e2.id) FROM withdraw.event e2 WHERE e2.withdrawal_id = _desk_record.id);
	ELSE
		INSERT INTO withdraw.event (withdrawal_id, from_state, to_state, detail, actor, actor_role, action, reason, evidence)
		SELECT w.id, w.state, w.state, detail, session_user, withdraw._calling_role(), action, reason, evidence
		FROM withdraw.withdrawal w WHERE w.id = _desk_record.id;
	END IF;
END
$$;

-- Where the workers' SQL (src/desk.c) reads the desk: an approval request,
-- and the allowlist match at creation.
CREATE FUNCTION withdraw._await_approval(id bigint, threshold numeric, quorum integer, expires_ms bigint)
	RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE withdraw.withdrawal w SET state = 'awaiting_approval', updated_at = now(),
		last_error = format('above the approval threshold %s: waiting for %s approval%s', threshold, quorum,
							CASE WHEN quorum > 1 THEN 's' ELSE '' END)
	WHERE w.id = _await_approval.id AND w.state = 'queued';
	INSERT INTO withdraw.approval_request (withdrawal_id, threshold, quorum, requested_by, expires_at)
	VALUES (id, threshold, quorum, withdraw._calling_role(), now() + expires_ms * interval '1 millisecond')
	ON CONFLICT (withdrawal_id) DO UPDATE
		SET threshold = EXCLUDED.threshold, quorum = EXCLUDED.quorum, requested_by = EXCLUDED.requested_by,
			requested_at = EXCLUDED.requested_at, expires_at = EXCLUDED.expires_at;
	DELETE FROM withdraw.approval a WHERE a.withdrawal_id = _await_approval.id;
	UPDATE withdraw.event e SET actor = session_user, actor_role = withdraw._calling_role(), action = 'request approval'
	WHERE e.id = (SELECT max(e2.id) FROM withdraw.event e2 WHERE e2.withdrawal_id = _await_approval.id);
END
$$;

-- NULL when the destination may be paid now; else why not
CREATE FUNCTION withdraw._allowlist_refusal(account_id integer, destination text, request jsonb)
	RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE
		WHEN _allowlist_refusal.destination IS NULL THEN 'the withdrawal names no destination'
		WHEN bool_or(e.usable_from <= now()) THEN NULL
		WHEN count(e.id) > 0 THEN format('it is on the allowlist as "%s" but usable only from %s (cooling-off period)',
										 min(e.label), min(e.usable_from))
		ELSE 'it is not on the allowlist' END
	FROM withdraw.allowlist_entry e
	WHERE e.account_id = _allowlist_refusal.account_id AND e.destination = _allowlist_refusal.destination
	  AND e.memo = coalesce(request->>'memo', request->>'address_memo', '')
	  AND request @> e.fields
$$;

-- src/desk.c: the checks withdraw_create makes (allowlist, limits), run again
-- for a same-key retry; true when the account's approval threshold applies
CREATE FUNCTION withdraw._desk_admit(id bigint) RETURNS boolean
	AS 'MODULE_PATHNAME', 'withdraw_desk_admit' LANGUAGE C VOLATILE STRICT
	SET search_path = pg_catalog, pg_temp;

-- -- operator actions ---------------------------------------------------------

CREATE FUNCTION withdraw_resolve(id bigint, outcome text, reason text, evidence jsonb DEFAULT NULL,
								 force boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w withdraw.withdrawal;
BEGIN
	IF outcome IS NULL OR outcome NOT IN ('succeeded', 'failed') THEN
		RAISE EXCEPTION 'a withdrawal is resolved as succeeded or failed, not %', coalesce(quote_literal(outcome), 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM withdraw._desk_check_args(reason, evidence);
	w := withdraw._desk_lock(id, 'withdraw_resolve', ARRAY['review', 'unknown'],
							 'Only a withdrawal held for review, or whose outcome is unknown, is resolved by a person.');
	-- unknown: the workers are still settling it with the provider
	IF w.state = 'unknown' AND NOT coalesce(force, false) THEN
		RAISE EXCEPTION 'withdrawal % is in state unknown: its automatic reconciliation is still running', id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'The workers ask the provider for it until account option reconcile_timeout_ms has passed, then put it in review; nothing was changed.',
				  HINT = 'Wait for state review, or (superuser) pass force => true.';
	END IF;
	IF w.state = 'unknown' AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = withdraw._calling_role()) THEN
		RAISE EXCEPTION 'only a superuser may force the resolution of a withdrawal in state unknown'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Its automatic reconciliation is still running; nothing was changed.';
	END IF;
	UPDATE withdraw.withdrawal x
	SET state = outcome, needs_reconcile = false, polling = false, updated_at = now(),
		last_error = format('resolved as %s by %s: %s', outcome, withdraw._calling_role(), reason)
	WHERE x.id = w.id;
	PERFORM withdraw._desk_record(w.id, true, CASE WHEN w.state = 'unknown' THEN 'force resolve' ELSE 'resolve' END,
								  reason, evidence);
	RETURN outcome;
END
$$;
COMMENT ON FUNCTION withdraw_resolve(bigint, text, text, jsonb, boolean) IS
	'Settles a withdrawal in review (or, superuser with force, in unknown) as succeeded or failed, with a reason';

CREATE FUNCTION withdraw_retry(id bigint, reason text, evidence jsonb DEFAULT NULL,
							   new_key boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w withdraw.withdrawal;
	acct withdraw.account;
	unsafe text;
	copy_request jsonb;
	copy_id bigint;
	needs_approval boolean;
BEGIN
	PERFORM withdraw._desk_check_args(reason, evidence);
	w := withdraw._desk_lock(id, 'withdraw_retry', ARRAY['failed', 'rejected', 'expired'],
							 'Only a withdrawal that ended without paying is retried.');
	SELECT * INTO acct FROM withdraw.account a WHERE a.id = w.account_id;
	IF w.state <> 'failed' THEN
		unsafe := format('it was %s', w.state);
	ELSIF w.maybe_delivered OR w.needs_reconcile OR w.provider_id IS NOT NULL OR w.submitted_at IS NOT NULL THEN
		unsafe := 'an attempt may have reached the provider, which may hold its idempotency key';
	ELSIF w.created_at < now() - coalesce((acct.options->>'deadline_ms')::bigint, 86400000) * interval '1 millisecond' THEN
		unsafe := 'its account''s deadline_ms has passed since its creation';
	ELSIF date_trunc('day', w.created_at AT TIME ZONE 'UTC') <> date_trunc('day', now() AT TIME ZONE 'UTC') THEN
		unsafe := 'it was created on another UTC day, which its daily limit counted';
	END IF;
	IF NOT coalesce(new_key, false) THEN
		IF unsafe IS NOT NULL THEN
			RAISE EXCEPTION 'withdrawal % cannot be retried under its idempotency key', id
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = format('Resending key %s is not safe: %s; nothing was changed.', w.idempotency_key, unsafe),
					  HINT = 'Check it at the provider first; then withdraw_retry(id, reason, new_key => true) creates a copy under a new key, linked to this one.';
		END IF;
		needs_approval := withdraw._desk_admit(w.id);
		UPDATE withdraw.withdrawal x
		SET state = 'queued', attempts = 0, strikes = 0, finished_at = NULL, next_poll_at = NULL,
			next_attempt_at = now(), updated_at = now(),
			last_error = format('retried by %s: %s', withdraw._calling_role(), reason)
		WHERE x.id = w.id;
		PERFORM withdraw._desk_record(w.id, true, 'retry', reason, evidence);
		IF needs_approval THEN
			PERFORM withdraw._await_approval(w.id, (acct.options->'approval'->w.asset->>'above')::numeric,
											 coalesce((acct.options->'approval'->w.asset->>'quorum')::integer, 1),
											 coalesce((acct.options->'approval'->w.asset->>'expires_ms')::bigint, 86400000));
		END IF;
		PERFORM withdraw._wake();
		RETURN w.id;
	END IF;
	-- a copy under a new key: withdraw_create makes every check of a new withdrawal
	IF w.state = 'failed' AND w.needs_reconcile THEN
		RAISE EXCEPTION 'withdrawal % is still being reconciled', id USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	SELECT coalesce(jsonb_object_agg(k, v), '{}') INTO copy_request
	FROM jsonb_each(w.request) AS j(k, v) WHERE v <> to_jsonb(w.idempotency_key);
	copy_id := @extschema@.withdraw_create(acct.name, copy_request);
	IF copy_id = w.id THEN
		RAISE EXCEPTION 'the copy of withdrawal % got its own key', id USING ERRCODE = 'internal_error';
	END IF;
	-- the application that created the original follows its copy
	UPDATE withdraw.withdrawal x SET created_by = w.created_by WHERE x.id = copy_id;
	INSERT INTO withdraw.withdrawal_copy (copy_id, original_id, copied_by, reason)
	VALUES (copy_id, w.id, session_user, reason);
	PERFORM withdraw._desk_record(w.id, false, 'retry as copy', reason, evidence,
								  format('copied to withdrawal %s under a new key', copy_id));
	PERFORM withdraw._desk_record(copy_id, false, 'copy', reason, evidence,
								  format('copy of withdrawal %s (%s)', w.id, coalesce(unsafe, 'asked for')));
	RETURN copy_id;
END
$$;
COMMENT ON FUNCTION withdraw_retry(bigint, text, jsonb, boolean) IS
	'Queues a failed withdrawal again under its key when nothing reached the provider; with new_key, a linked copy under a new key; returns the id queued';

CREATE FUNCTION withdraw_hold(id bigint, reason text, evidence jsonb DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w withdraw.withdrawal;
BEGIN
	PERFORM withdraw._desk_check_args(reason, evidence);
	w := withdraw._desk_lock(id, 'withdraw_hold', ARRAY['queued'],
							 'Only a withdrawal not yet sent is held; one at the provider is settled there.');
	UPDATE withdraw.withdrawal x SET state = 'held', updated_at = now(),
		last_error = format('held by %s: %s', withdraw._calling_role(), reason)
	WHERE x.id = w.id;
	PERFORM withdraw._desk_record(w.id, true, 'hold', reason, evidence);
	RETURN 'held';
END
$$;
COMMENT ON FUNCTION withdraw_hold(bigint, text, jsonb) IS 'Stops a queued withdrawal from being sent until released';

CREATE FUNCTION withdraw_release(id bigint, reason text, evidence jsonb DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w withdraw.withdrawal;
BEGIN
	PERFORM withdraw._desk_check_args(reason, evidence);
	w := withdraw._desk_lock(id, 'withdraw_release', ARRAY['held'], 'Only a held withdrawal is released.');
	UPDATE withdraw.withdrawal x SET state = 'queued', next_attempt_at = now(), updated_at = now(),
		last_error = format('released by %s: %s', withdraw._calling_role(), reason)
	WHERE x.id = w.id;
	PERFORM withdraw._desk_record(w.id, true, 'release', reason, evidence);
	PERFORM withdraw._wake();
	RETURN 'queued';
END
$$;
COMMENT ON FUNCTION withdraw_release(bigint, text, jsonb) IS 'Queues a held withdrawal again';

CREATE FUNCTION withdraw_account_pause(account text, reason text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	a withdraw.account;
BEGIN
	PERFORM withdraw._desk_check_args(reason, NULL);
	SELECT * INTO a FROM withdraw.account x WHERE x.name = account FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'account "%" does not exist', account USING ERRCODE = 'undefined_object';
	END IF;
	IF a.paused_at IS NOT NULL THEN
		RAISE EXCEPTION 'account "%" is already paused', account
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('%s paused it: %s', a.paused_by, a.pause_reason),
				  HINT = 'Resume it with withdraw_account_resume.';
	END IF;
	UPDATE withdraw.account x SET paused_at = now(), paused_by = session_user, pause_reason = reason
	WHERE x.id = a.id;
	INSERT INTO withdraw.account_action (account_id, action, actor, reason) VALUES (a.id, 'paused', session_user, reason);
END
$$;
COMMENT ON FUNCTION withdraw_account_pause(text, text) IS
	'Stops sending for an account (queued withdrawals wait; polls and callbacks go on)';

CREATE FUNCTION withdraw_account_resume(account text, reason text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	a withdraw.account;
BEGIN
	PERFORM withdraw._desk_check_args(reason, NULL);
	SELECT * INTO a FROM withdraw.account x WHERE x.name = account FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'account "%" does not exist', account USING ERRCODE = 'undefined_object';
	END IF;
	IF a.paused_at IS NULL THEN
		RAISE EXCEPTION 'account "%" is not paused', account USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	UPDATE withdraw.account x SET paused_at = NULL, paused_by = NULL, pause_reason = NULL WHERE x.id = a.id;
	INSERT INTO withdraw.account_action (account_id, action, actor, reason) VALUES (a.id, 'resumed', session_user, reason);
	PERFORM withdraw._wake();
END
$$;
COMMENT ON FUNCTION withdraw_account_resume(text, text) IS 'Sends for a paused account again';


-- -- approval ---------------------------------------------------------------

CREATE FUNCTION withdraw_approve(id bigint, reason text, evidence jsonb DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w withdraw.withdrawal;
	r withdraw.approval_request;
	given integer;
BEGIN
	PERFORM withdraw._desk_check_args(reason, evidence);
	w := withdraw._desk_lock(id, 'withdraw_approve', ARRAY['awaiting_approval'],
							 'Only a withdrawal awaiting approval is approved.');
	SELECT * INTO r FROM withdraw.approval_request x WHERE x.withdrawal_id = w.id;
	IF withdraw._calling_role() IN (w.created_by, r.requested_by) THEN
		RAISE EXCEPTION 'withdrawal % cannot be approved by the role that created it', id
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('It was created by %s; nothing was changed.', r.requested_by),
				  HINT = 'Another member of withdraw_approver must approve it.';
	END IF;
	IF r.expires_at <= now() THEN
		RAISE EXCEPTION 'the approval request of withdrawal % has expired', id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'It ends as expired; nothing was changed.',
				  HINT = 'Create the withdrawal again if it is still wanted.';
	END IF;
	IF EXISTS (SELECT FROM withdraw.approval a WHERE a.withdrawal_id = w.id AND a.approver = withdraw._calling_role()) THEN
		RAISE EXCEPTION 'withdrawal % is already approved by %', id, withdraw._calling_role()
			USING ERRCODE = 'unique_violation',
				  DETAIL = format('It needs %s distinct approvers; nothing was changed.', r.quorum),
				  HINT = 'Another member of withdraw_approver must give the next approval.';
	END IF;
	INSERT INTO withdraw.approval (withdrawal_id, approver, approver_session, reason, evidence)
	VALUES (w.id, withdraw._calling_role(), session_user, reason, evidence);
	SELECT count(*) INTO given FROM withdraw.approval a WHERE a.withdrawal_id = w.id;
	IF given < r.quorum THEN
		PERFORM withdraw._desk_record(w.id, false, 'approve', reason, evidence,
									  format('approval %s of %s by %s', given, r.quorum, withdraw._calling_role()));
		RETURN 'awaiting_approval';
	END IF;
	UPDATE withdraw.withdrawal x SET state = 'queued', next_attempt_at = now(), updated_at = now(),
		last_error = format('approved by %s', (SELECT string_agg(a.approver, ', ' ORDER BY a.approved_at)
											   FROM withdraw.approval a WHERE a.withdrawal_id = w.id))
	WHERE x.id = w.id;
	PERFORM withdraw._desk_record(w.id, true, 'approve', reason, evidence);
	PERFORM withdraw._wake();
	RETURN 'queued';
END
$$;
COMMENT ON FUNCTION withdraw_approve(bigint, text, jsonb) IS
	'Approves a withdrawal awaiting approval (never by its creator, once per person); queued once the quorum is reached';

CREATE FUNCTION withdraw_reject(id bigint, reason text, evidence jsonb DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w withdraw.withdrawal;
BEGIN
	PERFORM withdraw._desk_check_args(reason, evidence);
	w := withdraw._desk_lock(id, 'withdraw_reject', ARRAY['awaiting_approval'],
							 'Only a withdrawal awaiting approval is rejected; cancel a queued one.');
	UPDATE withdraw.withdrawal x SET state = 'rejected', updated_at = now(),
		last_error = format('rejected by %s: %s', withdraw._calling_role(), reason)
	WHERE x.id = w.id;
	PERFORM withdraw._desk_record(w.id, true, 'reject', reason, evidence);
	RETURN 'rejected';
END
$$;
COMMENT ON FUNCTION withdraw_reject(bigint, text, jsonb) IS 'Rejects a withdrawal awaiting approval: it is never sent';

-- -- allowlist --------------------------------------------------------------

CREATE FUNCTION withdraw_allowlist_add(account text, destination text, label text, memo text DEFAULT NULL,
									   fields jsonb DEFAULT '{}', reason text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	a withdraw.account;
	e withdraw.allowlist_entry;
	cooling bigint;
BEGIN
	SELECT * INTO a FROM withdraw.account x WHERE x.name = account;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'account "%" does not exist', coalesce(account, 'NULL') USING ERRCODE = 'undefined_object';
	END IF;
	IF destination IS NULL OR btrim(destination) = '' THEN
		RAISE EXCEPTION 'a destination is required' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'It is compared with the withdrawal''s destination: the address, UID, e-mail, bank account number or Cwallet user its request names.';
	END IF;
	IF label IS NULL OR btrim(label) = '' THEN
		RAISE EXCEPTION 'a label is required' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Name the destination for the people who read the list, for example ''cold wallet 2''.';
	END IF;
	IF fields IS NULL OR jsonb_typeof(fields) <> 'object' THEN
		RAISE EXCEPTION 'fields must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Request fields the withdrawal must carry too, for example {"bank_id": 1001}.';
	END IF;
	cooling := coalesce((a.options->'allowlist'->>'cooling_off_ms')::bigint, 86400000);
	INSERT INTO withdraw.allowlist_entry (account_id, destination, memo, fields, label, added_by, usable_from)
	VALUES (a.id, destination, coalesce(memo, ''), fields, label, session_user,
			now() + cooling * interval '1 millisecond')
	ON CONFLICT DO NOTHING
	RETURNING * INTO e;
	IF e.id IS NULL THEN
		RAISE EXCEPTION 'this destination is already on the allowlist of account "%"', account
			USING ERRCODE = 'unique_violation',
				  HINT = 'Remove it first to change its label; it then cools off again.';
	END IF;
	INSERT INTO withdraw.allowlist_change (account_id, entry_id, change, destination, memo, fields, label,
										   usable_from, changed_by, reason)
	VALUES (a.id, e.id, 'added', e.destination, e.memo, e.fields, e.label, e.usable_from, session_user, reason);
	RETURN e.id;
END
$$;
COMMENT ON FUNCTION withdraw_allowlist_add(text, text, text, text, jsonb, text) IS
	'Adds a destination to an account''s allowlist; usable after the account''s cooling-off period; returns the entry id';

CREATE FUNCTION withdraw_allowlist_remove(account text, entry_id bigint, reason text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	e withdraw.allowlist_entry;
BEGIN
	PERFORM withdraw._desk_check_args(reason, NULL);
	DELETE FROM withdraw.allowlist_entry x
	USING withdraw.account a
	WHERE a.id = x.account_id AND a.name = account AND x.id = entry_id
	RETURNING x.* INTO e;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'account "%" has no allowlist entry %', coalesce(account, 'NULL'), coalesce(entry_id::text, 'NULL')
			USING ERRCODE = 'no_data_found', HINT = 'The entries are listed in withdraw.allowlist.';
	END IF;
	INSERT INTO withdraw.allowlist_change (account_id, entry_id, change, destination, memo, fields, label,
										   usable_from, changed_by, reason)
	VALUES (e.account_id, e.id, 'removed', e.destination, e.memo, e.fields, e.label, e.usable_from, session_user, reason);
END
$$;
COMMENT ON FUNCTION withdraw_allowlist_remove(text, bigint, text) IS 'Removes a destination from an account''s allowlist';

-- -- the change feed ------------------------------------------------------------
-- withdraw.event.id is given when an event is inserted, and transactions
-- commit in another order: a reader going by id could pass an id whose
-- transaction commits later, and miss it.  So each committed event gets a
-- feed position when a reader first asks (under one lock, held until the
-- reader's transaction ends): positions are strictly increasing in the
-- order events become visible, and a reader that stores its cursor in the
-- same transaction never misses or repeats one.
CREATE TYPE withdraw.feed_event AS (feed_id bigint, event_id bigint, withdrawal_id bigint,
	remote_withdrawal_id bigint, at timestamptz, from_state text, to_state text, provider_status text,
	detail text, actor name, actor_role name, action text, reason text);
COMMENT ON TYPE withdraw.feed_event IS 'One event of the change feed (withdraw_feed)';
GRANT USAGE ON TYPE withdraw.feed_event TO PUBLIC;

CREATE FUNCTION withdraw_feed(after bigint DEFAULT 0, max_events integer DEFAULT 100)
	RETURNS SETOF withdraw.feed_event
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF after IS NULL OR after < 0 THEN
		RAISE EXCEPTION 'after must be 0 or a feed_id already read' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF max_events IS NULL OR max_events NOT BETWEEN 1 AND 10000 THEN
		RAISE EXCEPTION 'max_events must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'withdraw_feed runs at READ COMMITTED only'
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'An older snapshot could miss positions another reader gave meanwhile.',
				  HINT = 'Read the feed in a READ COMMITTED transaction.';
	END IF;
	-- one positioner at a time, until this transaction ends
	PERFORM pg_advisory_xact_lock(hashtext('withdraw.event_feed'));
	UPDATE withdraw.event e SET feed_id = s.f
	FROM (SELECT u.id, nextval('withdraw.event_feed_seq') AS f
		  FROM (SELECT x.id FROM withdraw.event x WHERE x.feed_id IS NULL ORDER BY x.id LIMIT 10000) u
		  ORDER BY u.id) s
	WHERE e.id = s.id;
	RETURN QUERY
	SELECT e.feed_id, e.id, e.withdrawal_id, e.remote_withdrawal_id, e.at, e.from_state, e.to_state,
		   e.provider_status, e.detail, e.actor, e.actor_role, e.action, e.reason
	FROM withdraw.event e
	WHERE e.feed_id > after
	  AND ((SELECT withdraw._sees_all())
		   OR EXISTS (SELECT FROM withdraw.withdrawal w
					  WHERE w.id = e.withdrawal_id AND w.created_by = (SELECT withdraw._calling_role()))
		   OR EXISTS (SELECT FROM withdraw.remote_withdrawal r JOIN withdraw.withdrawal w ON w.id = r.withdrawal_id
					  WHERE r.id = e.remote_withdrawal_id AND w.created_by = (SELECT withdraw._calling_role())))
	ORDER BY e.feed_id
	LIMIT max_events;
END
$$;
COMMENT ON FUNCTION withdraw_feed(bigint, integer) IS
	'The events after feed position after, in order, a page at a time (the calling role''s as in withdraw.events); store the last feed_id in the same transaction';

-- -- views ----------------------------------------------------------------------



CREATE VIEW withdraw.approvals WITH (security_barrier) AS
SELECT w.id AS withdrawal_id, a.name AS account, w.asset, w.amount,
	   CASE WHEN (SELECT withdraw._sees_personal_data()) THEN w.destination
			ELSE withdraw._mask_destination(w.destination, w.request) END AS destination,
	   w.state, w.created_by::name COLLATE pg_catalog."C" AS created_by, r.requested_by, r.requested_at, r.threshold, r.quorum,
	   (SELECT count(*) FROM withdraw.approval p WHERE p.withdrawal_id = w.id) AS approvals,
	   ARRAY(SELECT p.approver FROM withdraw.approval p WHERE p.withdrawal_id = w.id ORDER BY p.approved_at) AS approvers,
	   r.expires_at
FROM withdraw.approval_request r
JOIN withdraw.withdrawal w ON w.id = r.withdrawal_id
JOIN withdraw.account a ON a.id = w.account_id
WHERE (SELECT withdraw._sees_all());
COMMENT ON VIEW withdraw.approvals IS
	'Approval requests, pending (state awaiting_approval) or past: quorum, approvers so far, expiry';

-- A listed destination may be personal data (a bank account number, an
-- e-mail or phone address, a Cwallet user): masked as in withdraw.withdrawals
-- for every role that cannot read the tables (admins included).
CREATE FUNCTION withdraw._mask_listed(destination text, provider text, fields jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN provider IN ('fiat_gateway', 'zoomex') OR destination LIKE '%@%' OR fields ? 'cwalletUser'
				THEN withdraw._mask(destination, true) ELSE destination END
$$;
COMMENT ON FUNCTION withdraw._mask_listed(text, text, jsonb) IS
	'An allowlisted destination, masked when it may be personal data (fiat bank accounts, zoomex e-mail/phone/UID, e-mail addresses, Cwallet users)';

CREATE VIEW withdraw.allowlist WITH (security_barrier) AS
SELECT e.id, a.name AS account, a.provider,
	   CASE WHEN (SELECT withdraw._sees_personal_data()) THEN e.destination
			ELSE withdraw._mask_listed(e.destination, a.provider, e.fields) END AS destination,
	   nullif(e.memo, '') AS memo, e.fields, e.label,
	   e.added_by, e.added_at, e.usable_from, e.usable_from <= now() AS usable
FROM withdraw.allowlist_entry e JOIN withdraw.account a ON a.id = e.account_id;
COMMENT ON VIEW withdraw.allowlist IS
	'Allowed destinations per account, and whether their cooling-off period is over; personal destinations masked';

CREATE VIEW withdraw.allowlist_changes WITH (security_barrier) AS
SELECT c.id, a.name AS account, c.entry_id, c.change,
	   CASE WHEN (SELECT withdraw._sees_personal_data()) THEN c.destination
			ELSE withdraw._mask_listed(c.destination, a.provider, c.fields) END AS destination,
	   nullif(c.memo, '') AS memo, c.fields,
	   c.label, c.usable_from, c.changed_by, c.changed_at, c.reason
FROM withdraw.allowlist_change c JOIN withdraw.account a ON a.id = c.account_id;
COMMENT ON VIEW withdraw.allowlist_changes IS 'Every change of every allowlist: who, when, why; personal destinations masked';

CREATE VIEW withdraw.account_actions AS
SELECT x.id, a.name AS account, x.action, x.actor, x.reason, x.at
FROM withdraw.account_action x JOIN withdraw.account a ON a.id = x.account_id;
COMMENT ON VIEW withdraw.account_actions IS 'Pauses and resumptions of accounts';

-- health: counts for everyone who monitors (no personal data, no rows).
-- Read on every scrape, so neither view reads the whole table: the open
-- withdrawals come through the two due-work indexes that hold them
-- (section 3), the last success and failure through an index of finished
-- withdrawals (one entry per withdrawal, made by the UPDATE that ends it;
-- by finished_state, as no index may name state).
CREATE INDEX withdrawal_finished ON withdraw.withdrawal (account_id, finished_state, finished_at)
	WHERE finished_at IS NOT NULL;

CREATE FUNCTION withdraw._open_withdrawals(OUT account_id integer, OUT state text,
										   OUT created_at timestamptz, OUT updated_at timestamptz)
	RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT w.account_id, w.state, w.created_at, w.updated_at FROM withdraw.withdrawal w
	WHERE w.finished_at IS NULL AND w.next_poll_at IS NULL
	UNION ALL
	SELECT w.account_id, w.state, w.created_at, w.updated_at FROM withdraw.withdrawal w
	WHERE w.finished_at IS NULL AND w.next_poll_at IS NOT NULL
$$;
COMMENT ON FUNCTION withdraw._open_withdrawals() IS
	'Account, state and times of the withdrawals not finished, read through the two due-work indexes that hold them (for the health views; no personal data)';

CREATE VIEW withdraw.health_states AS
SELECT a.name AS account, s.state, count(o.state) AS withdrawals,
	   coalesce(extract(epoch FROM now() - min(o.created_at)), 0)::double precision AS oldest_age_s
FROM withdraw.account a
CROSS JOIN (VALUES ('queued'), ('awaiting_approval'), ('held'), ('sending'), ('submitted'),
				   ('processing'), ('unknown'), ('review')) AS s(state)
LEFT JOIN withdraw._open_withdrawals() o ON o.account_id = a.id AND o.state = s.state
GROUP BY a.name, s.state;
COMMENT ON VIEW withdraw.health_states IS
	'Per account and open state: how many withdrawals, and the age of the oldest (seconds since its creation)';

CREATE VIEW withdraw.health AS
WITH o AS (
	SELECT o.account_id,
		   count(*) AS open,
		   count(*) FILTER (WHERE o.state = 'review') AS review,
		   count(*) FILTER (WHERE o.state = 'unknown') AS unknown,
		   count(*) FILTER (WHERE o.state = 'awaiting_approval') AS awaiting_approval,
		   count(*) FILTER (WHERE o.state = 'held') AS held,
		   min(o.created_at) AS oldest_open_at
	FROM withdraw._open_withdrawals() o GROUP BY o.account_id
), stuck AS (
	SELECT o.account_id, count(*) AS stuck
	FROM withdraw._open_withdrawals() o JOIN withdraw.account a ON a.id = o.account_id
	WHERE o.state NOT IN ('awaiting_approval', 'held')
	  AND o.created_at < now() - coalesce((a.options->>'stuck_after_ms')::bigint, 3600000) * interval '1 millisecond'
	GROUP BY o.account_id
), workers AS (
	SELECT count(*) FILTER (WHERE k.state = 'running' AND k.database = current_database()
							  AND k.heartbeat_at > now() - interval '1 minute') AS alive,
		   string_agg(DISTINCT k.last_error, '; ') FILTER (WHERE k.last_error_at > now() - interval '5 minutes') AS recent_error
	FROM withdraw._worker_info() k
)
SELECT a.name AS account, a.provider,
	   coalesce(o.open, 0) AS open,
	   coalesce(o.review, 0) AS review,
	   coalesce(o.unknown, 0) AS unknown,
	   coalesce(o.awaiting_approval, 0) AS awaiting_approval,
	   coalesce(o.held, 0) AS held,
	   coalesce(st.stuck, 0) AS stuck,
	   coalesce((a.options->>'stuck_after_ms')::bigint, 3600000) AS stuck_after_ms,
	   coalesce(extract(epoch FROM now() - o.oldest_open_at), 0)::double precision AS oldest_open_age_s,
	   (SELECT max(f.finished_at) FROM withdraw.withdrawal f
		WHERE f.account_id = a.id AND f.finished_state = 'succeeded' AND f.finished_at IS NOT NULL) AS last_success_at,
	   greatest((SELECT max(f.finished_at) FROM withdraw.withdrawal f
				 WHERE f.account_id = a.id AND f.finished_state = 'failed' AND f.finished_at IS NOT NULL),
				(SELECT max(f.finished_at) FROM withdraw.withdrawal f
				 WHERE f.account_id = a.id AND f.finished_state = 'rejected' AND f.finished_at IS NOT NULL),
				(SELECT max(f.finished_at) FROM withdraw.withdrawal f
				 WHERE f.account_id = a.id AND f.finished_state = 'expired' AND f.finished_at IS NOT NULL)) AS last_failure_at,
	   a.paused_at IS NOT NULL AS paused, a.paused_by, a.pause_reason,
	   CASE WHEN k.alive = 0
			THEN 'no worker serving this database is running (withdraw.database_name, withdraw.workers)'
				 || coalesce(': ' || k.recent_error, '')
			WHEN a.paused_at IS NOT NULL THEN format('paused by %s: %s', a.paused_by, a.pause_reason)
			WHEN s.account_id IS NULL THEN 'the account has no credentials'
			WHEN s.credentials IS NULL THEN withdraw._credentials_problem(s.account_id, s.sealed, s.key_id)
		END AS not_sending,
	   k.recent_error AS workers_last_error
FROM withdraw.account a
LEFT JOIN o ON o.account_id = a.id
LEFT JOIN stuck st ON st.account_id = a.id
LEFT JOIN withdraw.account_secret s ON s.account_id = a.id
CROSS JOIN workers k;
COMMENT ON VIEW withdraw.health IS
	'Per account: open, review, unknown, awaiting approval, held and stuck withdrawals, oldest open age, last success and failure, and why nothing is sent (NULL when sending)';

-- -- privileges ---------------------------------------------------------------------
REVOKE ALL ON withdraw.account_action, withdraw.approval_request, withdraw.approval, withdraw.allowlist_entry,
	withdraw.allowlist_change, withdraw.withdrawal_copy, withdraw.approvals, withdraw.allowlist,
	withdraw.allowlist_changes, withdraw.account_actions, withdraw.health, withdraw.health_states FROM PUBLIC;
REVOKE ALL ON SEQUENCE withdraw.event_feed_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION withdraw._desk_check_args(text, jsonb), withdraw._desk_lock(bigint, text, text[], text),
	withdraw._desk_record(bigint, boolean, text, text, jsonb, text),
	withdraw._await_approval(bigint, numeric, integer, bigint), withdraw._allowlist_refusal(integer, text, jsonb),
	withdraw._desk_admit(bigint), withdraw._open_withdrawals(), withdraw._mask_listed(text, text, jsonb),
	withdraw_resolve(bigint, text, text, jsonb, boolean), withdraw_retry(bigint, text, jsonb, boolean),
	withdraw_hold(bigint, text, jsonb), withdraw_release(bigint, text, jsonb),
	withdraw_account_pause(text, text), withdraw_account_resume(text, text),
	withdraw_approve(bigint, text, jsonb), withdraw_reject(bigint, text, jsonb),
	withdraw_allowlist_add(text, text, text, text, jsonb, text), withdraw_allowlist_remove(text, bigint, text),
	withdraw_feed(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdraw_resolve(bigint, text, text, jsonb, boolean), withdraw_retry(bigint, text, jsonb, boolean),
	withdraw_hold(bigint, text, jsonb), withdraw_release(bigint, text, jsonb),
	withdraw_account_pause(text, text), withdraw_account_resume(text, text),
	withdraw_cancel(bigint), withdraw_refresh(bigint), withdraw_status(bigint), withdraw_status(text, text)
	TO withdraw_operator;
GRANT EXECUTE ON FUNCTION withdraw_approve(bigint, text, jsonb), withdraw_reject(bigint, text, jsonb),
	withdraw_status(bigint), withdraw_status(text, text) TO withdraw_approver;
GRANT EXECUTE ON FUNCTION withdraw_allowlist_add(text, text, text, text, jsonb, text),
	withdraw_allowlist_remove(text, bigint, text) TO withdraw_admin;
GRANT EXECUTE ON FUNCTION withdraw_feed(bigint, integer)
	TO withdraw_user, withdraw_admin, withdraw_auditor, withdraw_operator, withdraw_approver;
GRANT EXECUTE ON FUNCTION withdraw._calling_role(), withdraw._sees_all(), withdraw._sees_personal_data(),
	withdraw._mask(text, boolean), withdraw._mask_personal(jsonb), withdraw._mask_body(text),
	withdraw._mask_destination(text, jsonb), withdraw._worker_info()
	TO withdraw_operator, withdraw_approver;
GRANT EXECUTE ON FUNCTION withdraw._credentials_problem(integer, bytea, text) TO withdraw_operator, withdraw_auditor;
GRANT EXECUTE ON FUNCTION withdraw._open_withdrawals() TO withdraw_operator, withdraw_admin, withdraw_auditor;
GRANT EXECUTE ON FUNCTION withdraw._mask_listed(text, text, jsonb)
	TO withdraw_operator, withdraw_approver, withdraw_admin, withdraw_auditor;
GRANT SELECT ON withdraw.withdrawals, withdraw.attempts, withdraw.events, withdraw.stats, withdraw.workers,
	withdraw.remote_withdrawals, withdraw.approvals, withdraw.allowlist, withdraw.allowlist_changes,
	withdraw.account_actions, withdraw.health, withdraw.health_states, withdraw.state_transition
	TO withdraw_operator;
GRANT SELECT ON withdraw.withdrawals, withdraw.events, withdraw.approvals, withdraw.allowlist,
	withdraw.allowlist_changes, withdraw.stats TO withdraw_approver;
GRANT SELECT ON withdraw.approvals, withdraw.allowlist, withdraw.allowlist_changes, withdraw.account_actions,
	withdraw.health, withdraw.health_states TO withdraw_admin, withdraw_auditor;
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_worker') THEN
		-- the expiry of approval requests (src/desk.c); withdrawal is granted already
		GRANT SELECT ON withdraw.approval_request TO withdraw_worker;
	END IF;
END
$$;

SELECT pg_catalog.pg_extension_config_dump('withdraw.account_action', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.approval_request', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.approval', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.allowlist_entry', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.allowlist_change', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.withdrawal_copy', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.account_action_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.allowlist_entry_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.allowlist_change_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.event_feed_seq', '');
