/* withdraw--0.1.0--0.2.0.sql: chainup, ccpayment and fiat_gateway; provider callbacks;
   withdrawal details; form rules; per-account limits */

\echo Use "ALTER EXTENSION withdraw UPDATE TO '0.2.0'" to load this file. \quit

-- The application's web handler calls the callback functions: a role for it
-- alone, so that it needs neither withdraw_user nor withdraw_admin.
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdraw_webhook') THEN
		CREATE ROLE withdraw_webhook NOLOGIN;
	END IF;
END
$roles$;

------------------------------------------------------------------------------
-- Credentials sealed at rest (AES-256-GCM, key in withdraw.secrets_key_file).
-- Rows of 0.1.0 keep their plaintext until withdraw_rotate_secrets() seals them.
------------------------------------------------------------------------------

ALTER TABLE withdraw.account_secret
	ALTER COLUMN credentials DROP NOT NULL,
	ADD COLUMN sealed bytea,
	ADD COLUMN key_id text,
	ADD COLUMN credential_keys text[],
	ADD CONSTRAINT account_secret_sealed_or_plain
		CHECK ((credentials IS NULL) <> (sealed IS NULL) AND (sealed IS NULL) = (key_id IS NULL));
COMMENT ON COLUMN withdraw.account_secret.sealed IS
	'Credentials sealed with AES-256-GCM: nonce || ciphertext || tag, bound to the account id';
COMMENT ON COLUMN withdraw.account_secret.key_id IS
	'The first 8 bytes of the SHA-256 of the sealing key, in hex';

