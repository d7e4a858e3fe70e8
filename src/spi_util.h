/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *	  Small SPI helpers shared by every file that queries the extension's
 *	  tables: plans prepared once and kept, nullable text arguments.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_SPI_UTIL_H
#define WITHDRAW_SPI_UTIL_H

#include "executor/spi.h"

/* SPI_prepare + SPI_keepplan, or ERROR */
extern SPIPlanPtr spi_prepare_kept(const char *sql, int nargs, Oid *types);

/* a text Datum, or a NULL argument when s is NULL (sets *null_flag) */
extern Datum spi_text_or_null(const char *s, char *null_flag);

#endif							/* WITHDRAW_SPI_UTIL_H */
