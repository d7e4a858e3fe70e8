/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Every query the worker runs against the extension's tables, each
 *	  prepared once and kept.
 *
 * Claiming is two statements in one transaction: store_candidates locks
 * due rows with FOR UPDATE SKIP LOCKED (so a concurrent withdraw_cancel
 * or a second claimer never sees the same row), the worker picks those
 * its rate limits allow, and store_take marks them and returns everything
 * needed to sign the request.  The transaction commits before any byte is
 * sent; outcomes are recorded by store_record in a later transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "store.h"
#include "secrets.h"
#include "spi_util.h"
#include "withdraw.h"

#define RESPONSE_KEEP_BYTES 4000

static SPIPlanPtr candidates_plan[2];
static SPIPlanPtr take_plan[2];
static SPIPlanPtr reconcile_plan;
static SPIPlanPtr attempt_plan;
static SPIPlanPtr change_plan;
static SPIPlanPtr taken_plan;
static SPIPlanPtr unsent_plan;
static SPIPlanPtr prune_plan[2];
static SPIPlanPtr syncs_plan;
static SPIPlanPtr batch_attempt_plan;
static SPIPlanPtr batch_change_plan;

/*
 * Due work, per account: each account's earliest due rows come from an
 * index on (account_id, due time, id), so a claim reads about as many rows
 * as it returns, however long the backlog (one sorted scan of every due
 * row cost 11 ms at 5,000 due), and a blocked account is never scanned.
 * With several workers, SKIP LOCKED keeps their claims apart: a row one
 * of them is claiming is passed over by the others.  (A filter splitting
 * rows by id between workers was tried: the planner, guessing it keeps
 * one row in 200, chose a sequential scan and a sort.)
 */
static const char *const candidates_sql[2] = {
	/* JOB_CREATE: new withdrawals and resends of unknown ones */
	"SELECT w.id, w.account_id, a.provider, a.options, w.state = 'unknown', w.first_sent_at,"
	" w.created_at FROM withdraw.account a CROSS JOIN LATERAL"
	" (SELECT w.id, w.account_id, w.state, w.first_sent_at, w.created_at, w.next_attempt_at"
	"  FROM withdraw.withdrawal w"
	"  WHERE w.account_id = a.id AND w.state IN ('queued', 'unknown') AND NOT w.needs_reconcile"
	"    AND w.next_attempt_at <= now()"
	"  ORDER BY w.next_attempt_at, w.id LIMIT $2"
	"  FOR UPDATE OF w SKIP LOCKED) w"
	" WHERE a.id <> ALL ($1) AND a.paused_at IS NULL"	/* issue 17: a paused account sends nothing */
	" ORDER BY w.next_attempt_at, w.id LIMIT $2",
	/* JOB_STATUS: due polls, and reconciliation of unknown ones */
	"SELECT w.id, w.account_id, a.provider, a.options, w.state = 'unknown', w.first_sent_at,"
	" w.created_at FROM withdraw.account a CROSS JOIN LATERAL"
	" (SELECT w.id, w.account_id, w.state, w.first_sent_at, w.created_at, w.next_poll_at"
	"  FROM withdraw.withdrawal w"
	"  WHERE w.account_id = a.id AND w.state IN ('submitted', 'processing', 'review', 'unknown')"
	"    AND w.next_poll_at <= now() AND (w.state <> 'unknown' OR w.needs_reconcile)"
	"  ORDER BY w.next_poll_at, w.id LIMIT $2"
	"  FOR UPDATE OF w SKIP LOCKED) w"
	" WHERE a.id <> ALL ($1)"
	" ORDER BY w.next_poll_at, w.id LIMIT $2"
};

/*
 * SQL: withdraw._claim_query(kind) — the text of a claim query ('create' or
 * 'status'), so that bench/bench_history.py EXPLAINs the worker's very
 * query instead of a copy that could drift from it.
 */
PG_FUNCTION_INFO_V1(withdraw_claim_query);
Datum
withdraw_claim_query(PG_FUNCTION_ARGS)
{
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (strcmp(kind, "create") != 0 && strcmp(kind, "status") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no claim query of kind \"%s\"", kind),
				 errhint("The kinds are create and status.")));
	PG_RETURN_TEXT_P(cstring_to_text(candidates_sql[strcmp(kind, "create") == 0 ? JOB_CREATE : JOB_STATUS]));
}

