/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *	  Small SPI helpers shared by every file that queries the extension's
 *	  tables: plans prepared once and kept, nullable text arguments, work
 *	  in a subtransaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_SPI_UTIL_H
#define WITHDRAW_SPI_UTIL_H

#include "executor/spi.h"

/* SPI_prepare + SPI_keepplan, or ERROR */
extern SPIPlanPtr spi_prepare_kept(const char *sql, int nargs, Oid *types);

/*
 * SPI_execute_plan with sequential scans disabled while it runs (and while
 * its cached plan is made again, if it must be): for the hot lookups whose
 * plan must stay an index walk even when made while a table looked empty.
 * Returns SPI_execute_plan's code.
 */
extern int	spi_execute_plan_indexed(SPIPlanPtr plan, Datum *args, bool read_only, long count);

/* a text Datum, or a NULL argument when s is NULL (sets *null_flag) */
extern Datum spi_text_or_null(const char *s, char *null_flag);

/*
 * Ends the SPI connection and returns s as a text Datum allocated in the
 * caller's context: whatever was palloc'd while connected is freed by
 * SPI_finish, so a reply built there must be copied out first.
 */
extern Datum spi_finish_text(const char *s);

/*
 * Runs fn(arg) in a subtransaction; NULL when it returned, else the ERROR
 * it raised (in the caller's memory context), its work rolled back.
 */
extern ErrorData *spi_subtransaction(void (*fn) (void *arg), void *arg);

#endif							/* WITHDRAW_SPI_UTIL_H */
