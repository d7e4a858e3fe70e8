/*-------------------------------------------------------------------------
 *
 * store_record.c
 *	  The worker's queries that record outcomes: one attempt row per
 *	  exchange and the change to the withdrawal's row, for one job or, with
 *	  two statements, for a whole batch (record.c decides which).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "store.h"
#include "withdraw.h"

/* response bodies kept in withdraw.attempt, in bytes */
#define RESPONSE_KEEP_BYTES 4000

static SPIPlanPtr attempt_plan;
static SPIPlanPtr change_plan;
static SPIPlanPtr taken_plan;
static SPIPlanPtr batch_attempt_plan;
static SPIPlanPtr batch_change_plan;

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
	c[1] = CStringGetTextDatum(state_name(change->state));
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
	c[11] = CStringGetTextDatum(state_name(job->state));
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
