/*-------------------------------------------------------------------------
 *
 * desk.c
 *	  The payout desk, where it meets the C code: the account
 *	  options it adds, the allowlist and the approval threshold applied by
 *	  withdraw_create, the same checks again for a retry under the same
 *	  key (withdraw._desk_admit), and the expiry of approval requests run
 *	  by worker 0.  The desk's functions for people are PL/pgSQL in
 *	  the install script's payout-desk section.
 *
 * Account options:
 *	  "approval": {"<asset>": {"above": "<amount>", "quorum": 1..5,
 *				   "expires_ms": <ms>}}  a withdrawal of more than "above"
 *				   waits in state awaiting_approval;
 *	  "allowlist": {"enforce": true|false, "cooling_off_ms": <ms>}
 *				   with enforce, only destinations of withdraw.allowlist
 *				   past their cooling-off period are accepted;
 *	  "stuck_after_ms": <ms>  withdraw.health counts an open withdrawal
 *				   older than this as stuck.
 *
 * A withdrawal that needs neither costs a lookup in the options it already
 * has in hand: no query.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "amount_limits.h"
#include "desk.h"
#include "jsonutil.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(withdraw_desk_admit);

#define DAY_MS 86400000LL
#define MAX_PERIOD_MS (30 * DAY_MS)

#define option_error(...) \
	ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true), __VA_ARGS__))

/* An integer option within [min, max], or def when absent. */
static int64
period_option(JsonbContainer *c, const char *key, int64 min, int64 max, int64 def, const char *where)
{
	JsonbValue	v;
	int64		n;

	if (c == NULL || !json_get(c, key, &v))
		return def;
	if (v.type != jbvNumeric ||
		!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(v.val.numeric),
										  DirectFunctionCall1(numeric_floor,
															  NumericGetDatum(v.val.numeric)))))
		option_error(errmsg("option \"%s\": \"%s\" must be a whole number", where, key));
	/* compared as numeric first: a conversion error would not hide the statement */
	if (DatumGetBool(DirectFunctionCall2(numeric_lt, NumericGetDatum(v.val.numeric),
										 DirectFunctionCall1(int8_numeric, Int64GetDatum(min)))) ||
		DatumGetBool(DirectFunctionCall2(numeric_gt, NumericGetDatum(v.val.numeric),
										 DirectFunctionCall1(int8_numeric, Int64GetDatum(max)))))
		option_error(errmsg("option \"%s\": \"%s\" must be between " INT64_FORMAT " and " INT64_FORMAT,
							where, key, min, max));
	n = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
	return n;
}

/* Every key of container c is one of keys. */
static void
only_keys(JsonbContainer *c, const char *const *keys, const char *where)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	v;
	JsonbIteratorToken token;
	int			depth = 0;

	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_BEGIN_OBJECT)
			depth++;
		else if (token == WJB_END_OBJECT)
			depth--;
		else if (token == WJB_KEY && depth == 1)
		{
			char	   *key = pnstrdup(v.val.string.val, v.val.string.len);
			bool		known = false;

			for (const char *const *k = keys; *k; k++)
				known |= strcmp(*k, key) == 0;
			if (!known)
				option_error(errmsg("option \"%s\": unknown key \"%s\"", where, key));
		}
	}
}

static JsonbContainer *
object_option(Jsonb *options, const char *key, const char *example)
{
	JsonbValue	v;

	if (!json_get(&options->root, key, &v))
		return NULL;
	if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
		option_error(errmsg("option \"%s\" must be an object", key),
					 errhint("For example %s.", example));
	return v.val.binary.data;
}

