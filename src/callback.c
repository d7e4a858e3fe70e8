/*-------------------------------------------------------------------------
 *
 * callback.c
 *	  The SQL functions an application's web handler calls when a provider
 *	  calls it: withdraw_callback (notifications) and withdraw_confirm
 *	  (chainup's second confirmation before it pays).
 *
 * The provider authenticates and reads the body (callbacks->read); nothing
 * is looked up or changed before that.  What happens next is the same for
 * every provider and lives here: the withdrawal is found by its
 * idempotency key within the account, locked, checked and changed; every
 * call, authentic or not, leaves a row in withdraw.callback.
 *
 * A notification never moves a withdrawal backwards or sideways: its
 * state is applied only where withdraw.state_transition allows it, so
 * repeats and late, out-of-order deliveries change nothing.  A row whose
 * create is still in flight ('sending') keeps its state; the worker's
 * own outcome and status polls settle it.  A provider may ask for more
 * (CallbackNotice): a notification older or newer than its window is
 * refused, and a state it cannot vouch for alone (chainup's failures,
 * whose envelopes are signed block by block) only makes the withdrawal
 * due for a status poll, whose authenticated answer decides.
 *
 * What a caller that is not authenticated leaves behind is bounded: no
 * content, a short detail; withdraw.callback is pruned with the rest of
 * the history (store_prune).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "job.h"
#include "jsonutil.h"
#include "spi_util.h"
#include "store.h"
#include "triggers.h"
#include "state.h"
#include "withdraw.h"

PG_FUNCTION_INFO_V1(withdraw_callback);
PG_FUNCTION_INFO_V1(withdraw_confirm);

/* The stored withdrawal a callback speaks of, locked. */
typedef struct Target
{
	int64		id;
	WithdrawState state;
	Jsonb	   *request;
	char	   *amount;
	char	   *idempotency_key;
	char	   *provider_id;
} Target;

static const char *const kind_names[] = {"withdrawal", "deposit", "confirm"};

/* bytes of detail kept per callback: an anonymous caller chooses its text */
#define CALLBACK_DETAIL_MAX 200

/*
 * The queries every callback runs, prepared once per backend and kept:
 * a callback is one call, and parsing and planning its queries each time
 * would cost more than running them.
 */
static SPIPlanPtr log_plan = NULL;
static SPIPlanPtr by_key_plan = NULL;
static SPIPlanPtr by_provider_id_plan = NULL;
static SPIPlanPtr apply_plan = NULL;

static SPIPlanPtr
kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
		*slot = spi_prepare_kept(sql, nargs, types);
	return *slot;
}