#define TAKE_RETURNING \
	" FROM withdraw.account a JOIN withdraw.account_secret s ON s.account_id = a.id" \
	" WHERE w.id = ANY ($1) AND a.id = w.account_id" \
	" RETURNING w.id, a.id, a.name, a.provider, a.base_url, a.options, " SECRETS_CREDENTIALS("s") "," \
	"  w.idempotency_key, w.request, w.amount::text, w.provider_id, w.created_at," \
	"  w.first_sent_at, w.attempts, w.maybe_delivered, w.state, w.reconcile_cursor, w.destination," \
	"  w.strikes"

/* claimed_by: after a worker stops, its own rows are the ones to recover */
static const char *const take_sql[2] = {
	"UPDATE withdraw.withdrawal w"
	" SET state = 'sending', attempts = w.attempts + 1, last_error = NULL, claimed_by = $2,"
	"     first_sent_at = coalesce(w.first_sent_at, now()), updated_at = now()"
	TAKE_RETURNING,
	/*
	 * a poll in flight is not due again: its outcome sets the next poll
	 * (or a recovery after a crash makes it due at once); 15 minutes is
	 * longer than the longest request timeout (10 minutes)
	 */
	"UPDATE withdraw.withdrawal w"
	" SET next_poll_at = now() + interval '15 minutes', claimed_by = $2, polling = true"
	TAKE_RETURNING
};


Datum
store_int_array(List *list, bool is_int8)
{
	int			n = list_length(list);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, list)
	{
		if (is_int8)
			elems[i++] = Int64GetDatum(*(int64 *) lfirst(lc));
		else
			elems[i++] = Int32GetDatum(lfirst_int(lc));
	}
	if (is_int8)
		return PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	return PointerGetDatum(construct_array(elems, n, INT4OID, 4, true, TYPALIGN_INT));
}

/*
 * After worker number worker stops: rows it left in 'sending' have an
 * unknown fate, and polls it had claimed (next_poll_at pushed ahead) are
 * due now.  Rows claimed by a worker number that no longer exists (fewer
 * withdraw.workers since a restart) or by a release that did not record
 * the claimer count as everyone's; the other workers' rows are theirs,
 * in flight right now.
 *
 * Quarantine: a row whose answer was being read when the worker stopped
 * has been stamped with a strike beforehand (worker.c), so one that has
 * reached withdraw.quarantine_after strikes goes to review instead of
 * being sent or polled again, which would stop the worker once more.
 * Every other row left in flight gets at least one strike: it was in
 * flight when the worker stopped, so its answer will be read alone, after
 * a stamp, and a poison answer among them is then told from the rest.
 * Returns the number of rows found in flight; *quarantined is the number
 * moved to review.
 */
int
store_recover(int worker, int *quarantined)
{
	Oid			types[3] = {INT2OID, INT2OID, INT4OID};
	Datum		args[3] = {Int16GetDatum(worker), Int16GetDatum(withdraw_workers),
	Int32GetDatum(withdraw_quarantine_after)};
	int			rc;
	int			sending;

#define MINE " (claimed_by = $1 OR claimed_by IS NULL OR claimed_by >= $2)"
	rc = SPI_execute_with_args("UPDATE withdraw.withdrawal"
							   " SET state = 'review', polling = false, needs_reconcile = false,"
							   "     maybe_delivered = maybe_delivered OR state = 'sending',"
							   "     next_poll_at = NULL, updated_at = now(),"
							   "     last_error = format('quarantined: the worker stopped %s times in a row while"
							   " reading this withdrawal''s answers (a poison answer?); it is no longer sent"
							   " or polled: check it at the provider and settle it by hand', strikes)"
							   " WHERE (state = 'sending' OR polling) AND strikes >= $3 AND" MINE,
							   3, types, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "quarantine of withdrawals failed: %s", SPI_result_code_string(rc));
	*quarantined = (int) SPI_processed;

	rc = SPI_execute_with_args("UPDATE withdraw.withdrawal"
							   " SET state = 'unknown', maybe_delivered = true, polling = false,"
							   "     strikes = greatest(strikes, 1),"
							   "     next_attempt_at = now(), updated_at = now(),"
							   "     last_error = 'the worker stopped while this request was in flight'"
							   " WHERE state = 'sending' AND" MINE,
							   2, types, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "recovery of sending withdrawals failed: %s", SPI_result_code_string(rc));
	sending = (int) SPI_processed;

	rc = SPI_execute_with_args("UPDATE withdraw.withdrawal"
							   " SET polling = false, strikes = greatest(strikes, 1), next_poll_at = now()"
							   " WHERE polling AND" MINE,
							   2, types, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "recovery of status polls in flight failed: %s", SPI_result_code_string(rc));
	sending += (int) SPI_processed;

	rc = SPI_execute_with_args("UPDATE withdraw.withdrawal SET next_poll_at = now()"
							   " WHERE state IN ('submitted', 'processing', 'review', 'unknown')"
							   "   AND next_poll_at > now() AND" MINE,
							   2, types, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "recovery of status polls failed: %s", SPI_result_code_string(rc));
#undef MINE

	/* syncs are worker 0's alone */
	if (worker == 0)
	{
		rc = SPI_execute("UPDATE withdraw.sync_state SET next_sync_at = now()"
						 " WHERE next_sync_at > now() AND last_error IS NULL", false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "recovery of syncs failed: %s", SPI_result_code_string(rc));
	}
	return sending;
}

