/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  SPI helpers shared by the files that run SQL: kept plans, index-walking
 *	  executions, nullable text arguments, work in a subtransaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/resowner.h"

#include "spi_util.h"

SPIPlanPtr
spi_prepare_kept(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * A plan made while withdraw.withdrawal looked empty (a fresh install, or
 * the benchmarks' TRUNCATE and VACUUM ANALYZE) read the whole table on
 * every execution until the next ANALYZE: for a claim, a sequential scan
 * and a sort of every queued row where the index reads a few.  Planner
 * settings are read when a plan is made, so setting this one around each
 * execution covers every re-plan.  (A scan with no index to use stays
 * sequential; its penalty lifts the plan's cost far above jit_above_cost:
 * the worker runs with jit off, see withdraw_worker_main.)
 */
int
spi_execute_plan_indexed(SPIPlanPtr plan, Datum *args, bool read_only, long count)
{
	int			nestlevel = NewGUCNestLevel();
	int			rc;

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute_plan(plan, args, NULL, read_only, count);
	AtEOXact_GUC(true, nestlevel);
	return rc;
}

Datum
spi_text_or_null(const char *s, char *null_flag)
{
	*null_flag = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

Datum
spi_finish_text(const char *s)
{
	size_t		len = strlen(s);
	text	   *result = (text *) SPI_palloc(VARHDRSZ + len);

	SET_VARSIZE(result, VARHDRSZ + len);
	memcpy(VARDATA(result), s, len);
	SPI_finish();
	return PointerGetDatum(result);
}

/*
 * Runs fn(arg) in a subtransaction of the current transaction: the worker
 * reads provider bytes and records each outcome this way, so that an
 * ERROR spoils that piece of work only.  Returns NULL when fn returned;
 * otherwise the ERROR it raised, copied into the caller's memory context,
 * with everything fn did rolled back.  The caller's memory context and
 * resource owner are current again either way.
 */
ErrorData *
spi_subtransaction(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}
