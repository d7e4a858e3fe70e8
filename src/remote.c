/*-------------------------------------------------------------------------
 *
 * remote.c
 *	  Records of the providers' own withdrawal lists: storing them, the
 *	  state of each account's scheduled sync, and the SQL functions that
 *	  fetch on demand (withdraw_sync, withdraw_refresh of a remote record).
 *
 * Both the worker (scheduled syncs, asynchronous) and the SQL functions
 * (blocking, in the caller's transaction) store records through
 * remote_upsert, so a record looks the same whoever fetched it.  A record
 * whose state is terminal never moves back; a change of state is recorded
 * in withdraw.events and announced by a trigger.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "jsonutil.h"
#include "remote.h"
#include "store.h"
#include "spi_util.h"
#include "withdraw.h"

#define MAX_SYNC_PAGES 100000
/* 9999-12-31 23:59:59 UTC, the last second a filter may name */
#define MAX_FILTER_SECONDS 253402300799

PG_FUNCTION_INFO_V1(withdraw_sync);
PG_FUNCTION_INFO_V1(withdraw_refresh_remote);

static SPIPlanPtr upsert_plan = NULL;



static Datum
digits_arg(const char *s, char *null_flag)
{
	bool		ok = s && s[0] && strlen(s) <= 18 && strspn(s, "0123456789") == strlen(s);

	return spi_text_or_null(ok ? s : NULL, null_flag);
}

static Datum
time_arg(TimestampTz t, char *null_flag)
{
	*null_flag = t != 0 ? ' ' : 'n';
	return TimestampTzGetDatum(t);
}

