/*-------------------------------------------------------------------------
 *
 * rules.c
 *	  Form rules of providers that publish them (fiat_gateway's
 *	  /channel/formRule per pay_code): the cache in withdraw.form_rule that
 *	  withdraw_create checks requests against, the worker's scheduled
 *	  refresh of it, and withdraw_form_rules, which fetches one now.
 *
 * A pay_code gets a row when an account lists it in its option
 * "pay_codes" ({"1004": "KRW"}) or when withdraw_form_rules fetches it;
 * the worker then refreshes every row each rules_ttl_ms.  A failed
 * refresh keeps the last good rules and records the error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "job.h"
#include "rules.h"
#include "secrets.h"
#include "spi_util.h"
#include "store.h"

PG_FUNCTION_INFO_V1(withdraw_form_rules);

static SPIPlanPtr take_plan = NULL;
static SPIPlanPtr store_plan = NULL;

static int
rules_ttl_ms(WithdrawAccount *account)
{
	return account_option_int(account->options, "rules_ttl_ms", 3600 * 1000, 1000, INT_MAX);
}

/* Stores a fetch of one pay_code's rules: the rules, or the error beside the last good ones. */
void
rules_store(WithdrawAccount *account, const char *key, const char *currency,
			const char *rules, const char *error)
{
	Datum		args[6];
	char		nulls[7] = "      ";

	if (store_plan == NULL)
	{
		/* $6 float8: pg_catalog's *(float8, interval) is an exact match */
		Oid			types[6] = {INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, FLOAT8OID};

		store_plan = spi_prepare_kept(
								  "INSERT INTO withdraw.form_rule AS r (account_id, rule_key, currency, rules,"
								  "  fetched_at, last_error, next_fetch_at)"
								  " VALUES ($1, $2, $3, $4::jsonb, CASE WHEN $4 IS NOT NULL THEN now() END, $5,"
								  "  now() + $6 * interval '1 millisecond')"
								  " ON CONFLICT (account_id, rule_key) DO UPDATE SET"
								  "  currency = coalesce(EXCLUDED.currency, r.currency),"
								  "  rules = coalesce(EXCLUDED.rules, r.rules),"
								  "  fetched_at = coalesce(EXCLUDED.fetched_at, r.fetched_at),"
								  "  last_error = EXCLUDED.last_error,"
								  "  last_error_at = CASE WHEN EXCLUDED.last_error IS NOT NULL THEN now() END,"
								  "  next_fetch_at = EXCLUDED.next_fetch_at", 6, types);
	}
	args[0] = Int32GetDatum(account->id);
	args[1] = CStringGetTextDatum(key);
	args[2] = spi_text_or_null(currency, &nulls[2]);
	args[3] = spi_text_or_null(rules, &nulls[3]);
	args[4] = spi_text_or_null(error, &nulls[4]);
	/* a failure is tried again sooner than the next refresh */
	args[5] = Float8GetDatum((double) (error ? Min(rules_ttl_ms(account), 60 * 1000) : rules_ttl_ms(account)));
	if (SPI_execute_plan(store_plan, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "storing form rules failed");
}

/*
 * Claims the rules due for refresh as JOB_RULES jobs; each is pushed ten
 * minutes ahead until its fetch is recorded (recovery needs nothing more).
 */
List *
rules_take_due(List *excluded_accounts, int limit, MemoryContext parent)
{
	Datum		args[2];
	List	   *jobs = NIL;

	if (take_plan == NULL)
	{
		Oid			types[2] = {INT4OID, INT4ARRAYOID};

		take_plan = spi_prepare_kept(
								 "UPDATE withdraw.form_rule r SET next_fetch_at = now() + interval '10 minutes'"
								 " FROM withdraw.account a JOIN withdraw.account_secret sec ON sec.account_id = a.id"
								 " WHERE (r.account_id, r.rule_key) IN (SELECT account_id, rule_key"
								 "   FROM withdraw.form_rule WHERE next_fetch_at <= now() AND account_id <> ALL ($2)"
								 "   ORDER BY next_fetch_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
								 "   AND a.id = r.account_id"
								 " RETURNING a.id, a.name, a.provider, a.base_url, a.options, "
								 SECRETS_CREDENTIALS("sec") ","
								 "  r.rule_key, r.currency", 2, types);
	}
	args[0] = Int32GetDatum(limit);
	args[1] = store_int_array(excluded_accounts, false);
	if (SPI_execute_plan(take_plan, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "claiming form rules failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Job		   *job = store_account_job(tuple, desc, JOB_RULES, parent);
		char	   *currency;

		if (job == NULL)
			continue;
		currency = SPI_getvalue(tuple, desc, 8);
		job->rule_key = MemoryContextStrdup(job->cxt, SPI_getvalue(tuple, desc, 7));
		job->rule_currency = currency ? MemoryContextStrdup(job->cxt, currency) : NULL;
		jobs = lappend(jobs, job);
	}
	return jobs;
}

/* The worker got an answer (or none) to a JOB_RULES fetch. */
void
rules_record(Job *job, HttpResponse *res)
{
	char	   *error = NULL;
	char	   *rules = job->w.account->provider->form_rules->parse(job->w.account, job->rule_key, res, &error);

	rules_store(job->w.account, job->rule_key, job->rule_currency, rules, error);
}

/*
 * SQL: withdraw_form_rules(account, pay_code, currency) — fetches the
 * rules now, in the caller's transaction, caches them and returns them;
 * NULL with a WARNING when the fetch fails (the error is kept).
 */
Datum
withdraw_form_rules(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *key;
	char	   *currency = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	WithdrawAccount *account;
	HttpRequest req;
	char	   *error = NULL;
	char	   *rules;
	AccountPolicy policy;
	Datum		result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the account and the pay_code must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	SPI_connect();
	account = store_account_by_name(name);
	if (account->provider->form_rules == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s accounts have no form rules", account->provider->name)));
	if (key[0] == '\0' || strlen(key) > 32)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid pay_code \"%s\"", key)));
	account_policy(account->provider, account->options, &policy);
	account->provider->form_rules->build(account, key, currency, &req);
	req.timeout_ms = policy.request_timeout_ms;
	rules = account->provider->form_rules->parse(account, key, http_perform(&req), &error);
	rules_store(account, key, currency, rules, error);
	if (rules == NULL)
	{
		/* a WARNING, not an ERROR: the failure stays in withdraw.form_rules */
		ereport(WARNING,
				(errmsg("could not fetch the form rules of pay_code \"%s\" for account \"%s\"", key, name),
				 errdetail("%s", error),
				 errhint("The last good rules, if any, stay in use; the worker tries again.")));
		SPI_finish();
		PG_RETURN_NULL();
	}
	result = SPI_datumTransfer(DirectFunctionCall1(jsonb_in, CStringGetDatum(rules)), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