/*
 * Raises the strikes of rows whose answers are read next, alone, in a
 * transaction of their own: committed before the reading, the strike
 * stays if the worker stops while reading (store_recover counts it), and
 * the answer's outcome sets it again.
 */
void
store_stamp(List *ids)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[1];

	if (plan == NULL)
	{
		Oid			types[1] = {INT8ARRAYOID};

		plan = spi_prepare_kept("UPDATE withdraw.withdrawal SET strikes = strikes + 1"
								" WHERE id = ANY ($1)", 1, types);
	}
	args[0] = store_int_array(ids, true);
	if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "stamping withdrawals failed");
}

/*
 * The accounts whose sealed credentials cannot be opened, as a List of
 * int account ids, each with its reason in *reasons (a parallel List of
 * char *, "account \"name\": why"); such an account's work is not claimed.
 */
List *
store_unopenable_accounts(List **reasons)
{
	static SPIPlanPtr plan = NULL;
	List	   *ids = NIL;

	*reasons = NIL;
	if (plan == NULL)
		plan = spi_prepare_kept("SELECT s.account_id, a.name, p.why FROM withdraw.account_secret s"
								" JOIN withdraw.account a ON a.id = s.account_id,"
								" LATERAL (SELECT withdraw._credentials_problem(s.account_id, s.sealed, s.key_id)"
								"  AS why) p"
								" WHERE s.credentials IS NULL AND p.why IS NOT NULL", 0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "checking the accounts' credentials failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		ids = lappend_int(ids, DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull)));
		*reasons = lappend(*reasons, psprintf("account \"%s\": %s", SPI_getvalue(tuple, desc, 2),
											  SPI_getvalue(tuple, desc, 3)));
	}
	return ids;
}

/* Locks up to limit due rows of kind, none of the excluded accounts. */
List *
store_candidates(JobKind kind, List *excluded_accounts, int limit, MemoryContext cxt)
{
	Datum		args[2];
	List	   *result = NIL;

	if (candidates_plan[kind] == NULL)
	{
		Oid			types[2] = {INT4ARRAYOID, INT4OID};

		candidates_plan[kind] = spi_prepare_kept(candidates_sql[kind], 2, types);
	}
	args[0] = store_int_array(excluded_accounts, false);
	args[1] = Int32GetDatum(limit);
	/* always an index walk: see spi_execute_plan_indexed */
	if (spi_execute_plan_indexed(candidates_plan[kind], args, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "claiming withdrawals failed");

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		Candidate  *c = palloc0(sizeof(Candidate));
		bool		isnull;
		char	   *provider_name;

		c->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		c->account_id = DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull));
		provider_name = SPI_getvalue(tuple, desc, 3);
		c->provider = provider_lookup(provider_name);
		c->options = DatumGetJsonbPCopy(SPI_getbinval(tuple, desc, 4, &isnull));
		c->unknown = DatumGetBool(SPI_getbinval(tuple, desc, 5, &isnull));
		c->first_sent_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 6, &isnull));
		if (isnull)
			c->first_sent_at = 0;
		c->created_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 7, &isnull));
		if (c->provider == NULL)
			ereport(WARNING,
					(errmsg("withdrawal " INT64_FORMAT " belongs to an account of unknown provider \"%s\"",
							c->id, provider_name)));
		else
			result = lappend(result, c);
		MemoryContextSwitchTo(old);
	}
	return result;
}

/* Wipes a copy of opened credentials when its memory context goes. */
static void
wipe_credentials(void *arg)
{
	Jsonb	   *credentials = arg;

	explicit_bzero(VARDATA(credentials), VARSIZE(credentials) - VARHDRSZ);
}

/*
 * An account with its secrets from the columns id, name, provider,
 * base_url, options, credentials starting at column first; copied into
 * the current memory context.  The opened credentials are wiped in the
 * result tuple once copied, and the copy when the context that holds it
 * is reset or deleted (a job's, when its exchange ends): a worker's memory
 * holds them only while a request of that account is in flight.
 */
