/* withdraw--0.4.0--0.5.0.sql: operating with real money (README).
   Sections below, one per piece of work; each names what it changes.
   - restructure: withdraw_worker loses the views; comments on
     check_transition, record_remote_transition, _refresh_remote */

\echo Use "ALTER EXTENSION withdraw UPDATE TO '0.5.0'" to load this file. \quit

-- == provider conformance (issue 15) ==

-- == callback daemon (issue 18) ==
-- Changes: withdraw.callback.source, .http_status (+ view withdraw.callbacks);
-- function withdraw_receive (granted to withdraw_webhook) for withdraw-callbackd.

-- Where each callback came from and the HTTP status it was answered with
-- (withdraw_receive fills them; the direct SQL calls leave them NULL)
ALTER TABLE withdraw.callback ADD COLUMN source inet, ADD COLUMN http_status smallint;
COMMENT ON COLUMN withdraw.callback.source IS
	'The address the callback came from, as the receiving daemon saw it (X-Forwarded-For only from a trusted proxy); NULL when the SQL function was called directly';
COMMENT ON COLUMN withdraw.callback.http_status IS
	'The HTTP status the callback was answered with (withdraw_receive); NULL when the SQL function was called directly';

CREATE OR REPLACE VIEW withdraw.callbacks WITH (security_barrier) AS
SELECT c.id, a.name AS account, a.provider, c.kind, c.verdict, c.withdrawal_id, c.idempotency_key,
	   c.detail,
	   CASE WHEN (SELECT withdraw._sees_personal_data())
				 OR EXISTS (SELECT FROM withdraw.withdrawal w
							WHERE w.id = c.withdrawal_id AND w.created_by = (SELECT withdraw._calling_role()))
			THEN c.content ELSE withdraw._mask_personal(c.content) END AS content,
	   c.received_at, c.source, c.http_status
FROM withdraw.callback c
JOIN withdraw.account a ON a.id = c.account_id;

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
REVOKE ALL ON FUNCTION withdraw_receive(text, text, bytea, bytea, inet) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdraw_receive(text, text, bytea, bytea, inet) TO withdraw_webhook;

-- == failover (issue 20) ==

-- == payout desk (issue 17) ==

-- == restructure (issue 19) ==
-- The workers' role keeps the tables it works on and loses the views:
-- 0.3.0--0.4.0 granted ON ALL TABLES IN SCHEMA, which takes views too, and
-- the workers read none.  Comments on the objects that had none.
REVOKE ALL ON withdraw.accounts, withdraw.withdrawals, withdraw.attempts, withdraw.events,
	withdraw.stats, withdraw.remote_withdrawals, withdraw.syncs, withdraw.workers,
	withdraw.callbacks, withdraw.form_rules FROM withdraw_worker;
COMMENT ON FUNCTION withdraw.check_transition() IS
	'Trigger: refuses a change of state that withdraw.state_transition does not list; a final state stamps finished_at';
COMMENT ON FUNCTION withdraw.record_remote_transition() IS
	'Trigger: records a change of state of a provider''s record as an event and announces it on withdraw_status';
COMMENT ON FUNCTION withdraw._refresh_remote(text, text) IS
	'Fetches one record of the account''s list from its provider into withdraw.remote_withdrawal (withdraw_refresh calls it)';
