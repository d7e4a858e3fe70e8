/*-------------------------------------------------------------------------
 *
 * http.h
 *	  Many HTTP exchanges in flight at once through libcurl's multi
 *	  interface, driven from the worker's wait loop.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_HTTP_H
#define WITHDRAW_HTTP_H

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/* What a provider asks to send. */
typedef struct HttpRequest
{
	const char *method;			/* "GET" or "POST" */
	char	   *url;
	List	   *headers;		/* of char *, "Name: value" */
	StringInfoData body;		/* exact bytes sent (and signed) */
	char	   *audit;			/* the body or query as kept in withdraw.attempts,
								 * with secrets and signatures redacted */
	int			timeout_ms;
} HttpRequest;

/* What came back. */
typedef struct HttpResponse
{
	long		status;			/* HTTP status, 0 when no answer */
	bool		transport_failed;	/* no complete HTTP answer */
	bool		maybe_delivered;	/* false only when the request surely never
									 * reached the provider */
	char	   *error;			/* transport error text, or NULL */
	StringInfoData body;
	char	   *audit;			/* what withdraw.attempts keeps instead of the
								 * body (an opened envelope), or NULL */
	double		latency_ms;
} HttpResponse;

typedef struct HttpCompletion
{
	void	   *tag;			/* the caller's, given to http_start */
	HttpResponse *response;
} HttpCompletion;

extern void http_init(void);
extern void http_start(HttpRequest *request, void *tag, MemoryContext cxt);
extern HttpResponse *http_perform(HttpRequest *request);

/*
 * Waits for socket activity, the latch or timeout_ms, drives transfers and
 * returns the WaitEventSet's latch flag; completed transfers are collected
 * with http_collect.
 */
extern bool http_wait(long timeout_ms, uint32 wait_event_info);
extern List *http_collect(void);

/* Network guard (issue 14): where requests may go. */
extern bool http_url_origin(const char *url, char **scheme, char **host, int *port);
extern bool http_host_allowed(const char *host);
extern char *http_url_refusal(const char *url);

/* the next entry of a comma-separated host list; false at its end */
extern bool http_host_list_next(const char **p, const char **start, const char **end);

#endif							/* WITHDRAW_HTTP_H */
