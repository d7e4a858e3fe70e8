/*-------------------------------------------------------------------------
 *
 * log.c
 *	  Messages and access log lines of withdraw-callbackd, on stderr (the
 *	  journal, under systemd), one line each, written with a single write()
 *	  so that lines of concurrent threads never interleave.
 *
 * Callers pass only facts that are safe to keep: addresses, routes,
 * statuses, verdicts, sizes, times, SQLSTATEs.  No body, header value,
 * connection string or message text that could quote one ever reaches
 * these functions.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "callbackd.h"

/* Milliseconds of a monotonic clock. */
double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void emit(const char *prefix, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* "2026-12-06T08:00:00.123Z level=... " + the formatted text, one write. */
static void
emit(const char *prefix, const char *fmt, va_list ap)
{
	char		line[1024];
	struct timespec ts;
	struct tm	tm;
	int			n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s",
				 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
				 ts.tv_nsec / 1000000, prefix);
	if (n < 0 || n >= (int) sizeof(line))
		return;
	n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (n >= (int) sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

/* A message: level is "info", "warning" or "error". */
void
log_msg(const char *level, const char *fmt,...)
{
	char		prefix[32];
	va_list		ap;

	snprintf(prefix, sizeof(prefix), "level=%s ", level);
	va_start(ap, fmt);
	emit(prefix, fmt, ap);
	va_end(ap);
}

/* An access log line (when config.access_log). */
void
log_access(const char *fmt,...)
{
	va_list		ap;

	if (!config.access_log)
		return;
	va_start(ap, fmt);
	emit("access ", fmt, ap);
	va_end(ap);
}