------------------------------------------------------------------------------
-- The row triggers of withdraw.withdrawal in C (same checks, events and
-- notifications; PL/pgSQL made them about 40% of the worker's CPU)
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION withdraw.check_transition() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdraw_check_transition' LANGUAGE C;
CREATE OR REPLACE FUNCTION withdraw.record_transition() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdraw_record_transition' LANGUAGE C;

------------------------------------------------------------------------------
-- Claims go account by account (src/store.c): due rows by account, then time
------------------------------------------------------------------------------

DROP INDEX withdraw.withdrawal_due_send;
DROP INDEX withdraw.withdrawal_due_poll;
CREATE INDEX withdrawal_due_send ON withdraw.withdrawal (account_id, next_attempt_at, id)
	WHERE state IN ('queued', 'unknown');
CREATE INDEX withdrawal_due_poll ON withdraw.withdrawal (account_id, next_poll_at, id)
	WHERE state IN ('submitted', 'processing', 'review', 'unknown');

------------------------------------------------------------------------------
-- What providers report beyond the state: txid, confirmations, fees
------------------------------------------------------------------------------

ALTER TABLE withdraw.withdrawal
	ADD COLUMN details jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object');
COMMENT ON COLUMN withdraw.withdrawal.details IS
	'What the provider reported beyond the state (txid, confirmations, fee, fee_asset, real_fee, real_fee_asset, ...)';

ALTER TABLE withdraw.remote_withdrawal
	ADD COLUMN confirmations bigint,
	ADD COLUMN real_fee numeric,
	ADD COLUMN real_fee_asset text;
COMMENT ON COLUMN withdraw.remote_withdrawal.real_fee IS 'The fee actually charged, where the provider reports it apart from the quoted fee';

------------------------------------------------------------------------------
-- Every call of withdraw_callback / withdraw_confirm, authentic or not
------------------------------------------------------------------------------

CREATE TABLE withdraw.callback (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id integer NOT NULL REFERENCES withdraw.account ON DELETE CASCADE,
	kind text NOT NULL CHECK (kind IN ('withdrawal', 'deposit', 'confirm', 'unknown')),
	verdict text NOT NULL CHECK (verdict IN
		('applied', 'unchanged', 'deferred', 'unmatched', 'recorded', 'confirmed', 'refused', 'rejected')),
	withdrawal_id bigint REFERENCES withdraw.withdrawal ON DELETE CASCADE,
	idempotency_key text,
	detail text,
	content jsonb,
	received_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE withdraw.callback IS
	'Every provider callback received: notifications, deposits, second confirmations; content only once authenticated';
COMMENT ON COLUMN withdraw.callback.verdict IS
	'applied (state changed), unchanged (repeat or stale), deferred (its create in flight: not acknowledged, the provider repeats it), unmatched (not ours), recorded (deposit), confirmed, refused (authentic but wrong), rejected (not authentic)';
CREATE INDEX callback_withdrawal ON withdraw.callback (withdrawal_id) WHERE withdrawal_id IS NOT NULL;
CREATE INDEX callback_received ON withdraw.callback (received_at);

------------------------------------------------------------------------------
-- Form rules of providers that publish them (fiat_gateway: per pay_code)
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
-- Functions
------------------------------------------------------------------------------

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

CREATE FUNCTION withdraw._envelope_seal(plaintext text, private_key text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_envelope_seal' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._envelope_seal(text, text) IS
	'A chainup data envelope sealed with a private key, the code path the worker uses (for test vectors)';
CREATE FUNCTION withdraw._envelope_open(data text, public_key text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_envelope_open' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._envelope_open(text, text) IS
	'A chainup data envelope opened with a public key, the code path the worker uses (for test vectors)';

CREATE FUNCTION withdraw._claim_query(kind text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_claim_query' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._claim_query(text) IS
	'The text of the worker''s claim query of a kind (create, status), for the benchmarks';

CREATE FUNCTION withdraw._credentials(account_id integer, sealed bytea, key_id text) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'withdraw_open_credentials' LANGUAGE C STABLE;
COMMENT ON FUNCTION withdraw._credentials(integer, bytea, text) IS
	'An account''s credentials, opened with the configured key (the extension''s own queries; owner only)';

CREATE FUNCTION withdraw_rotate_secrets() RETURNS integer
	AS 'MODULE_PATHNAME', 'withdraw_rotate_secrets' LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_rotate_secrets() IS
	'Re-seals every account''s credentials under withdraw.secrets_key_file; returns how many';

CREATE FUNCTION withdraw_form_rules(account text, pay_code text, currency text DEFAULT NULL)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'withdraw_form_rules' LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdraw_form_rules(text, text, text) IS
	'Fetches a pay_code''s form rules from the provider now, caches them (withdraw.form_rules) and returns them';

CREATE FUNCTION withdraw._ccpayment_signature(version integer, app_id text, app_secret text,
											   "timestamp" text, body text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_ccpayment_signature' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._ccpayment_signature(integer, text, text, text, text) IS
	'The ccpayment Sign (v1 SHA-256 or v2 HMAC), the code path the worker uses (for test vectors)';
CREATE FUNCTION withdraw._fiat_gateway_signature(params jsonb, secret text, sign_mode text) RETURNS text
	AS 'MODULE_PATHNAME', 'withdraw_fiat_gateway_signature' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION withdraw._fiat_gateway_signature(jsonb, text, text) IS
	'The fiat_gateway MD5 sign of a parameter object, the code path the worker uses (for test vectors)';

------------------------------------------------------------------------------
-- Views (new columns go last: CREATE OR REPLACE VIEW keeps the old ones)
------------------------------------------------------------------------------

CREATE OR REPLACE VIEW withdraw.withdrawals AS
SELECT w.id, a.name AS account, a.provider, w.idempotency_key, w.state, w.provider_status,
	   w.provider_id, w.asset, w.amount, w.destination, w.request, w.attempts, w.last_error,
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
JOIN withdraw.account a ON a.id = w.account_id;

-- the names of the credentials are kept beside the sealed value
CREATE OR REPLACE VIEW withdraw.accounts AS
SELECT a.name, a.provider, a.base_url, a.options,
	   coalesce(s.credential_keys, ARRAY(SELECT jsonb_object_keys(s.credentials) ORDER BY 1)) AS credential_keys,
	   a.created_at, a.updated_at
FROM withdraw.account a
LEFT JOIN withdraw.account_secret s ON s.account_id = a.id;

CREATE OR REPLACE VIEW withdraw.remote_withdrawals AS
SELECT r.id, a.name AS account, a.provider, r.provider_id, r.request_id, r.withdrawal_id,
	   r.state, r.status, r.asset, r.amount, r.fee, r.fee_asset, r.txid, r.block_number,
	   r.chain_id, r.nonce, r.deadline, r.requested_at, r.confirmed_at, r.first_seen_at,
	   r.updated_at, r.raw, r.confirmations, r.real_fee, r.real_fee_asset
FROM withdraw.remote_withdrawal r
JOIN withdraw.account a ON a.id = r.account_id;

-- a refused confirmation or notification of a withdrawal is one of its events
CREATE OR REPLACE VIEW withdraw.events AS
SELECT e.withdrawal_id, e.remote_withdrawal_id, e.at, e.from_state, e.to_state, e.provider_status, e.detail
FROM withdraw.event e
UNION ALL
SELECT w.id, NULL, w.created_at, NULL, 'queued', NULL, 'created by ' || w.created_by
FROM withdraw.withdrawal w
UNION ALL
SELECT c.withdrawal_id, NULL, c.received_at, NULL, NULL, NULL,
	   c.kind || ' callback refused: ' || coalesce(c.detail, '')
FROM withdraw.callback c
WHERE c.withdrawal_id IS NOT NULL AND c.verdict = 'refused';

CREATE VIEW withdraw.callbacks AS
SELECT c.id, a.name AS account, a.provider, c.kind, c.verdict, c.withdrawal_id, c.idempotency_key,
	   c.detail, c.content, c.received_at
FROM withdraw.callback c
JOIN withdraw.account a ON a.id = c.account_id;
COMMENT ON VIEW withdraw.callbacks IS
	'Provider callbacks received (notifications, deposits, second confirmations) and what was made of them';

CREATE VIEW withdraw.form_rules AS
SELECT a.name AS account, a.provider, r.rule_key AS pay_code, r.currency, r.rules,
	   jsonb_array_length(coalesce(r.rules->'form_fields', '[]')) AS fields,
	   r.fetched_at, r.next_fetch_at, r.last_error, r.last_error_at
FROM withdraw.form_rule r
JOIN withdraw.account a ON a.id = r.account_id;
COMMENT ON VIEW withdraw.form_rules IS
	'Cached form rules per pay_code: what withdraw_create checks requests against';

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

REVOKE ALL ON withdraw.callback, withdraw.callbacks, withdraw.form_rule, withdraw.form_rules FROM PUBLIC;
REVOKE ALL ON FUNCTION withdraw_callback(text, text, jsonb), withdraw_confirm(text, text),
	withdraw._envelope_seal(text, text), withdraw._envelope_open(text, text),
	withdraw_form_rules(text, text, text), withdraw._ccpayment_signature(integer, text, text, text, text),
	withdraw._fiat_gateway_signature(jsonb, text, text), withdraw._credentials(integer, bytea, text),
	withdraw_rotate_secrets(), withdraw._claim_query(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdraw_rotate_secrets() TO withdraw_admin;
GRANT EXECUTE ON FUNCTION withdraw_form_rules(text, text, text) TO withdraw_admin;
GRANT SELECT ON withdraw.form_rules TO withdraw_user, withdraw_admin;
GRANT USAGE ON SCHEMA withdraw TO withdraw_webhook;
GRANT EXECUTE ON FUNCTION withdraw_callback(text, text, jsonb), withdraw_confirm(text, text)
	TO withdraw_webhook;
GRANT SELECT ON withdraw.callbacks TO withdraw_admin;

------------------------------------------------------------------------------
-- pg_dump: the tables of an extension are not dumped unless registered; a
-- backup must keep every withdrawal, attempt and event, and the sealed
-- credentials (useless without the key file, which no dump contains)
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
-- and their identity sequences, so that a restored database goes on numbering
-- (one call per statement: each updates the extension's catalog row)
SELECT pg_catalog.pg_extension_config_dump('withdraw.account_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.withdrawal_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.attempt_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.remote_withdrawal_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdraw.callback_id_seq', '');
