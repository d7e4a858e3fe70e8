/*-------------------------------------------------------------------------
 *
 * prune.c
 *	  Deleting old history (withdraw.retention): attempts, events and
 *	  callbacks, a batch at a time, by worker 0.  Withdrawals themselves are
 *	  kept: they are the record of money.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "store.h"
#include "withdraw.h"

static SPIPlanPtr prune_plan[2];

/*
 * Deletes up to batch rows of withdraw.callback older than retention_s,
 * oldest first: anyone can post to a web handler, so the table would grow
 * without bound otherwise.  A confirmation given for a withdrawal still in
 * flight is kept, since withdraw_confirm reads it to refuse a second one.
 */
static int
prune_callbacks(int retention_s, int batch)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2];

	if (plan == NULL)
	{
		Oid			types[2] = {FLOAT8OID, INT4OID};

		plan = spi_prepare_kept("DELETE FROM withdraw.callback WHERE id IN"
								" (SELECT c.id FROM withdraw.callback c"
								"  WHERE c.received_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)"
								"   AND NOT (c.verdict = 'confirmed' AND EXISTS (SELECT FROM withdraw.withdrawal w"
								"    WHERE w.id = c.withdrawal_id AND w.state IN ('sending', 'unknown')))"
								"  ORDER BY c.id LIMIT $2)",
								2, types);
	}
	args[0] = Float8GetDatum((double) retention_s);
	args[1] = Int32GetDatum(batch);
	if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "pruning old callbacks failed");
	return (int) SPI_processed;
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
		/* float8 seconds: pg_catalog's *(float8, interval) is an exact match */
		Oid			types[2] = {FLOAT8OID, INT4OID};

		prune_plan[0] = spi_prepare_kept(
									 "DELETE FROM withdraw.attempt WHERE id IN (SELECT id FROM withdraw.attempt"
									 " WHERE started_at < now() - $1 * interval '1 second' ORDER BY id LIMIT $2)",
									 2, types);
		prune_plan[1] = spi_prepare_kept(
									 "DELETE FROM withdraw.event WHERE id IN (SELECT id FROM withdraw.event"
									 " WHERE at < now() - $1 * interval '1 second'"
		/* the events of an open withdrawal stay: the feed and the desk read them */
									 "  AND NOT EXISTS (SELECT FROM withdraw.withdrawal w"
									 "   WHERE w.id = withdrawal_id AND w.finished_at IS NULL)"
									 " ORDER BY id LIMIT $2)",
									 2, types);
	}
	args[0] = Float8GetDatum((double) retention_s);
	args[1] = Int32GetDatum(batch);
	for (int i = 0; i < 2; i++)
	{
		if (SPI_execute_plan(prune_plan[i], args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "pruning old history failed");
		deleted += (int) SPI_processed;
	}
	deleted += prune_callbacks(retention_s, batch);
	return deleted;
}
