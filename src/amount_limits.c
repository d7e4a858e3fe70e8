/*-------------------------------------------------------------------------
 *
 * amount_limits.c
 *	  Per-account caps on withdrawal amounts, usable by every provider
 *	  (rate limits are schedule.c's): account option "limits" =
 *	  {"<asset>": {"single": "<max per withdrawal>", "daily": "<max per
 *	  UTC day>"}}.  withdraw_create refuses a withdrawal over either cap
 *	  before anything is stored.
 *
 * The daily sum counts the account's withdrawals of that asset created
 * since midnight UTC that have not ended without paying (failed, rejected,
 * cancelled, expired).  Concurrent creates of one account and asset are
 * serialized by a transaction-level advisory lock taken only when a daily
 * limit applies, and the sum is read with a snapshot taken after the lock
 * (read_only = false), so two transactions cannot both squeeze under it.
 * Under REPEATABLE READ or SERIALIZABLE the transaction's snapshot is
 * older than the lock: there the check refuses to run rather than count
 * wrong.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "jsonutil.h"
#include "amount_limits.h"
#include "providers/provider.h"

/* keys of one asset's limits */
static const char *const limit_keys[] = {"single", "daily", NULL};

/* The limits of one asset, or NULL. */
static JsonbContainer *
asset_limits(Jsonb *options, const char *asset)
{
	JsonbContainer *limits = json_get_container(&options->root, "limits");

	if (limits == NULL || asset == NULL)
		return NULL;
	return json_get_container(limits, asset);
}

/* Does a daily limit apply to this asset of the account? */
bool
amount_limits_daily_applies(Jsonb *options, const char *asset)
{
	JsonbContainer *limits = asset_limits(options, asset);

	return limits != NULL && json_get_text(limits, "daily") != NULL;
}

/*
 * account_create/update: "limits" must be {asset: {single?, daily?}} of
 * decimal strings.  The statement carries credentials: errors hide it.
 */
void
amount_limits_check_option(Jsonb *options)
{
	JsonbValue	v;
	JsonbIterator *it;
	JsonbIteratorToken token;
	int			depth = 0;
	char	   *asset = NULL;

	if (!json_get(&options->root, "limits", &v))
		return;
	if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
				 errmsg("option \"limits\" must be an object of assets"),
				 errhint("For example {\"USDT\": {\"single\": \"1000\", \"daily\": \"20000\"}}.")));
	it = JsonbIteratorInit(v.val.binary.data);
	while ((token = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (token == WJB_BEGIN_OBJECT)
			depth++;
		else if (token == WJB_END_OBJECT)
			depth--;
		else if (token == WJB_KEY && depth == 1)
			asset = pnstrdup(v.val.string.val, v.val.string.len);
		else if (token == WJB_KEY && depth == 2)
		{
			char	   *key = pnstrdup(v.val.string.val, v.val.string.len);
			bool		known = false;

			for (const char *const *k = limit_keys; *k; k++)
				known |= strcmp(*k, key) == 0;
			if (!known)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
						 errmsg("option \"limits\": unknown limit \"%s\" for asset \"%s\"", key, asset),
						 errhint("The limits of an asset are \"single\" and \"daily\".")));
		}
		else if (token == WJB_VALUE && depth == 2 &&
				 (v.type != jbvString ||
				  !is_positive_decimal(pnstrdup(v.val.string.val, v.val.string.len))))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
					 errmsg("option \"limits\": the limits of asset \"%s\" must be positive decimal strings",
							asset)));
		else if (token == WJB_VALUE && depth == 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
					 errmsg("option \"limits\": asset \"%s\" must map to an object", asset)));
	}
}

static bool
numeric_greater(const char *a, const char *b)
{
	return DatumGetBool(DirectFunctionCall2(numeric_gt,
											DirectFunctionCall3(numeric_in, CStringGetDatum(a),
																ObjectIdGetDatum(InvalidOid),
																Int32GetDatum(-1)),
											DirectFunctionCall3(numeric_in, CStringGetDatum(b),
																ObjectIdGetDatum(InvalidOid),
																Int32GetDatum(-1))));
}

/*
 * withdraw_create: ERROR when amount of asset breaks the account's limits.
 * Runs inside the caller's SPI connection.
 */
void
amount_limits_enforce(int32 account_id, const char *account_name, Jsonb *options,
			   const char *asset, const char *amount)
{
	JsonbContainer *limits = asset_limits(options, asset);
	char	   *single;
	char	   *daily;

	if (limits == NULL)
		return;
	single = json_get_text(limits, "single");
	if (single != NULL && numeric_greater(amount, single))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("withdrawal of %s %s exceeds the single-withdrawal limit %s of account \"%s\"",
						amount, asset, single, account_name),
				 errhint("The account's option \"limits\" sets it; nothing was stored.")));
	daily = json_get_text(limits, "daily");
	if (daily != NULL && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the daily limit of account \"%s\" can only be enforced at READ COMMITTED", account_name),
				 errdetail("A snapshot older than the limit's lock could not see a concurrent withdrawal."),
				 errhint("Create withdrawals of accounts with daily limits in READ COMMITTED transactions.")));
	if (daily != NULL)
	{
		Oid			types[4] = {INT4OID, TEXTOID, TEXTOID, INT8OID};
		Datum		values[4];
		char	   *total;

		values[0] = Int32GetDatum(account_id);
		values[1] = CStringGetTextDatum(asset);
		values[2] = CStringGetTextDatum(amount);
		values[3] = Int64GetDatum(((int64) account_id << 32) |
								  hash_bytes((const unsigned char *) asset, strlen(asset)));
		if (SPI_execute_with_args("SELECT pg_advisory_xact_lock($4)", 4, types, values, NULL, false, 1)
			!= SPI_OK_SELECT ||
			SPI_execute_with_args("SELECT (coalesce(sum(amount), 0) + $3::numeric)::text"
								  " FROM withdraw.withdrawal"
								  " WHERE account_id = $1 AND asset = $2"
								  "  AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
								  "  AND state NOT IN ('failed', 'rejected', 'cancelled', 'expired')",
								  3, types, values, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "summing today's withdrawals failed");
		total = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (numeric_greater(total, daily))
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("withdrawal of %s %s would bring today's total of account \"%s\" to %s, over its daily limit %s",
							amount, asset, account_name, total, daily),
					 errhint("The day is counted in UTC; withdrawals that failed, were rejected, cancelled or expired do not count.")));
	}
}
