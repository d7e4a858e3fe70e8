/*-------------------------------------------------------------------------
 *
 * api.c
 *	  withdraw_create: the SQL entry point an application calls inside its
 *	  own transaction.
 *
 * The request is validated by its provider before anything is stored; a
 * bad request raises an ERROR naming the field and leaves nothing behind.
 * The row is the outbox: the worker sends it only once this transaction
 * has committed, and is woken at commit.
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

#include "amount_limits.h"
#include "desk.h"
#include "providers/provider.h"
#include "spi_util.h"
#include "withdraw.h"

PG_FUNCTION_INFO_V1(withdraw_create);
PG_FUNCTION_INFO_V1(withdraw_calling_role);

static SPIPlanPtr account_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr existing_plan = NULL;


/* Finds the account and its provider, or raises undefined_object. */
static const Provider *
lookup_account(const char *name, int32 *account_id, Jsonb **options)
{
	Datum		args[1];
	bool		isnull;
	char	   *provider_name;

	if (account_plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		account_plan = spi_prepare_kept("SELECT id, provider, options FROM withdraw.account WHERE name = $1",
									1, types);
	}
	args[0] = CStringGetTextDatum(name);
	if (SPI_execute_plan(account_plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "account lookup failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("account \"%s\" does not exist", name),
				 errhint("The first argument of withdraw_create names an account of withdraw.accounts; create one with withdraw_account_create.")));
	*account_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	provider_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	*options = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	return provider_lookup_or_error(provider_name);
}

/*
 * The form rules cached for this request (fiat_gateway: its pay_code);
 * without them the request cannot be checked, so it is refused with the
 * call that fetches them.
 */
static Jsonb *
cached_rules(const char *account_name, int32 account_id, char *key)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	bool		isnull;

	if (key == NULL)
		return NULL;			/* validate names the missing field */
	values[0] = Int32GetDatum(account_id);
	values[1] = CStringGetTextDatum(key);
	if (SPI_execute_with_args("SELECT rules FROM withdraw.form_rule"
							  " WHERE account_id = $1 AND rule_key = $2 AND rules IS NOT NULL",
							  2, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading the form rules failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no form rules are cached for \"%s\" of account \"%s\"", key, account_name),
				 errdetail("A request is checked against the provider's rules before it is stored; nothing was stored."),
				 errhint("Fetch them with SELECT withdraw_form_rules('%s', '%s'), or list the code in the account's option \"pay_codes\" so that the worker keeps them.",
						 account_name, key)));
	return DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Inserts the withdrawal; returns its id, or 0 when the key already exists. */
static int64
insert_withdrawal(int32 account_id, ValidatedRequest *v)
{
	Datum		args[7];
	char		nulls[8] = "       ";	/* seven flags and the NUL */
	bool		isnull;

	if (insert_plan == NULL)
	{
		Oid			types[7] = {INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, NAMEOID};

		insert_plan = spi_prepare_kept(
								   "INSERT INTO withdraw.withdrawal"
								   " (account_id, idempotency_key, request, asset, amount, destination, created_by)"
								   " VALUES ($1, $2, $3::jsonb, $4, $5::numeric, $6, $7)"
								   " ON CONFLICT (account_id, idempotency_key) DO NOTHING"
								   " RETURNING id", 7, types);
	}
	args[0] = Int32GetDatum(account_id);
	args[1] = CStringGetTextDatum(v->idempotency_key);
	args[2] = CStringGetTextDatum(v->request_json);
	args[3] = v->asset ? CStringGetTextDatum(v->asset) : (Datum) 0;
	nulls[3] = v->asset ? ' ' : 'n';
	args[4] = CStringGetTextDatum(v->amount);
	args[5] = v->destination ? CStringGetTextDatum(v->destination) : (Datum) 0;
	nulls[5] = v->destination ? ' ' : 'n';
	args[6] = DirectFunctionCall1(withdraw_calling_role, (Datum) 0);

	if (SPI_execute_plan(insert_plan, args, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "withdrawal insert failed");
	if (SPI_processed == 0)
		return 0;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * A withdrawal already stored under this key: the same request gets the
 * existing id back (a retried call is harmless); a different request
 * under the same key is an error.  0 when the key is new.
 */
static int64
existing_withdrawal(const char *account_name, int32 account_id, ValidatedRequest *v)
{
	Datum		args[3];
	bool		isnull;
	int64		id;
	bool		same;

	if (existing_plan == NULL)
	{
		Oid			types[3] = {INT4OID, TEXTOID, TEXTOID};

		existing_plan = spi_prepare_kept(
									 "SELECT id, request = $3::jsonb FROM withdraw.withdrawal"
									 " WHERE account_id = $1 AND idempotency_key = $2", 3, types);
	}
	args[0] = Int32GetDatum(account_id);
	args[1] = CStringGetTextDatum(v->idempotency_key);
	args[2] = CStringGetTextDatum(v->request_json);
	if (SPI_execute_plan(existing_plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "looking up idempotency key \"%s\" failed", v->idempotency_key);
	if (SPI_processed == 0)
		return 0;
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	same = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("idempotency key \"%s\" of account \"%s\" is already used by a different withdrawal",
						v->idempotency_key, account_name),
				 errdetail("Withdrawal " INT64_FORMAT " was created with this key and other fields.", id),
				 errhint("Use a new key for a new withdrawal; repeating the exact request returns the existing id.")));
	return id;
}

Datum
withdraw_create(PG_FUNCTION_ARGS)
{
	char	   *account_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *request = PG_GETARG_JSONB_P(1);
	const Provider *provider;
	ValidatedRequest validated;
	int32		account_id;
	Jsonb	   *options;
	Jsonb	   *rules = NULL;
	int64		id;

	SPI_connect();
	provider = lookup_account(account_name, &account_id, &options);
	if (provider->validate == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s accounts cannot create withdrawals", provider->name),
				 errhint("%s", provider->cannot_create_hint)));
	memset(&validated, 0, sizeof(validated));
	if (provider->form_rules != NULL)
		rules = cached_rules(account_name, account_id, provider->form_rules->key(request));
	provider->validate(request, options, rules, &validated);

	/*
	 * A repeated call returns the stored withdrawal.  Where a daily limit
	 * applies, look first, so that the limit does not count it twice;
	 * otherwise the insert finds out by itself.
	 */
	id = amount_limits_daily_applies(options, validated.asset) ?
		existing_withdrawal(account_name, account_id, &validated) : 0;
	if (id == 0)
	{
		desk_admit(account_id, account_name, options, &validated);
		amount_limits_enforce(account_id, account_name, options, validated.asset, validated.amount);
		id = insert_withdrawal(account_id, &validated);
		if (id == 0)			/* a concurrent call stored the same key */
			id = existing_withdrawal(account_name, account_id, &validated);
		else
		{
			WithdrawWakeWorkerAtCommit(account_id);
			desk_after_insert(id, options, &validated); /* approval threshold */
		}
	}
	SPI_finish();

	PG_RETURN_INT64(id);
}

/*
 * SQL: withdraw._calling_role() — the role that called the SECURITY DEFINER
 * function we are in (current_user there is the extension's owner).
 */
Datum
withdraw_calling_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DirectFunctionCall1(namein,
										CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false))));
}
