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
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "store.h"
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

static const char *const candidates_sql[2] = {
	/* JOB_CREATE: new withdrawals and resends of unknown ones */
	"SELECT w.id, w.account_id, a.provider, a.options, w.state = 'unknown', w.first_sent_at,"
	" w.created_at FROM withdraw.withdrawal w JOIN withdraw.account a ON a.id = w.account_id"
	" WHERE w.state IN ('queued', 'unknown') AND NOT w.needs_reconcile"
	"   AND w.next_attempt_at <= now()"
	"   AND w.account_id <> ALL ($1) AND w.id <> ALL ($2)"
	" ORDER BY w.next_attempt_at, w.id LIMIT $3"
	" FOR UPDATE OF w SKIP LOCKED",
	/* JOB_STATUS: due polls, and reconciliation of unknown ones */
	"SELECT w.id, w.account_id, a.provider, a.options, w.state = 'unknown', w.first_sent_at,"
	" w.created_at FROM withdraw.withdrawal w JOIN withdraw.account a ON a.id = w.account_id"
	" WHERE w.state IN ('submitted', 'processing', 'review', 'unknown')"
	"   AND w.next_poll_at <= now() AND (w.state <> 'unknown' OR w.needs_reconcile)"
	"   AND w.account_id <> ALL ($1) AND w.id <> ALL ($2)"
	" ORDER BY w.next_poll_at, w.id LIMIT $3"
	" FOR UPDATE OF w SKIP LOCKED"
};

#define TAKE_RETURNING \
	" FROM withdraw.account a JOIN withdraw.account_secret s ON s.account_id = a.id" \
	" WHERE w.id = ANY ($1) AND a.id = w.account_id" \
	" RETURNING w.id, a.id, a.name, a.provider, a.base_url, a.options, s.credentials," \
	"  w.idempotency_key, w.request, w.amount::text, w.provider_id, w.created_at," \
	"  w.first_sent_at, w.attempts, w.maybe_delivered, w.state"

static const char *const take_sql[2] = {
	"UPDATE withdraw.withdrawal w"
	" SET state = 'sending', attempts = w.attempts + 1, last_error = NULL,"
	"     first_sent_at = coalesce(w.first_sent_at, now()), updated_at = now()"
	TAKE_RETURNING,
	/* a poll in flight is also excluded by id; this only guards a crash */
	"UPDATE withdraw.withdrawal w"
	" SET next_poll_at = now() + interval '1 minute'"
	TAKE_RETURNING
};


static Datum
int_array(List *list, bool is_int8)
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
 * After a worker stops: rows left in 'sending' have an unknown fate, and
 * polls it had claimed (next_poll_at pushed a minute ahead) are due now.
 * Returns the number of rows found in 'sending'.
 */
int
store_recover(void)
{
	int			rc;
	int			sending;

	rc = SPI_execute("UPDATE withdraw.withdrawal"
					 " SET state = 'unknown', maybe_delivered = true,"
					 "     next_attempt_at = now(), updated_at = now(),"
					 "     last_error = 'the worker stopped while this request was in flight'"
					 " WHERE state = 'sending'", false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "recovery of sending withdrawals failed: %s", SPI_result_code_string(rc));
	sending = (int) SPI_processed;

	rc = SPI_execute("UPDATE withdraw.withdrawal SET next_poll_at = now()"
					 " WHERE state IN ('submitted', 'processing', 'review', 'unknown')"
					 "   AND next_poll_at > now()", false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "recovery of status polls failed: %s", SPI_result_code_string(rc));

	rc = SPI_execute("UPDATE withdraw.sync_state SET next_sync_at = now()"
					 " WHERE next_sync_at > now() AND last_error IS NULL", false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "recovery of syncs failed: %s", SPI_result_code_string(rc));
	return sending;
}

