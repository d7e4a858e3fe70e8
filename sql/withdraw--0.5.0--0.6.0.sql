/* withdraw--0.5.0--0.6.0.sql: fewer writes per withdrawal (README, Figures).

   The take of a withdrawal for sending (queued to sending) becomes a HOT
   update: no index names state any more, in its columns or its predicate,
   and the table keeps half of each page free (fillfactor 50) so that the
   new version of a row fits beside the old one.
   - withdraw.withdrawal: fillfactor 50; new column finished_state (the
     final state, stamped by check_transition with finished_at); created_by
     is text and last in the row (the views that show it keep type name);
   - the due-work indexes hold the open withdrawals (finished_at IS NULL)
     split by whether a poll is scheduled; withdrawal_sending,
     withdrawal_awaiting_approval and withdrawal_held are dropped;
     withdrawal_finished sorts by finished_state;
   - withdraw._open_withdrawals and the view withdraw.health read through
     them.
   Updating rewrites every row of withdraw.withdrawal once and rebuilds
   three indexes: on a large table, run it in a quiet hour.
   Pages written before the update keep their old fill until rewritten
   (VACUUM FULL or pg_repack apply the fillfactor to them). */

\echo Use "ALTER EXTENSION withdraw UPDATE TO '0.6.0'" to load this file. \quit

ALTER TABLE withdraw.withdrawal SET (fillfactor = 50);

ALTER TABLE withdraw.withdrawal ADD COLUMN finished_state text CONSTRAINT withdrawal_finished_state_check
	CHECK (finished_state IS NULL OR (finished_state = state AND finished_at IS NOT NULL));
COMMENT ON COLUMN withdraw.withdrawal.finished_state IS
	'The final state, set with finished_at (check_transition): what the index of finished withdrawals sorts by, as no index may name state';

-- created_by becomes text, last in the row: as a name (64 bytes, fixed)
-- amid the columns that an update changes, it was logged with every
-- update.  The views keep their columns (created_by::name) and move to the
-- new column; the old one is dropped and the new one takes its name.
ALTER TABLE withdraw.withdrawal ADD COLUMN created_by_text text;
-- one pass over the rows for both new columns
UPDATE withdraw.withdrawal SET created_by_text = created_by,
	finished_state = CASE WHEN finished_at IS NOT NULL
							   AND state IN ('succeeded', 'failed', 'rejected', 'cancelled', 'expired')
						  THEN state END;
ALTER TABLE withdraw.withdrawal ALTER COLUMN created_by_text SET NOT NULL;
CREATE OR REPLACE VIEW withdraw.withdrawals WITH (security_barrier) AS
SELECT w.id, a.name AS account, a.provider, w.idempotency_key, w.state, w.provider_status,
	   w.provider_id, w.asset, w.amount,
	   CASE WHEN w.created_by_text = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_personal_data())
			THEN w.destination ELSE withdraw._mask_destination(w.destination, w.request) END AS destination,
	   CASE WHEN w.created_by_text = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_personal_data())
			THEN w.request ELSE withdraw._mask_personal(w.request) END AS request,
	   w.attempts, w.last_error,
	   w.created_by_text::name COLLATE pg_catalog."C" AS created_by, w.created_at, w.first_sent_at, w.submitted_at, w.finished_at, w.updated_at,
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
WHERE w.created_by_text = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_all());
CREATE OR REPLACE VIEW withdraw.attempts WITH (security_barrier) AS
SELECT t.id, t.withdrawal_id, a.name AS account, a.provider, t.kind, t.started_at, t.latency_ms,
	   t.method, t.url,
	   CASE WHEN w.created_by_text = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_personal_data())
			THEN t.request_body ELSE withdraw._mask_body(t.request_body) END AS request_body,
	   t.http_status,
	   CASE WHEN w.created_by_text = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_personal_data())
			THEN t.response_body ELSE withdraw._mask_body(t.response_body) END AS response_body,
	   t.error, t.outcome
FROM withdraw.attempt t
JOIN withdraw.withdrawal w ON w.id = t.withdrawal_id
JOIN withdraw.account a ON a.id = w.account_id
WHERE w.created_by_text = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_all());
CREATE OR REPLACE VIEW withdraw.events WITH (security_barrier) AS
SELECT e.withdrawal_id, e.remote_withdrawal_id, e.at, e.from_state, e.to_state, e.provider_status, e.detail,
	   e.actor, e.actor_role, e.action, e.reason,
	   CASE WHEN (SELECT withdraw._sees_all()) THEN e.evidence END AS evidence, e.feed_id, e.id AS event_id
FROM withdraw.event e
WHERE (SELECT withdraw._sees_all())
   OR EXISTS (SELECT FROM withdraw.withdrawal w
			  WHERE w.id = e.withdrawal_id AND w.created_by_text = (SELECT withdraw._calling_role()))
   OR EXISTS (SELECT FROM withdraw.remote_withdrawal r JOIN withdraw.withdrawal w ON w.id = r.withdrawal_id
			  WHERE r.id = e.remote_withdrawal_id AND w.created_by_text = (SELECT withdraw._calling_role()))
UNION ALL
SELECT w.id, NULL, w.created_at, NULL, 'queued', NULL, ('created by ' || w.created_by_text) COLLATE pg_catalog."C",
	   NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM withdraw.withdrawal w