/* Stores one record; true when it was new or changed. */
bool
remote_upsert(int32 account_id, RemoteRecord *r)
{
	Datum		v[20];
	char		n[21] = "                    ";
	bool		changed;
	MemoryContext caller_cxt = CurrentMemoryContext;

	if (upsert_plan == NULL)
	{
		Oid			types[20] = {INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
			TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};

		upsert_plan = spi_prepare_kept(
								   "INSERT INTO withdraw.remote_withdrawal AS r"
								   " (account_id, provider_id, request_id, withdrawal_id, asset, amount, fee,"
								   "  fee_asset, status, state, txid, block_number, chain_id, nonce, deadline,"
								   "  requested_at, confirmed_at, raw, confirmations, real_fee, real_fee_asset)"
								   " VALUES ($1, $2, $3,"
								   "  (SELECT w.id FROM withdraw.withdrawal w"
								   "   WHERE w.account_id = $1 AND w.idempotency_key = $3),"
								   "  $4, $5::numeric, $6::numeric, $7, $8, $9, $10, $11::bigint, $12,"
								   "  $13::bigint, $14, $15, $16, $17::jsonb, $18::bigint, $19::numeric, $20)"
								   " ON CONFLICT (account_id, provider_id) DO UPDATE SET"
								   "  status = EXCLUDED.status,"
								   "  state = CASE WHEN r.state IN ('succeeded', 'failed', 'rejected', 'cancelled',"
								   "               'expired') THEN r.state ELSE EXCLUDED.state END,"
								   "  txid = coalesce(EXCLUDED.txid, r.txid),"
								   "  block_number = coalesce(EXCLUDED.block_number, r.block_number),"
								   "  fee = EXCLUDED.fee, deadline = EXCLUDED.deadline,"
								   "  confirmations = coalesce(EXCLUDED.confirmations, r.confirmations),"
								   "  real_fee = coalesce(EXCLUDED.real_fee, r.real_fee),"
								   "  real_fee_asset = coalesce(EXCLUDED.real_fee_asset, r.real_fee_asset),"
								   "  confirmed_at = coalesce(EXCLUDED.confirmed_at, r.confirmed_at),"
								   "  withdrawal_id = coalesce(r.withdrawal_id, EXCLUDED.withdrawal_id),"
								   "  raw = EXCLUDED.raw, updated_at = now()"
								   " WHERE r.raw IS DISTINCT FROM EXCLUDED.raw"
								   " RETURNING id", 20, types);
	}
	v[0] = Int32GetDatum(account_id);
	v[1] = CStringGetTextDatum(r->provider_id);
	v[2] = spi_text_or_null(r->request_id, &n[2]);
	v[3] = spi_text_or_null(r->asset, &n[3]);
	v[4] = spi_text_or_null(is_decimal(r->amount) ? r->amount : NULL, &n[4]);
	v[5] = spi_text_or_null(is_decimal(r->fee) ? r->fee : NULL, &n[5]);
	v[6] = spi_text_or_null(r->fee_asset, &n[6]);
	v[7] = spi_text_or_null(r->status, &n[7]);
	v[8] = CStringGetTextDatum(state_name(r->state));
	v[9] = spi_text_or_null(r->txid, &n[9]);
	v[10] = digits_arg(r->block_number, &n[10]);
	v[11] = spi_text_or_null(r->chain_id, &n[11]);
	v[12] = digits_arg(r->nonce, &n[12]);
	v[13] = time_arg(r->deadline, &n[13]);
	v[14] = time_arg(r->requested_at, &n[14]);
	v[15] = time_arg(r->confirmed_at, &n[15]);
	v[16] = CStringGetTextDatum(r->raw);
	v[17] = digits_arg(r->confirmations, &n[17]);
	v[18] = spi_text_or_null(is_decimal(r->real_fee) ? r->real_fee : NULL, &n[18]);
	v[19] = spi_text_or_null(r->real_fee_asset, &n[19]);
	if (SPI_execute_plan(upsert_plan, v, n, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "storing a remote withdrawal failed");
	changed = SPI_processed > 0;

	/*
	 * The RETURNING rows would otherwise live until SPI_finish, and SPI
	 * leaves us in its procedure context: back to the caller's, so that a
	 * caller that resets its own context per page (withdraw_sync) frees
	 * everything a page needed.
	 */
	SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(caller_cxt);
	return changed;
}

/*
 * Where an incremental sync starts: the oldest record still open (it may
 * have changed) or else the newest seen, a minute early; 0 (everything)
 * the first time.
 */
TimestampTz
remote_sync_since(int32 account_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(account_id)};
	bool		isnull;
	Datum		since;

	if (SPI_execute_with_args("SELECT least((SELECT min(requested_at) FROM withdraw.remote_withdrawal"
							  "   WHERE account_id = $1 AND state IN ('submitted', 'processing', 'review')),"
							  "  (SELECT high_water FROM withdraw.sync_state WHERE account_id = $1))"
							  " - interval '1 minute'", 1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading the sync state failed");
	since = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(since);
}

/*
 * Where a sync of a list walked by id starts: after the highest numeric
 * provider id stored for the account ("0" the first time).
 */
char *
remote_sync_position(int32 account_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(account_id)};

	if (SPI_execute_with_args("SELECT coalesce(max(provider_id::numeric), 0)::text"
							  " FROM withdraw.remote_withdrawal"
							  " WHERE account_id = $1 AND provider_id ~ '^[0-9]{1,18}$'",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading the sync position failed");
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* After a complete sync: the next one is due in interval_ms. */
void
remote_sync_done(int32 account_id, TimestampTz high_water, int64 changed, int interval_ms)
{
	Oid			types[4] = {INT4OID, TIMESTAMPTZOID, INT8OID, FLOAT8OID};
	Datum		values[4];
	char		nulls[5] = "    ";

	values[0] = Int32GetDatum(account_id);
	values[1] = time_arg(high_water, &nulls[1]);
	values[2] = Int64GetDatum(changed);
	values[3] = Float8GetDatum(interval_ms);
	if (SPI_execute_with_args("UPDATE withdraw.sync_state SET last_sync_at = now(),"
							  " next_sync_at = now() + $4 * interval '1 millisecond',"
							  " high_water = greatest(high_water, $2), failures = 0, last_error = NULL,"
							  " records_changed = records_changed + $3"
							  " WHERE account_id = $1", 4, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "updating the sync state failed");
}

/* After a failed sync: try again after retry_ms, and say why. */
void
remote_sync_failed(int32 account_id, const char *error, int64 retry_ms)
{
	Oid			types[3] = {INT4OID, TEXTOID, FLOAT8OID};
	Datum		values[3];

	values[0] = Int32GetDatum(account_id);
	values[1] = CStringGetTextDatum(error);
	values[2] = Float8GetDatum((double) retry_ms);
	if (SPI_execute_with_args("UPDATE withdraw.sync_state SET failures = failures + 1,"
							  " last_error = $2, last_error_at = now(),"
							  " next_sync_at = now() + $3 * interval '1 millisecond'"
							  " WHERE account_id = $1", 3, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "updating the sync state failed");
}

static void
fetch_failed(WithdrawAccount *account, SyncResult *out)
{
	ereport(ERROR,
			(errcode(out->auth_failed ? ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION :
					 out->not_found ? ERRCODE_NO_DATA_FOUND : ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not fetch the withdrawal list of account \"%s\"", account->name),
			 errdetail("%s", out->error)));
}

/* Unix seconds from 1970 to the end of year 9999; ERROR naming the filter otherwise. */
static TimestampTz
filter_time(const char *field, int64 seconds)
{
	if (seconds < 0 || seconds > MAX_FILTER_SECONDS)
		request_field_error("withdraw_sync", field,
							"must be Unix seconds from 0 to " CppAsString2(MAX_FILTER_SECONDS), NULL);
	return timestamp_from_unix(seconds);
}

/* Filters for withdraw_sync: status, token (strings), start, end (Unix seconds). */
static void
read_filters(Jsonb *filters, SyncCursor *cursor)
{
	static const char *const known[] = {"status", "token", "start", "end", NULL};
	int64		seconds;

	request_reject_unknown_fields(filters, "withdraw_sync", known);
	cursor->status = request_string(filters, "withdraw_sync", "status", false, 32);
	cursor->token = request_string(filters, "withdraw_sync", "token", false, 32);
	if (request_int(filters, "withdraw_sync", "start", false, &seconds))
		cursor->since = filter_time("start", seconds);
	if (request_int(filters, "withdraw_sync", "end", false, &seconds))
		cursor->until = filter_time("end", seconds);
}

/*
 * SQL: withdraw_sync(account, filters) — pages through the provider's list
 * now, in the caller's transaction; returns the records added or changed.
 * Without filters this is the incremental sync the worker also runs, and
 * it counts as one (the schedule restarts from now).
 *
 * Pages are streamed: each page's records are stored before the next page
 * is fetched, and everything a page needed (request, answer, parsed
 * records) lives in a context reset before the next one, so memory stays
 * that of one page however long the list.  Only the cursor's position is
 * carried over.
 */
Datum
withdraw_sync(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *filters = PG_GETARG_JSONB_P(1);
	bool		filtered = JB_ROOT_COUNT(filters) > 0;
	WithdrawAccount *account;
	SyncCursor	cursor;
	TimestampTz high_water = 0;
	int64		changed = 0;
	AccountPolicy policy;
	MemoryContext outer;
	MemoryContext page_cxt;
	char	   *position;

	SPI_connect();
	outer = CurrentMemoryContext;
	page_cxt = AllocSetContextCreate(outer, "withdraw_sync page", ALLOCSET_DEFAULT_SIZES);
	account = store_account_by_name(name);
	if (account->provider->sync == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s accounts have no withdrawal list to sync", account->provider->name)));
	account_policy(account->provider, account->options, &policy);
	memset(&cursor, 0, sizeof(cursor));
	if (filtered)
		read_filters(filters, &cursor);
	else if (account->provider->sync->by_id)
		cursor.position = remote_sync_position(account->id);
	else
		cursor.since = remote_sync_since(account->id);

	position = cursor.position;
	for (;;)
	{
		HttpRequest req;
		HttpResponse *res;
		SyncResult	out;
		ListCell   *lc;

		CHECK_FOR_INTERRUPTS();
		MemoryContextSwitchTo(page_cxt);
		account->provider->sync->build(account, &cursor, &req);
		req.timeout_ms = policy.request_timeout_ms;
		res = http_perform(&req);
		memset(&out, 0, sizeof(out));
		account->provider->sync->parse(account, &cursor, res, &out);
		if (out.error)
			fetch_failed(account, &out);
		foreach(lc, out.records)
		{
			RemoteRecord *r = lfirst(lc);

			changed += remote_upsert(account->id, r) ? 1 : 0;
			high_water = Max(high_water, r->requested_at);
		}
		MemoryContextSwitchTo(outer);
		if (cursor.position != position)
		{
			/* the provider moved it: keep it, in the outer context */
			if (position != NULL)
				pfree(position);
			position = cursor.position = cursor.position ? pstrdup(cursor.position) : NULL;
		}
		MemoryContextReset(page_cxt);
		if (!out.more || ++cursor.pages >= MAX_SYNC_PAGES)
			break;
	}
	if (!filtered)
		remote_sync_done(account->id, high_water, changed, policy.sync_interval_ms);
	SPI_finish();
	PG_RETURN_INT32((int32) changed);
}

/* SQL: withdraw._refresh_remote(account, provider_id) — one lookup, stored. */
Datum
withdraw_refresh_remote(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *provider_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WithdrawAccount *account;
	HttpRequest req;
	SyncResult	out;
	AccountPolicy policy;

	SPI_connect();
	account = store_account_by_name(name);
	if (account->provider->sync == NULL || account->provider->sync->build_lookup == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s accounts have no withdrawal list to look up", account->provider->name)));
	account_policy(account->provider, account->options, &policy);
	account->provider->sync->build_lookup(account, provider_id, &req);
	req.timeout_ms = policy.request_timeout_ms;
	memset(&out, 0, sizeof(out));
	account->provider->sync->parse_lookup(account, http_perform(&req), &out);
	if (out.error)
		fetch_failed(account, &out);
	remote_upsert(account->id, linitial(out.records));
	SPI_finish();
	PG_RETURN_VOID();
}