List *
store_candidates(JobKind kind, List *excluded_accounts, List *excluded_ids, int limit,
				 MemoryContext cxt)
{
	Datum		args[3];
	List	   *result = NIL;

	if (candidates_plan[kind] == NULL)
	{
		Oid			types[3] = {INT4ARRAYOID, INT8ARRAYOID, INT4OID};

		candidates_plan[kind] = spi_prepare_kept(candidates_sql[kind], 3, types);
	}
	args[0] = int_array(excluded_accounts, false);
	args[1] = int_array(excluded_ids, true);
	args[2] = Int32GetDatum(limit);
	if (SPI_execute_plan(candidates_plan[kind], args, NULL, false, 0) != SPI_OK_SELECT)
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

/* Marks the chosen candidates taken and returns them as jobs. */
List *
store_take(JobKind kind, List *ids, MemoryContext parent)
{
	Datum		args[1];
	List	   *jobs = NIL;

	if (ids == NIL)
		return NIL;
	if (take_plan[kind] == NULL)
	{
		Oid			types[1] = {INT8ARRAYOID};

		take_plan[kind] = spi_prepare_kept(take_sql[kind], 1, types);
	}
	args[0] = int_array(ids, true);
	if (SPI_execute_plan(take_plan[kind], args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "taking withdrawals failed");

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext cxt = AllocSetContextCreate(parent, "withdraw job", ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		Job		   *job = palloc0(sizeof(Job));
		WithdrawAccount *account = palloc0(sizeof(WithdrawAccount));
		bool		isnull;

		job->cxt = cxt;
		job->kind = kind;
		job->w.account = account;
		job->w.id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		account->id = DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull));
		account->name = SPI_getvalue(tuple, desc, 3);
		account->provider = provider_lookup(SPI_getvalue(tuple, desc, 4));
		account->base_url = SPI_getvalue(tuple, desc, 5);
		account->options = DatumGetJsonbPCopy(SPI_getbinval(tuple, desc, 6, &isnull));
		account->credentials = DatumGetJsonbPCopy(SPI_getbinval(tuple, desc, 7, &isnull));
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
		MemoryContextSwitchTo(old);
		jobs = lappend(jobs, job);
	}
	return jobs;
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
								  " RETURNING a.id, a.name, a.provider, a.base_url, a.options, sec.credentials,"
								  "  s.failures", 2, types);
	}
	args[0] = int_array(excluded_accounts, false);
	args[1] = Int32GetDatum(limit);
	if (SPI_execute_plan(syncs_plan, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "claiming syncs failed");

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext cxt = AllocSetContextCreate(parent, "withdraw sync job", ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		Job		   *job = palloc0(sizeof(Job));
		WithdrawAccount *account = palloc0(sizeof(WithdrawAccount));
		bool		isnull;

		job->cxt = cxt;
		job->page_cxt = AllocSetContextCreate(cxt, "withdraw sync page", ALLOCSET_DEFAULT_SIZES);
		job->kind = JOB_SYNC;
		job->state = "sync";
		job->w.account = account;
		account->id = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
		account->name = SPI_getvalue(tuple, desc, 2);
		account->provider = provider_lookup(SPI_getvalue(tuple, desc, 3));
		account->base_url = SPI_getvalue(tuple, desc, 4);
		account->options = DatumGetJsonbPCopy(SPI_getbinval(tuple, desc, 5, &isnull));
		account->credentials = DatumGetJsonbPCopy(SPI_getbinval(tuple, desc, 6, &isnull));
		job->attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 7, &isnull));
		MemoryContextSwitchTo(old);
		if (account->provider == NULL || account->provider->build_sync == NULL)
		{
			MemoryContextDelete(cxt);
			continue;
		}
		jobs = lappend(jobs, job);
	}
	return jobs;
}