WHERE w.created_by_text = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_all())
UNION ALL
SELECT c.withdrawal_id, NULL, c.received_at, NULL, NULL, NULL,
	   c.kind || ' callback refused: ' || coalesce(c.detail, ''),
	   NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM withdraw.callback c
JOIN withdraw.withdrawal w ON w.id = c.withdrawal_id
WHERE c.verdict = 'refused'
  AND (w.created_by_text = (SELECT withdraw._calling_role()) OR (SELECT withdraw._sees_all()));
CREATE OR REPLACE VIEW withdraw.remote_withdrawals WITH (security_barrier) AS
SELECT r.id, a.name AS account, a.provider, r.provider_id, r.request_id, r.withdrawal_id,
	   r.state, r.status, r.asset, r.amount, r.fee, r.fee_asset, r.txid, r.block_number,
	   r.chain_id, r.nonce, r.deadline, r.requested_at, r.confirmed_at, r.first_seen_at,
	   r.updated_at, r.raw, r.confirmations, r.real_fee, r.real_fee_asset
FROM withdraw.remote_withdrawal r
JOIN withdraw.account a ON a.id = r.account_id
WHERE (SELECT withdraw._sees_all())
   OR EXISTS (SELECT FROM withdraw.withdrawal w
			  WHERE w.id = r.withdrawal_id AND w.created_by_text = (SELECT withdraw._calling_role()));
CREATE OR REPLACE VIEW withdraw.callbacks WITH (security_barrier) AS
SELECT c.id, a.name AS account, a.provider, c.kind, c.verdict, c.withdrawal_id, c.idempotency_key,
	   c.detail,
	   CASE WHEN (SELECT withdraw._sees_personal_data())
				 OR EXISTS (SELECT FROM withdraw.withdrawal w
							WHERE w.id = c.withdrawal_id AND w.created_by_text = (SELECT withdraw._calling_role()))
			THEN c.content ELSE withdraw._mask_personal(c.content) END AS content,
	   c.received_at, c.source, c.http_status
FROM withdraw.callback c
JOIN withdraw.account a ON a.id = c.account_id;
CREATE OR REPLACE VIEW withdraw.approvals WITH (security_barrier) AS
SELECT w.id AS withdrawal_id, a.name AS account, w.asset, w.amount,
	   CASE WHEN (SELECT withdraw._sees_personal_data()) THEN w.destination
			ELSE withdraw._mask_destination(w.destination, w.request) END AS destination,
	   w.state, w.created_by_text::name COLLATE pg_catalog."C" AS created_by, r.requested_by, r.requested_at, r.threshold, r.quorum,
	   (SELECT count(*) FROM withdraw.approval p WHERE p.withdrawal_id = w.id) AS approvals,
	   ARRAY(SELECT p.approver FROM withdraw.approval p WHERE p.withdrawal_id = w.id ORDER BY p.approved_at) AS approvers,
	   r.expires_at
FROM withdraw.approval_request r
JOIN withdraw.withdrawal w ON w.id = r.withdrawal_id
JOIN withdraw.account a ON a.id = w.account_id
WHERE (SELECT withdraw._sees_all());
ALTER TABLE withdraw.withdrawal DROP COLUMN created_by;
ALTER TABLE withdraw.withdrawal RENAME COLUMN created_by_text TO created_by;
-- PostgreSQL 18 names NOT NULL constraints after their column: the name a
-- fresh install gives (the old column's constraint went with it)
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_constraint
			   WHERE conrelid = 'withdraw.withdrawal'::pg_catalog.regclass
				 AND conname = 'withdrawal_created_by_text_not_null') THEN
		ALTER TABLE withdraw.withdrawal
			RENAME CONSTRAINT withdrawal_created_by_text_not_null TO withdrawal_created_by_not_null;
	END IF;
END
$$;
COMMENT ON COLUMN withdraw.withdrawal.created_by IS
	'The role that created the withdrawal; it decides who sees it.  text, last in the row: a name (64 bytes) amid the columns an update changes was logged with every update';

COMMENT ON FUNCTION withdraw.check_transition() IS
	'Trigger: refuses a change of state that withdraw.state_transition does not list; a final state stamps finished_at and finished_state, leaving one clears them';

DROP INDEX withdraw.withdrawal_due_send;
DROP INDEX withdraw.withdrawal_due_poll;
DROP INDEX withdraw.withdrawal_sending;
DROP INDEX withdraw.withdrawal_awaiting_approval;
DROP INDEX withdraw.withdrawal_held;
DROP INDEX withdraw.withdrawal_finished;
CREATE INDEX withdrawal_due_send ON withdraw.withdrawal (account_id, next_attempt_at, id)
	WHERE finished_at IS NULL AND next_poll_at IS NULL;
CREATE INDEX withdrawal_due_poll ON withdraw.withdrawal (account_id, next_poll_at, id)
	WHERE finished_at IS NULL AND next_poll_at IS NOT NULL;
CREATE INDEX withdrawal_finished ON withdraw.withdrawal (account_id, finished_state, finished_at)
	WHERE finished_at IS NOT NULL;

CREATE OR REPLACE FUNCTION withdraw._open_withdrawals(OUT account_id integer, OUT state text,
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

CREATE OR REPLACE VIEW withdraw.health AS
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