void
desk_check_options(Jsonb *options)
{
	static const char *const approval_keys[] = {"above", "quorum", "expires_ms", NULL};
	static const char *const allowlist_keys[] = {"enforce", "cooling_off_ms", NULL};
	JsonbContainer *approval = object_option(options, "approval",
											 "{\"USDT\": {\"above\": \"1000\", \"quorum\": 2, \"expires_ms\": 86400000}}");
	JsonbContainer *allowlist = object_option(options, "allowlist",
											  "{\"enforce\": true, \"cooling_off_ms\": 86400000}");
	JsonbValue	v;

	if (approval != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(approval);
		JsonbIteratorToken token;
		char	   *asset = NULL;

		while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			JsonbContainer *rule;
			char	   *above;

			if (token == WJB_KEY)
				asset = pnstrdup(v.val.string.val, v.val.string.len);
			if (token != WJB_VALUE)
				continue;
			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				option_error(errmsg("option \"approval\": asset \"%s\" must map to an object", asset));
			rule = v.val.binary.data;
			only_keys(rule, approval_keys, "approval");
			above = json_get_text(rule, "above");
			if (above == NULL || !json_get(rule, "above", &v) || v.type != jbvString ||
				!is_positive_decimal(above))
				option_error(errmsg("option \"approval\": asset \"%s\" needs \"above\", a positive decimal string",
									asset),
							 errhint("Withdrawals of more than this amount wait for approval."));
			(void) period_option(rule, "quorum", 1, 5, 1, "approval");
			(void) period_option(rule, "expires_ms", 60000, MAX_PERIOD_MS, DAY_MS, "approval");
		}
	}
	if (allowlist != NULL)
	{
		only_keys(allowlist, allowlist_keys, "allowlist");
		if (json_get(allowlist, "enforce", &v) && v.type != jbvBool)
			option_error(errmsg("option \"allowlist\": \"enforce\" must be true or false"));
		(void) period_option(allowlist, "cooling_off_ms", 0, MAX_PERIOD_MS, DAY_MS, "allowlist");
	}
	(void) period_option(&options->root, "stuck_after_ms", 1000, MAX_PERIOD_MS, 3600000, "stuck_after_ms");
}

/* Is the account's allowlist enforced? */
static bool
allowlist_enforced(Jsonb *options)
{
	JsonbContainer *allowlist = json_get_container(&options->root, "allowlist");
	JsonbValue	v;

	return allowlist != NULL && json_get(allowlist, "enforce", &v) && v.type == jbvBool && v.val.boolean;
}

/* ERROR unless the allowlist lets this destination be paid now. */
static void
check_allowlist(int32 account_id, const char *account_name, const char *destination, const char *request_json)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[3];
	char		nulls[4] = "   ";
	char	   *why;

	if (plan == NULL)
	{
		Oid			types[3] = {INT4OID, TEXTOID, TEXTOID};

		plan = spi_prepare_kept("SELECT withdraw._allowlist_refusal($1, $2, $3::jsonb)", 3, types);
	}
	args[0] = Int32GetDatum(account_id);
	args[1] = spi_text_or_null(destination, &nulls[1]);
	args[2] = CStringGetTextDatum(request_json);
	if (SPI_execute_plan(plan, args, nulls, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading the allowlist failed");
	why = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (why != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("the destination of this withdrawal is not allowed for account \"%s\"", account_name),
				 errdetail("Account \"%s\" pays only destinations of its allowlist, and %s; nothing was stored.",
						   account_name, why),
				 errhint("An admin adds destinations with withdraw_allowlist_add; each becomes usable after the account's cooling-off period (withdraw.allowlist).")));
}

void
desk_admit(int32 account_id, const char *account_name, Jsonb *options, ValidatedRequest *v)
{
	if (allowlist_enforced(options))
		check_allowlist(account_id, account_name, v->destination, v->request_json);
}

/* The approval rule of asset, when amount is above its threshold; else NULL. */
static JsonbContainer *
approval_rule(Jsonb *options, const char *asset, const char *amount)
{
	JsonbContainer *approval = json_get_container(&options->root, "approval");
	JsonbContainer *rule;
	char	   *above;

	if (approval == NULL || asset == NULL)
		return NULL;
	rule = json_get_container(approval, asset);
	if (rule == NULL || (above = json_get_text(rule, "above")) == NULL)
		return NULL;
	if (!DatumGetBool(DirectFunctionCall2(numeric_gt,
										  DirectFunctionCall3(numeric_in, CStringGetDatum(amount),
															  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)),
										  DirectFunctionCall3(numeric_in, CStringGetDatum(above),
															  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)))))
		return NULL;
	return rule;
}