WithdrawAccount *
store_account_from_tuple(HeapTuple tuple, TupleDesc desc, int first)
{
	WithdrawAccount *account = palloc0(sizeof(WithdrawAccount));
	MemoryContextCallback *wipe = palloc(sizeof(MemoryContextCallback));
	Datum		opened;
	bool		isnull;

	account->id = DatumGetInt32(SPI_getbinval(tuple, desc, first, &isnull));
	account->name = SPI_getvalue(tuple, desc, first + 1);
	account->provider = provider_lookup(SPI_getvalue(tuple, desc, first + 2));
	account->base_url = SPI_getvalue(tuple, desc, first + 3);
	account->options = DatumGetJsonbPCopy(SPI_getbinval(tuple, desc, first + 4, &isnull));
	opened = SPI_getbinval(tuple, desc, first + 5, &isnull);
	if (isnull)
		return account;
	account->credentials = DatumGetJsonbPCopy(opened);
	/* the tuple's own bytes (a compressed or external value has none) */
	if (VARATT_IS_SHORT(DatumGetPointer(opened)))
		explicit_bzero(VARDATA_SHORT(DatumGetPointer(opened)),
					   VARSIZE_SHORT(DatumGetPointer(opened)) - VARHDRSZ_SHORT);
	else if (!VARATT_IS_EXTENDED(DatumGetPointer(opened)))
		explicit_bzero(VARDATA(DatumGetPointer(opened)), VARSIZE(DatumGetPointer(opened)) - VARHDRSZ);
	wipe->func = wipe_credentials;
	wipe->arg = account->credentials;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, wipe);
	return account;
}

/* The account with its secrets, for the SQL functions; ERROR if absent. */
WithdrawAccount *
store_account_by_name(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	WithdrawAccount *account;

	if (SPI_execute_with_args("SELECT a.id, a.name, a.provider, a.base_url, a.options, "
							  SECRETS_CREDENTIALS("s")
							  " FROM withdraw.account a JOIN withdraw.account_secret s ON s.account_id = a.id"
							  " WHERE a.name = $1", 1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "account lookup failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("account \"%s\" does not exist", name)));
	account = store_account_from_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (account->provider == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("account \"%s\" belongs to a provider this build does not know", name)));
	return account;
}

/* Marks the chosen candidates taken and returns them as jobs. */
List *
store_take(JobKind kind, List *ids, int worker, MemoryContext parent)
{
	Datum		args[2];
	List	   *jobs = NIL;

	if (ids == NIL)
		return NIL;
	if (take_plan[kind] == NULL)
	{
		Oid			types[2] = {INT8ARRAYOID, INT2OID};

		take_plan[kind] = spi_prepare_kept(take_sql[kind], 2, types);
	}
	args[0] = store_int_array(ids, true);
	args[1] = Int16GetDatum(worker);
	if (SPI_execute_plan(take_plan[kind], args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "taking withdrawals failed");

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext cxt = AllocSetContextCreate(parent, "withdraw job", ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		Job		   *job = palloc0(sizeof(Job));
		bool		isnull;

		job->cxt = cxt;
		job->kind = kind;
		job->w.account = store_account_from_tuple(tuple, desc, 2);
		job->w.id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		job->w.idempotency_key = SPI_getvalue(tuple, desc, 8);
		job->w.request = DatumGetJsonbPCopy(SPI_getbinval(tuple, desc, 9, &isnull));
		job->w.amount = SPI_getvalue(tuple, desc, 10);
		job->w.provider_id = SPI_getvalue(tuple, desc, 11);
		job->w.created_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 12, &isnull));
		job->w.first_sent_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 13, &isnull));
		if (isnull)
			job->w.first_sent_at = 0;
		job->attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 14, &isnull));
		job->maybe_delivered = DatumGetBool(SPI_getbinval(tuple, desc, 15, &isnull));
		job->state = SPI_getvalue(tuple, desc, 16);
		job->w.reconcile_cursor = SPI_getvalue(tuple, desc, 17);
		job->w.destination = SPI_getvalue(tuple, desc, 18);
		job->strikes = DatumGetInt16(SPI_getbinval(tuple, desc, 19, &isnull));
		MemoryContextSwitchTo(old);
		jobs = lappend(jobs, job);
	}
	return jobs;
}

/*
 * A job of a whole account (a sync or a form-rules fetch) from a claimed
 * row whose first columns are the account's (store_account_from_tuple),
 * in a context of its own under parent; NULL when this build's provider
 * cannot do that kind of job.
 */