/* One row of withdraw.callback. */
static void
log_callback(WithdrawAccount *account, const char *kind, const char *verdict,
			 int64 withdrawal_id, CallbackNotice *notice, const char *detail)
{
	Oid			types[7] = {INT4OID, TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[7];
	char		nulls[8] = "       ";

	values[0] = Int32GetDatum(account->id);
	values[1] = CStringGetTextDatum(kind);
	values[2] = CStringGetTextDatum(verdict);
	values[3] = Int64GetDatum(withdrawal_id);
	nulls[3] = withdrawal_id > 0 ? ' ' : 'n';
	values[4] = spi_text_or_null(notice ? notice->idempotency_key : NULL, &nulls[4]);
	if (detail != NULL && strlen(detail) > CALLBACK_DETAIL_MAX)
		detail = psprintf("%.*s...", pg_mbcliplen(detail, strlen(detail), CALLBACK_DETAIL_MAX),
						  detail);
	values[5] = spi_text_or_null(detail, &nulls[5]);
	values[6] = notice && notice->content ? JsonbPGetDatum(notice->content) : (Datum) 0;
	nulls[6] = notice && notice->content ? ' ' : 'n';
	if (SPI_execute_plan(kept_plan(&log_plan, "INSERT INTO withdraw.callback"
								   " (account_id, kind, verdict, withdrawal_id, idempotency_key, detail, content)"
								   " VALUES ($1, $2, $3, $4, $5, $6, $7)", 7, types),
						 values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "recording a callback failed");
}

/* The withdrawal with this key (or provider id) in the account, locked; false if none. */
static bool
find_target(WithdrawAccount *account, CallbackNotice *notice, Target *t)
{
	Oid			types[3] = {INT4OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[4] = "   ";
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	SPIPlanPtr	plan;

	if (notice->idempotency_key == NULL && notice->provider_id == NULL)
		return false;
	values[0] = Int32GetDatum(account->id);
	values[1] = spi_text_or_null(notice->idempotency_key, &nulls[1]);
	values[2] = spi_text_or_null(notice->provider_id, &nulls[2]);
	/* by the key when there is one, else by the provider's id: one plan each, kept */
	if (notice->idempotency_key != NULL)
		plan = kept_plan(&by_key_plan, "SELECT id, state, request, amount::text, idempotency_key, provider_id"
						 " FROM withdraw.withdrawal WHERE account_id = $1 AND idempotency_key = $2"
						 " FOR UPDATE", 3, types);
	else
		plan = kept_plan(&by_provider_id_plan, "SELECT id, state, request, amount::text, idempotency_key, provider_id"
						 " FROM withdraw.withdrawal WHERE account_id = $1 AND provider_id = $3"
						 " FOR UPDATE", 3, types);
	if (SPI_execute_plan(plan, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "looking up a withdrawal failed");
	if (SPI_processed == 0)
		return false;
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	t->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
	t->state = state_of_name(SPI_getvalue(tuple, desc, 2));
	t->request = DatumGetJsonbPCopy(SPI_getbinval(tuple, desc, 3, &isnull));
	t->amount = SPI_getvalue(tuple, desc, 4);
	t->idempotency_key = SPI_getvalue(tuple, desc, 5);
	t->provider_id = SPI_getvalue(tuple, desc, 6);
	return true;
}

/*
 * A notification whose state the provider cannot vouch for alone: nothing
 * of it is applied; the withdrawal is due for a status poll now (a
 * reconciliation when its create's outcome is unknown) and the worker is
 * woken at commit.  The poll's answer decides.
 */
static const char *
poll_to_confirm(WithdrawAccount *account, Target *t, CallbackNotice *notice, char **detail)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(t->id)};

	if (SPI_execute_with_args("UPDATE withdraw.withdrawal SET next_poll_at = now(),"
							  " needs_reconcile = needs_reconcile OR state = 'unknown'"
							  " WHERE id = $1 AND state IN ('submitted', 'processing', 'review', 'unknown')",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "asking for a status poll failed");
	WithdrawWakeWorkerAtCommit(account->id);
	*detail = psprintf("%s -> %s not applied on the notification's word: a status poll decides",
					   state_name(t->state), state_name(notice->state));
	return "confirming";
}

/*
 * Applies a withdrawal notification to its row: details and provider id
 * always, the state where the state machine allows it.  Returns the
 * verdict for withdraw.callback.
 */
static const char *
apply_notice(WithdrawAccount *account, Target *t, CallbackNotice *notice, char **detail)
{
	WithdrawState to = notice->state;
	const char *from = state_name(t->state);
	bool		move = to != STATE_NONE && to != t->state && t->state != STATE_SENDING &&
		transition_allowed(from, state_name(to));
	Oid			types[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID};
	Datum		values[6];
	char		nulls[7] = "      ";

	if (move && notice->confirm_by_poll)
		return poll_to_confirm(account, t, notice, detail);
	values[0] = Int64GetDatum(t->id);
	values[1] = CStringGetTextDatum(move ? state_name(to) : from);
	values[2] = spi_text_or_null(notice->provider_status, &nulls[2]);
	values[3] = spi_text_or_null(notice->provider_id, &nulls[3]);
	values[4] = spi_text_or_null(notice->details, &nulls[4]);
	values[5] = BoolGetDatum(move);
	if (SPI_execute_plan(kept_plan(&apply_plan, "UPDATE withdraw.withdrawal SET"
							  " state = $2,"
							  " provider_status = CASE WHEN $6 THEN coalesce($3, provider_status)"
							  "   ELSE provider_status END,"
							  " provider_id = coalesce(provider_id, $4),"
							  " details = details || coalesce($5::jsonb, '{}'),"
							  " last_error = CASE WHEN $6 THEN NULL ELSE last_error END,"
							  " needs_reconcile = CASE WHEN $6 THEN false ELSE needs_reconcile END,"
							  " updated_at = now()"
							  " WHERE id = $1", 6, types),
						 values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "applying a notification failed");
	if (move)
	{
		*detail = psprintf("%s -> %s", from, state_name(to));
		return "applied";
	}
	if (to == STATE_NONE)
		*detail = psprintf("no state to apply (%s)", notice->provider_status ? notice->provider_status : "no status");
	else if (to == t->state)
		*detail = psprintf("already %s", from);
	else if (t->state == STATE_SENDING)
	{
		*detail = psprintf("%s while the create is in flight: not acknowledged, so that the provider repeats it",
						   state_name(to));
		return "deferred";
	}
	else
		*detail = psprintf("%s -> %s is not allowed: ignored as stale", from, state_name(to));
	return "unchanged";
}

/* The account with its secrets, or an ERROR naming what is wrong. */
static WithdrawAccount *
callback_account(const char *name, const char *function)
{
	WithdrawAccount *account = store_account_by_name(name);

	if (account->provider->callbacks == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s accounts receive no callbacks", account->provider->name),
				 errhint("%s is for providers that call the application back.", function)));
	return account;
}

/*
 * Reads the body through the provider; a body that is not authentic is
 * recorded and answered with the provider's refusal, or raises an error
 * when the provider has none (nothing is kept then).
 */
static bool
read_authentic(WithdrawAccount *account, text *body, Jsonb *headers, CallbackNotice *notice,
			   char **reply)
{
	char	   *error = NULL;

	memset(notice, 0, sizeof(*notice));
	notice->state = STATE_NONE;
	if (account->provider->callbacks->read(account, VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body),
										   headers, notice, &error))
		return true;
	if (account->provider->callbacks->refusal == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("%s callback for account \"%s\" is not authentic: %s",
						account->provider->name, account->name, error),
				 errdetail("Nothing was changed.")));
	log_callback(account, "unknown", "rejected", 0, NULL, psprintf("not authentic: %s", error));
	*reply = pstrdup(account->provider->callbacks->refusal);
	return false;
}

/*
 * SQL: withdraw_callback(account, body, headers) — verifies and applies a
 * provider's notification; returns the reply body the provider expects.
 */
Datum
withdraw_callback(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *body = PG_GETARG_TEXT_PP(1);
	Jsonb	   *headers = PG_GETARG_JSONB_P(2);
	WithdrawAccount *account;
	CallbackNotice notice;
	Target		t;
	char	   *reply = NULL;
	char	   *detail = NULL;
	const char *verdict;

	SPI_connect();
	account = callback_account(name, "withdraw_callback");
	if (!read_authentic(account, body, headers, &notice, &reply))
	{
		PG_RETURN_DATUM(spi_finish_text(reply));
	}

	if (notice.kind == CALLBACK_CONFIRM)
	{
		log_callback(account, "confirm", "refused", 0, &notice,
					 "a second-confirmation request: pass it to withdraw_confirm");
		PG_RETURN_DATUM(spi_finish_text(account->provider->callbacks->refusal ?
										account->provider->callbacks->refusal : "FAILURE"));
	}
	if (notice.kind == CALLBACK_DEPOSIT)
	{
		log_callback(account, "deposit", "recorded", 0, &notice, NULL);
		PG_RETURN_DATUM(spi_finish_text(account->provider->callbacks->ack));
	}

	if (!find_target(account, &notice, &t))
	{
		/* not ours: acknowledged (the provider would retry forever) and kept */
		log_callback(account, kind_names[notice.kind], "unmatched", 0, &notice,
					 "no withdrawal of this account has that key");
		PG_RETURN_DATUM(spi_finish_text(account->provider->callbacks->ack));
	}
	if (notice.window_ms > 0 &&
		(notice.sent_at == 0 ||
		 TimestampDifferenceExceeds(notice.sent_at, GetCurrentTimestamp(), notice.window_ms) ||
		 TimestampDifferenceExceeds(GetCurrentTimestamp(), notice.sent_at, notice.window_ms)))
	{
		verdict = "refused";
		detail = psprintf("its time is missing or more than %d s away from ours: stale or replayed",
						  notice.window_ms / 1000);
	}
	else if (account->provider->callbacks->confirm_mismatch != NULL &&
			 (detail = account->provider->callbacks->confirm_mismatch(t.request, &notice)) != NULL)
		verdict = "refused";
	else if (notice.amount != NULL && !decimal_equal(notice.amount, t.amount))
	{
		verdict = "refused";
		detail = psprintf("the notification's amount %s differs from the withdrawal's %s",
						  notice.amount, t.amount);
	}
	else if (notice.provider_id != NULL && t.provider_id != NULL &&
			 strcmp(notice.provider_id, t.provider_id) != 0)
	{
		verdict = "refused";
		detail = psprintf("the notification names provider id %s, the withdrawal has %s",
						  notice.provider_id, t.provider_id);
	}
	else
		verdict = apply_notice(account, &t, &notice, &detail);

	/*
	 * News of a withdrawal whose create is still in flight cannot be applied
	 * yet (the worker's outcome comes first): it is not acknowledged, so the
	 * provider sends it again, and nothing is lost for providers that have
	 * no status query.
	 */
	if (strcmp(verdict, "deferred") == 0)
	{
		if (account->provider->callbacks->refusal == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("withdrawal " INT64_FORMAT " is being sent; the %s notification must be sent again",
							t.id, account->provider->name),
					 errdetail("%s", detail),
					 errhint("Answer the provider with an error status: it retries.")));
		log_callback(account, kind_names[notice.kind], verdict, t.id, &notice, detail);
		PG_RETURN_DATUM(spi_finish_text(account->provider->callbacks->refusal));
	}
	log_callback(account, kind_names[notice.kind], verdict, t.id, &notice, detail);
	PG_RETURN_DATUM(spi_finish_text(account->provider->callbacks->ack));
}