/* The withdrawal waits for approval under rule (withdraw._await_approval). */
static void
await_approval(int64 id, JsonbContainer *rule)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[4];

	if (plan == NULL)
	{
		Oid			types[4] = {INT8OID, TEXTOID, INT4OID, INT8OID};

		plan = spi_prepare_kept("SELECT withdraw._await_approval($1, $2::numeric, $3, $4)", 4, types);
	}
	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(json_get_text(rule, "above"));
	args[2] = Int32GetDatum((int32) period_option(rule, "quorum", 1, 5, 1, "approval"));
	args[3] = Int64GetDatum(period_option(rule, "expires_ms", 60000, MAX_PERIOD_MS, DAY_MS, "approval"));
	if (SPI_execute_plan(plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "requesting approval of withdrawal " INT64_FORMAT " failed", id);
}

void
desk_after_insert(int64 id, Jsonb *options, ValidatedRequest *v)
{
	JsonbContainer *rule = approval_rule(options, v->asset, v->amount);

	if (rule != NULL)
		await_approval(id, rule);
}

/*
 * SQL: withdraw._desk_admit(id) — for withdraw_retry under the same key:
 * the allowlist and the limits of a new withdrawal, checked again (the
 * failed row counts in neither); true when its amount is above the
 * account's approval threshold.  ERROR as withdraw_create would.
 */
Datum
withdraw_desk_admit(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	int32		account_id;
	char	   *account_name;
	Jsonb	   *options;
	char	   *asset;
	char	   *amount;
	char	   *destination;
	char	   *request;
	bool		approval;

	SPI_connect();
	if (SPI_execute_with_args("SELECT a.id, a.name, a.options, w.asset, w.amount::text, w.destination, w.request::text"
							  " FROM withdraw.withdrawal w JOIN withdraw.account a ON a.id = w.account_id"
							  " WHERE w.id = $1", 1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading withdrawal " INT64_FORMAT " failed", id);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("withdrawal " INT64_FORMAT " does not exist", id)));
	tuple = SPI_copytuple(SPI_tuptable->vals[0]);
	desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
	account_id = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
	account_name = SPI_getvalue(tuple, desc, 2);
	options = DatumGetJsonbPCopy(SPI_getbinval(tuple, desc, 3, &isnull));
	asset = SPI_getvalue(tuple, desc, 4);
	amount = SPI_getvalue(tuple, desc, 5);
	destination = SPI_getvalue(tuple, desc, 6);
	request = SPI_getvalue(tuple, desc, 7);

	if (allowlist_enforced(options))
		check_allowlist(account_id, account_name, destination, request);
	amount_limits_enforce(account_id, account_name, options, asset, amount);
	approval = approval_rule(options, asset, amount) != NULL;
	SPI_finish();
	PG_RETURN_BOOL(approval);
}

/*
 * Approval requests past their expiry: the withdrawal ends as expired
 * (it stops counting against the daily limit).  Worker 0, inside its
 * transaction, as withdraw_worker.  Returns how many expired.
 */
int
desk_expire_approvals(void)
{
	static SPIPlanPtr plan = NULL;

	if (plan == NULL)
		plan = spi_prepare_kept("UPDATE withdraw.withdrawal w SET state = 'expired', updated_at = pg_catalog.now(),"
								" last_error = 'its approval request expired at ' || r.expires_at::text"
								" FROM withdraw.approval_request r"
								" WHERE w.state = 'awaiting_approval' AND r.withdrawal_id = w.id"
								"   AND w.finished_at IS NULL AND w.next_poll_at IS NULL"	/* withdrawal_due_send */
								"   AND r.expires_at <= pg_catalog.now()", 0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "expiring approval requests failed");
	return (int) SPI_processed;
}
