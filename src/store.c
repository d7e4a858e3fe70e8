/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The worker's queries that claim work: due rows, the accounts and
 *	  credentials their requests need, recovery after a stop.  Each query
 *	  is prepared once and kept.  Recording outcomes is store_record.c,
 *	  pruning prune.c; other files run the queries of their own concern
 *	  (remote.c the providers' lists, rules.c form rules, callback.c
 *	  callbacks).
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

static SPIPlanPtr candidates_plan[2];
static SPIPlanPtr take_plan[2];
static SPIPlanPtr reconcile_plan;
static SPIPlanPtr unsent_plan;
static SPIPlanPtr syncs_plan;

/*
 * Due work, per account: each account's earliest due rows come from an
 * index on (account_id, due time, id), so a claim reads about as many rows
 * as it returns, however long the backlog, and a blocked account is never
 * scanned.  The indexes' predicates name no state, so that the take is a
 * HOT update (see the withdrawal indexes in the install script): each
 * query repeats its index's predicate and filters the states itself.  A
 * withdrawal with a status poll scheduled is settled by the poll, never
 * sent; an unknown one is polled whenever a poll is scheduled (its poll
 * is a reconciliation).
 * With several workers, SKIP LOCKED keeps their claims apart: a
 * row one of them is claiming is passed over by the others.  (No filter
 * splits rows by id between workers: the planner, guessing such a filter
 * keeps one row in 200, chooses a sequential scan and a sort.)
 */
static const char *const candidates_sql[2] = {
	/* JOB_CREATE: new withdrawals and resends of unknown ones */
	"SELECT w.id, w.account_id, a.provider, a.options, w.state = 'unknown', w.first_sent_at,"
	" w.created_at FROM withdraw.account a CROSS JOIN LATERAL"
	" (SELECT w.id, w.account_id, w.state, w.first_sent_at, w.created_at, w.next_attempt_at"
	"  FROM withdraw.withdrawal w"
	"  WHERE w.account_id = a.id AND w.state IN ('queued', 'unknown') AND NOT w.needs_reconcile"
	"    AND w.next_attempt_at <= now() AND w.finished_at IS NULL AND w.next_poll_at IS NULL"
	"  ORDER BY w.next_attempt_at, w.id LIMIT $2"
	"  FOR UPDATE OF w SKIP LOCKED) w"
	" WHERE a.id <> ALL ($1) AND a.paused_at IS NULL"	/* a paused account sends nothing */
	" ORDER BY w.next_attempt_at, w.id LIMIT $2",
	/* JOB_STATUS: due polls, and reconciliation of unknown ones */
	"SELECT w.id, w.account_id, a.provider, a.options, w.state = 'unknown', w.first_sent_at,"
	" w.created_at FROM withdraw.account a CROSS JOIN LATERAL"
	" (SELECT w.id, w.account_id, w.state, w.first_sent_at, w.created_at, w.next_poll_at"
	"  FROM withdraw.withdrawal w"
	"  WHERE w.account_id = a.id AND w.state IN ('submitted', 'processing', 'review', 'unknown')"
	"    AND w.next_poll_at <= now() AND w.finished_at IS NULL"
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
							   "   AND next_poll_at > now() AND finished_at IS NULL AND" MINE,
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
	static SPIPlanPtr plan = NULL;	/* prepared once per backend: callbacks call this */

	if (plan == NULL)
		plan = spi_prepare_kept("SELECT a.id, a.name, a.provider, a.base_url, a.options, "
								SECRETS_CREDENTIALS("s")
								" FROM withdraw.account a JOIN withdraw.account_secret s ON s.account_id = a.id"
								" WHERE a.name = $1", 1, types);
	if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT)
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
		job->state = state_of_name(SPI_getvalue(tuple, desc, 16));
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
	job->w.account = store_account_from_tuple(tuple, desc, 1);
	MemoryContextSwitchTo(old);
	provider = job->w.account->provider;
	if (provider == NULL ||
		(kind == JOB_SYNC ? provider->sync == NULL : provider->form_rules == NULL))
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