/* Past the idempotency window a resend is unsafe: only ask for the status. */
void
store_mark_reconcile(List *ids)
{
	Datum		args[1];

	if (ids == NIL)
		return;
	if (reconcile_plan == NULL)
	{
		Oid			types[1] = {INT8ARRAYOID};

		reconcile_plan = spi_prepare_kept(
									  "UPDATE withdraw.withdrawal SET needs_reconcile = true, next_poll_at = now(),"
									  " last_error = 'past the idempotency window or the deadline: settled by status query only'"
									  " WHERE id = ANY ($1) AND state = 'unknown'", 1, types);
	}
	args[0] = int_array(ids, true);
	if (SPI_execute_plan(reconcile_plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "marking withdrawals for reconciliation failed");
}

/* Queued withdrawals past their account's deadline are never sent. */
void
store_fail_unsent(List *ids)
{
	Datum		args[1];

	if (ids == NIL)
		return;
	if (unsent_plan == NULL)
	{
		Oid			types[1] = {INT8ARRAYOID};

		unsent_plan = spi_prepare_kept(
								   "UPDATE withdraw.withdrawal SET state = 'failed',"
								   " last_error = 'not sent before the account''s deadline_ms passed'"
								   " WHERE id = ANY ($1) AND state = 'queued'", 1, types);
	}
	args[0] = int_array(ids, true);
	if (SPI_execute_plan(unsent_plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "failing expired withdrawals failed");
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
		Oid			types[2] = {INT4OID, INT4OID};

		prune_plan[0] = spi_prepare_kept(
									 "DELETE FROM withdraw.attempt WHERE id IN (SELECT id FROM withdraw.attempt"
									 " WHERE started_at < now() - $1 * interval '1 second' ORDER BY id LIMIT $2)",
									 2, types);
		prune_plan[1] = spi_prepare_kept(
									 "DELETE FROM withdraw.event WHERE id IN (SELECT id FROM withdraw.event"
									 " WHERE at < now() - $1 * interval '1 second' ORDER BY id LIMIT $2)",
									 2, types);
	}
	args[0] = Int32GetDatum(retention_s);
	args[1] = Int32GetDatum(batch);
	for (int i = 0; i < 2; i++)
	{
		if (SPI_execute_plan(prune_plan[i], args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "pruning old history failed");
		deleted += (int) SPI_processed;
	}
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

	if (res == NULL || res->body.len == 0)
		return NULL;
	if (memchr(res->body.data, '\0', res->body.len) != NULL ||
		!pg_verifymbstr(res->body.data, res->body.len, true))
		return psprintf("[%d bytes that are not UTF-8 text]", res->body.len);
	len = pg_mbcliplen(res->body.data, res->body.len, RESPONSE_KEEP_BYTES);
	return psprintf("%.*s%s", len, res->body.data, len < res->body.len ? "…" : "");
}


/* Records the exchange in withdraw.attempts and applies the change. */
void
store_record(Job *job, HttpResponse *res, Change *change)
{
	Datum		a[11];
	char		an[12] = "           ";
	Datum		c[9];
	char		cn[10] = "         ";
	char	   *url = job->request.url ? pstrdup(job->request.url) : pstrdup("");
	char	   *query = strchr(url, '?');

	if (attempt_plan == NULL)
	{
		Oid			atypes[11] = {INT8OID, TEXTOID, TIMESTAMPTZOID, FLOAT8OID, TEXTOID, TEXTOID,
		TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID};
		Oid			ctypes[9] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, BOOLOID,
		FLOAT8OID, FLOAT8OID};

		attempt_plan = spi_prepare_kept(
									"INSERT INTO withdraw.attempt (withdrawal_id, kind, started_at, latency_ms, method,"
									" url, request_body, http_status, response_body, error, outcome)"
									" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)", 11, atypes);
		change_plan = spi_prepare_kept(
								   "UPDATE withdraw.withdrawal SET state = $2,"
								   " provider_status = coalesce($3, provider_status),"
								   " provider_id = coalesce(provider_id, $4),"
								   " last_error = $5,"
								   " maybe_delivered = maybe_delivered OR $6,"
								   " needs_reconcile = $7,"
								   " next_attempt_at = CASE WHEN $8 >= 0 THEN now() + $8 * interval '1 millisecond'"
								   "                   ELSE next_attempt_at END,"
								   " next_poll_at = CASE WHEN $9 >= 0 THEN now() + $9 * interval '1 millisecond' END,"
								   " submitted_at = CASE WHEN submitted_at IS NULL AND coalesce(provider_id, $4) IS NOT NULL"
								   "                THEN now() ELSE submitted_at END,"
								   " updated_at = now()"
								   " WHERE id = $1", 9, ctypes);
	}

	/* the query string may carry keys and signatures: the audit copy has none */
	if (query)
		*query = '\0';
	a[0] = Int64GetDatum(job->w.id);
	a[1] = CStringGetTextDatum(job->kind == JOB_CREATE ? "create" : "status");
	a[2] = TimestampTzGetDatum(job->started_at);
	a[3] = Float8GetDatum(res ? res->latency_ms : 0);
	an[3] = res ? ' ' : 'n';
	a[4] = CStringGetTextDatum(job->request.method ? job->request.method : "-");
	a[5] = CStringGetTextDatum(url);
	a[6] = spi_text_or_null(job->request.audit, &an[6]);
	a[7] = Int32GetDatum(res ? (int32) res->status : 0);
	an[7] = (res && res->status > 0) ? ' ' : 'n';
	a[8] = spi_text_or_null(keepable_body(res), &an[8]);
	a[9] = spi_text_or_null(res ? res->error : "request not sent", &an[9]);
	a[10] = CStringGetTextDatum(change->outcome ? change->outcome : "-");
	if (SPI_execute_plan(attempt_plan, a, an, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "recording an attempt failed");

	c[0] = Int64GetDatum(job->w.id);
	c[1] = CStringGetTextDatum(change->state);
	c[2] = spi_text_or_null(change->provider_status, &cn[2]);
	c[3] = spi_text_or_null(change->provider_id, &cn[3]);
	c[4] = spi_text_or_null(change->last_error, &cn[4]);
	c[5] = BoolGetDatum(change->maybe_delivered);
	c[6] = BoolGetDatum(change->needs_reconcile);
	c[7] = Float8GetDatum((double) change->retry_in_ms);
	c[8] = Float8GetDatum((double) change->poll_in_ms);
	if (SPI_execute_plan(change_plan, c, cn, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "updating withdrawal " INT64_FORMAT " failed", job->w.id);
}
