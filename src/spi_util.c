/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  SPI helpers shared by api.c, store.c and remote.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"

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