Job *
store_account_job(HeapTuple tuple, TupleDesc desc, JobKind kind, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "withdraw account job", ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Job		   *job = palloc0(sizeof(Job));
	const Provider *provider;

	job->cxt = cxt;
	job->kind = kind;
	job->state = kind == JOB_SYNC ? "sync" : "rules";
	job->w.account = store_account_from_tuple(tuple, desc, 1);
	MemoryContextSwitchTo(old);
	provider = job->w.account->provider;
	if (provider == NULL ||
		(kind == JOB_SYNC ? provider->build_sync == NULL : provider->build_rules == NULL))
	{
		MemoryContextDelete(cxt);
		return NULL;
	}
	return job;
}

/*
 * Claims the accounts whose scheduled sync is due, as JOB_SYNC jobs; the
 * next sync is pushed ahead until this one ends (recovery resets it).
 */
List *
store_take_syncs(List *excluded_accounts, int limit, MemoryContext parent)
{
	Datum		args[2];
	List	   *jobs = NIL;

	if (syncs_plan == NULL)
	{
		Oid			types[2] = {INT4ARRAYOID, INT4OID};

		syncs_plan = spi_prepare_kept(
								  "UPDATE withdraw.sync_state s SET next_sync_at = now() + interval '10 minutes'"
								  " FROM withdraw.account a JOIN withdraw.account_secret sec ON sec.account_id = a.id"
								  " WHERE s.account_id IN (SELECT account_id FROM withdraw.sync_state"
								  "   WHERE next_sync_at <= now() AND account_id <> ALL ($1)"
								  "   ORDER BY next_sync_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
								  "   AND a.id = s.account_id"
								  " RETURNING a.id, a.name, a.provider, a.base_url, a.options, "
								  SECRETS_CREDENTIALS("sec") ","
								  "  s.failures", 2, types);
	}
	args[0] = store_int_array(excluded_accounts, false);
	args[1] = Int32GetDatum(limit);
	if (SPI_execute_plan(syncs_plan, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "claiming syncs failed");

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Job		   *job = store_account_job(tuple, desc, JOB_SYNC, parent);
		bool		isnull;

		if (job == NULL)
			continue;
		job->page_cxt = AllocSetContextCreate(job->cxt, "withdraw sync page", ALLOCSET_DEFAULT_SIZES);
		job->attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 7, &isnull));
		jobs = lappend(jobs, job);
	}
	return jobs;
}

/* Runs one of the "UPDATE ... WHERE id = ANY ($1)" statements below. */
static void
update_ids(SPIPlanPtr *plan, const char *sql, List *ids)
{
	Datum		args[1];

	if (ids == NIL)
		return;
	if (*plan == NULL)
	{
		Oid			types[1] = {INT8ARRAYOID};

		*plan = spi_prepare_kept(sql, 1, types);
	}
	args[0] = store_int_array(ids, true);
	if (SPI_execute_plan(*plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "\"%s\" failed", sql);
}

/* Past the idempotency window a resend is unsafe: only ask for the status. */
void
store_mark_reconcile(List *ids)
{
	update_ids(&reconcile_plan,
			   "UPDATE withdraw.withdrawal SET needs_reconcile = true, next_poll_at = now(),"
			   " last_error = 'past the idempotency window or the deadline: settled by status query only'"
			   " WHERE id = ANY ($1) AND state = 'unknown'", ids);
}

/* Queued withdrawals past their account's deadline are never sent. */
void
store_fail_unsent(List *ids)
{
	update_ids(&unsent_plan,
			   "UPDATE withdraw.withdrawal SET state = 'failed',"
			   " last_error = 'not sent before the account''s deadline_ms passed'"
			   " WHERE id = ANY ($1) AND state = 'queued'", ids);
}

/*
 * Deletes up to batch rows of withdraw.callback older than retention_s,
 * oldest first: anyone can post to a web handler, so the table would grow
 * without bound otherwise.  A confirmation given for a withdrawal still in
 * flight is kept, since withdraw_confirm reads it to refuse a second one.
 */
static int
prune_callbacks(int retention_s, int batch)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2];

	if (plan == NULL)
	{
		Oid			types[2] = {FLOAT8OID, INT4OID};

		plan = spi_prepare_kept("DELETE FROM withdraw.callback WHERE id IN"
								" (SELECT c.id FROM withdraw.callback c"
								"  WHERE c.received_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)"
								"   AND NOT (c.verdict = 'confirmed' AND EXISTS (SELECT FROM withdraw.withdrawal w"
								"    WHERE w.id = c.withdrawal_id AND w.state IN ('sending', 'unknown')))"
								"  ORDER BY c.id LIMIT $2)",
								2, types);
	}
	args[0] = Float8GetDatum((double) retention_s);
	args[1] = Int32GetDatum(batch);
	if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "pruning old callbacks failed");
	return (int) SPI_processed;
}

