/* withdraw--0.4.0--0.5.0.sql: operating with real money (README).
   Sections below, one per piece of work; each names what it changes.
   - restructure: withdraw_worker loses the views; comments on
     check_transition, record_remote_transition, _refresh_remote */

\echo Use "ALTER EXTENSION withdraw UPDATE TO '0.5.0'" to load this file. \quit

-- == provider conformance (issue 15) ==

-- == callback daemon (issue 18) ==

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