/*
 * Has this withdrawal already been confirmed with another check value?
 * The platform asks once per withdrawal; the same question asked again
 * gets the same answer, a different one is refused.
 */
static bool
confirmed_otherwise(int64 withdrawal_id, CallbackNotice *notice)
{
	Oid			types[2] = {INT8OID, JSONBOID};
	Datum		values[2] = {Int64GetDatum(withdrawal_id), JsonbPGetDatum(notice->content)};

	if (SPI_execute_with_args("SELECT 1 FROM withdraw.callback"
							  " WHERE withdrawal_id = $1 AND kind = 'confirm' AND verdict = 'confirmed'"
							  "  AND content->>'check_sum' IS DISTINCT FROM $2->>'check_sum'",
							  2, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading earlier confirmations failed");
	return SPI_processed > 0;
}

/*
 * SQL: withdraw_confirm(account, body) — answers a second-confirmation
 * request: yes only for a withdrawal of this account, sent and not yet
 * answered, whose stored request matches the platform's description, and
 * that the platform asked about within the account's confirm window.
 * Anything else is refused, recorded, and so failed by the platform.
 */
Datum
withdraw_confirm(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *body = PG_GETARG_TEXT_PP(1);
	WithdrawAccount *account;
	CallbackNotice notice;
	Target		t;
	char	   *reply = NULL;
	char	   *why = NULL;
	int			window_ms;

	SPI_connect();
	account = callback_account(name, "withdraw_confirm");
	if (account->provider->callbacks->confirm_reply == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s accounts have no second confirmation", account->provider->name)));
	if (!read_authentic(account, body, NULL, &notice, &reply))
	{
		PG_RETURN_DATUM(spi_finish_text(reply));
	}
	window_ms = account_option_int(account->options, "confirm_window_ms", 10 * 60 * 1000,
								   1000, 24 * 3600 * 1000);

	t.id = 0;
	if (notice.kind != CALLBACK_CONFIRM)
		why = psprintf("a %s notification, not a confirmation request: pass it to withdraw_callback",
					   kind_names[notice.kind]);
	else if (notice.sent_at == 0 ||
			 TimestampDifferenceExceeds(notice.sent_at, GetCurrentTimestamp(), window_ms) ||
			 TimestampDifferenceExceeds(GetCurrentTimestamp(), notice.sent_at, window_ms))
		why = psprintf("its time is missing or more than %d s away from ours: a replay?", window_ms / 1000);
	else if (!find_target(account, &notice, &t))
		why = pstrdup("no withdrawal of this account has that request id: this database did not ask for it");
	else if (t.state != STATE_SENDING && t.state != STATE_UNKNOWN)
		why = psprintf("the withdrawal is %s, not waiting for the provider's answer", state_name(t.state));
	else if ((why = account->provider->callbacks->confirm_mismatch(t.request, &notice)) != NULL)
		;
	else if (confirmed_otherwise(t.id, &notice))
		why = pstrdup("the withdrawal was already confirmed for another request");

	log_callback(account, "confirm", why ? "refused" : "confirmed", t.id, &notice, why);
	if (why != NULL)
		ereport(WARNING,
				(errmsg("refused the second confirmation of a %s withdrawal for account \"%s\"",
						account->provider->name, account->name),
				 errdetail("%s", why)));
	reply = account->provider->callbacks->confirm_reply(account, &notice, why == NULL);
	PG_RETURN_DATUM(spi_finish_text(reply));
}