/*
 * Deletes up to batch attempts and events older than retention_s, oldest
 * first; withdrawals themselves are kept (they are the record of money).
 * Returns the number of rows deleted.
 */
int
store_prune(int retention_s, int batch)
{
	Datum		args[2];
	int			deleted = 0;

	if (prune_plan[0] == NULL)
	{
		/* float8 seconds: pg_catalog's *(float8, interval) is an exact match */
		Oid			types[2] = {FLOAT8OID, INT4OID};

		prune_plan[0] = spi_prepare_kept(
									 "DELETE FROM withdraw.attempt WHERE id IN (SELECT id FROM withdraw.attempt"
									 " WHERE started_at < now() - $1 * interval '1 second' ORDER BY id LIMIT $2)",
									 2, types);
		prune_plan[1] = spi_prepare_kept(
									 "DELETE FROM withdraw.event WHERE id IN (SELECT id FROM withdraw.event"
									 " WHERE at < now() - $1 * interval '1 second'"
		/* issue 17: the events of an open withdrawal stay (the feed and the desk read them) */
									 "  AND NOT EXISTS (SELECT FROM withdraw.withdrawal w"
									 "   WHERE w.id = withdrawal_id AND w.finished_at IS NULL)"
									 " ORDER BY id LIMIT $2)",
									 2, types);
	}
	args[0] = Float8GetDatum((double) retention_s);
	args[1] = Int32GetDatum(batch);
	for (int i = 0; i < 2; i++)
	{
		if (SPI_execute_plan(prune_plan[i], args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "pruning old history failed");
		deleted += (int) SPI_processed;
	}
	deleted += prune_callbacks(retention_s, batch);
	return deleted;
}

/* Is this provider id already linked to another withdrawal of the account? */
bool
store_provider_id_taken(Job *job, const char *provider_id)
{
	Datum		args[3];

	if (taken_plan == NULL)
	{
		Oid			types[3] = {INT4OID, TEXTOID, INT8OID};

		taken_plan = spi_prepare_kept("SELECT 1 FROM withdraw.withdrawal"
								  " WHERE account_id = $1 AND provider_id = $2 AND id <> $3",
								  3, types);
	}
	args[0] = Int32GetDatum(job->w.account->id);
	args[1] = CStringGetTextDatum(provider_id);
	args[2] = Int64GetDatum(job->w.id);
	if (SPI_execute_plan(taken_plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "provider id lookup failed");
	return SPI_processed > 0;
}

/* A response body as text fit for a table: clipped, valid UTF-8. */
static char *
keepable_body(HttpResponse *res)
{
	int			len;

	if (res != NULL && res->audit != NULL)
		return res->audit;
	if (res == NULL || res->body.len == 0)
		return NULL;
	if (memchr(res->body.data, '\0', res->body.len) != NULL ||
		!pg_verifymbstr(res->body.data, res->body.len, true))
		return psprintf("[%d bytes that are not UTF-8 text]", res->body.len);
	len = pg_mbcliplen(res->body.data, res->body.len, RESPONSE_KEEP_BYTES);
	return psprintf("%.*s%s", len, res->body.data, len < res->body.len ? "…" : "");
}


#define ATTEMPT_COLS 11
#define CHANGE_COLS 13

static const Oid attempt_types[ATTEMPT_COLS] = {INT8OID, TEXTOID, TIMESTAMPTZOID, FLOAT8OID, TEXTOID,
TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID};
static const Oid change_types[CHANGE_COLS] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID,
BOOLOID, FLOAT8OID, FLOAT8OID, TEXTOID, TEXTOID, TEXTOID, INT2OID};

#define ATTEMPT_INSERT \
	"INSERT INTO withdraw.attempt (withdrawal_id, kind, started_at, latency_ms, method," \
	" url, request_body, http_status, response_body, error, outcome)"
/*
 * A callback (withdraw_callback) may have moved the row while its poll was
 * in flight: then the row's newer state stands (u.from_state is the state
 * the job was claimed in) and only what the answer adds is kept.  A row in
 * review keeps the reason a person reads while its polls learn nothing
 * (decide_status leaves last_error NULL then); a new finding replaces it.
 */
#define CHANGE_SET \
	" SET state = CASE WHEN w.state = u.from_state THEN u.state ELSE w.state END," \
	" provider_status = CASE WHEN w.state = u.from_state" \
	"                   THEN coalesce(u.provider_status, w.provider_status) ELSE w.provider_status END," \
	" provider_id = coalesce(w.provider_id, u.provider_id)," \
	" last_error = CASE WHEN w.state <> u.from_state" \
	"                   OR (w.state = 'review' AND u.state = 'review' AND u.last_error IS NULL)" \
	"              THEN w.last_error ELSE u.last_error END," \
	" maybe_delivered = w.maybe_delivered OR u.maybe_delivered," \
	" needs_reconcile = CASE WHEN w.state = u.from_state THEN u.needs_reconcile ELSE w.needs_reconcile END," \
	" reconcile_cursor = u.reconcile_cursor," \
	" next_attempt_at = CASE WHEN u.retry_in >= 0 AND w.state = u.from_state" \
	"                   THEN now() + u.retry_in * interval '1 millisecond' ELSE w.next_attempt_at END," \
	" details = CASE WHEN u.details IS NULL THEN w.details ELSE w.details || u.details::jsonb END," \
	" next_poll_at = CASE WHEN w.state <> u.from_state THEN" \
	"                  CASE WHEN w.next_poll_at IS NOT NULL AND u.poll_in >= 0" \
	"                  THEN least(w.next_poll_at, now() + u.poll_in * interval '1 millisecond')" \
	"                  ELSE w.next_poll_at END" \
	"                WHEN u.poll_in >= 0 THEN now() + u.poll_in * interval '1 millisecond' END," \
	" submitted_at = CASE WHEN w.submitted_at IS NULL AND coalesce(w.provider_id, u.provider_id) IS NOT NULL" \
	"                THEN now() ELSE w.submitted_at END," \
	" strikes = u.strikes, polling = false," \
	" updated_at = now()"
#define CHANGE_COLUMNS \
	"u(id, state, provider_status, provider_id, last_error, maybe_delivered, needs_reconcile, retry_in," \
	" poll_in, reconcile_cursor, details, from_state, strikes)"

/* The values of the attempt row and of the change, as SPI arguments. */
static void
record_values(Job *job, HttpResponse *res, Change *change,
			  Datum *a, bool *an, Datum *c, bool *cn)
{
	char	   *url = job->request.url ? pstrdup(job->request.url) : pstrdup("");
	char	   *query = strchr(url, '?');
	char		flag;
	const char *body = keepable_body(res);
	const char *error = res ? res->error : "request not sent";

	/* the query string may carry keys and signatures: the audit copy has none */
	if (query)
		*query = '\0';
	memset(an, 0, sizeof(bool) * ATTEMPT_COLS);
	memset(cn, 0, sizeof(bool) * CHANGE_COLS);
	a[0] = Int64GetDatum(job->w.id);
	a[1] = CStringGetTextDatum(job->kind == JOB_CREATE ? "create" : "status");
	a[2] = TimestampTzGetDatum(job->started_at);
	a[3] = Float8GetDatum(res ? res->latency_ms : 0);
	an[3] = (res == NULL);
	a[4] = CStringGetTextDatum(job->request.method ? job->request.method : "-");
	a[5] = CStringGetTextDatum(url);
	a[6] = spi_text_or_null(job->request.audit, &flag);
	an[6] = (flag == 'n');
	a[7] = Int32GetDatum(res ? (int32) res->status : 0);
	an[7] = !(res && res->status > 0);
	a[8] = spi_text_or_null(body, &flag);
	an[8] = (flag == 'n');
	a[9] = spi_text_or_null(error, &flag);
	an[9] = (flag == 'n');
	a[10] = CStringGetTextDatum(change->outcome ? change->outcome : "-");

	c[0] = Int64GetDatum(job->w.id);
	c[1] = CStringGetTextDatum(change->state);
	c[2] = spi_text_or_null(change->provider_status, &flag);
	cn[2] = (flag == 'n');
	c[3] = spi_text_or_null(change->provider_id, &flag);
	cn[3] = (flag == 'n');
	c[4] = spi_text_or_null(change->last_error, &flag);
	cn[4] = (flag == 'n');
	c[5] = BoolGetDatum(change->maybe_delivered);
	c[6] = BoolGetDatum(change->needs_reconcile);
	c[7] = Float8GetDatum((double) change->retry_in_ms);
	c[8] = Float8GetDatum((double) change->poll_in_ms);
	c[9] = spi_text_or_null(change->reconcile_cursor, &flag);
	cn[9] = (flag == 'n');
	c[10] = spi_text_or_null(change->details, &flag);
	cn[10] = (flag == 'n');
	c[11] = CStringGetTextDatum(job->state);
	c[12] = Int16GetDatum((int16) Min(change->strikes, PG_INT16_MAX));
}

static char *
nulls_string(const bool *isnull, int n)
{
	char	   *s = palloc(n + 1);

	for (int i = 0; i < n; i++)
		s[i] = isnull[i] ? 'n' : ' ';
	s[n] = '\0';
	return s;
}

/* Records one exchange in withdraw.attempts and applies its change. */
void
store_record(Job *job, HttpResponse *res, Change *change)
{
	Datum		a[ATTEMPT_COLS];
	bool		an[ATTEMPT_COLS];
	Datum		c[CHANGE_COLS];
	bool		cn[CHANGE_COLS];

	if (attempt_plan == NULL)
	{
		attempt_plan = spi_prepare_kept(ATTEMPT_INSERT
										" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
										ATTEMPT_COLS, (Oid *) attempt_types);
		change_plan = spi_prepare_kept("UPDATE withdraw.withdrawal w" CHANGE_SET
									   " FROM (VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)) AS " CHANGE_COLUMNS
									   " WHERE w.id = u.id", CHANGE_COLS, (Oid *) change_types);
	}
	record_values(job, res, change, a, an, c, cn);
	if (SPI_execute_plan(attempt_plan, a, nulls_string(an, ATTEMPT_COLS), false, 0) != SPI_OK_INSERT)
		elog(ERROR, "recording an attempt failed");
	if (SPI_execute_plan(change_plan, c, nulls_string(cn, CHANGE_COLS), false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "updating withdrawal " INT64_FORMAT " failed", job->w.id);
}

/* A column of n values as an array Datum, for unnest(). */
static Datum
column_array(Datum *values, bool *nulls, int n, Oid type)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, type,
											  typlen, typbyval, typalign));
}

/*
 * Records n exchanges with two statements (one INSERT, one UPDATE over
 * unnest'ed arrays) instead of two per exchange.  All or nothing: the
 * caller falls back to store_record one by one if this fails.
 */
void
store_record_batch(int n, Job **jobs, HttpResponse **responses, Change *changes)
{
	Datum	   *acol[ATTEMPT_COLS];
	bool	   *anul[ATTEMPT_COLS];
	Datum	   *ccol[CHANGE_COLS];
	bool	   *cnul[CHANGE_COLS];
	Datum		args[Max(ATTEMPT_COLS, CHANGE_COLS)];

	if (batch_attempt_plan == NULL)
	{
		Oid			atypes[ATTEMPT_COLS];
		Oid			ctypes[CHANGE_COLS];

		for (int i = 0; i < ATTEMPT_COLS; i++)
			atypes[i] = get_array_type(attempt_types[i]);
		for (int i = 0; i < CHANGE_COLS; i++)
			ctypes[i] = get_array_type(change_types[i]);
		batch_attempt_plan = spi_prepare_kept(ATTEMPT_INSERT
											  " SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
											  ATTEMPT_COLS, atypes);
		batch_change_plan = spi_prepare_kept("UPDATE withdraw.withdrawal w" CHANGE_SET
											 " FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) AS " CHANGE_COLUMNS
											 " WHERE w.id = u.id AND w.id = ANY ($1)", CHANGE_COLS, ctypes);
	}
	for (int i = 0; i < ATTEMPT_COLS; i++)
	{
		acol[i] = palloc(sizeof(Datum) * n);
		anul[i] = palloc(sizeof(bool) * n);
	}
	for (int i = 0; i < CHANGE_COLS; i++)
	{
		ccol[i] = palloc(sizeof(Datum) * n);
		cnul[i] = palloc(sizeof(bool) * n);
	}
	for (int r = 0; r < n; r++)
	{
		Datum		a[ATTEMPT_COLS];
		bool		an[ATTEMPT_COLS];
		Datum		c[CHANGE_COLS];
		bool		cn[CHANGE_COLS];

		record_values(jobs[r], responses[r], &changes[r], a, an, c, cn);
		for (int i = 0; i < ATTEMPT_COLS; i++)
		{
			acol[i][r] = a[i];
			anul[i][r] = an[i];
		}
		for (int i = 0; i < CHANGE_COLS; i++)
		{
			ccol[i][r] = c[i];
			cnul[i][r] = cn[i];
		}
	}
	for (int i = 0; i < ATTEMPT_COLS; i++)
		args[i] = column_array(acol[i], anul[i], n, attempt_types[i]);
	if (SPI_execute_plan(batch_attempt_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "recording attempts failed");
	for (int i = 0; i < CHANGE_COLS; i++)
		args[i] = column_array(ccol[i], cnul[i], n, change_types[i]);
	if (SPI_execute_plan(batch_change_plan, args, NULL, false, 0) != SPI_OK_UPDATE ||
		SPI_processed != (uint64) n)
		elog(ERROR, "updating withdrawals failed");
}
