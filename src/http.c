/*-------------------------------------------------------------------------
 *
 * http.c
 *	  libcurl's multi interface inside the worker's wait loop.
 *
 * curl tells us, through its socket and timer callbacks, which sockets to
 * watch and when it needs a timeout; each wait builds one WaitEventSet
 * with the latch, postmaster death and those sockets, so a commit that
 * wakes the worker is seen at once even while requests are in flight.
 * One multi handle keeps the connection cache, so requests to the same
 * provider reuse connections (keep-alive).
 *
 * It is also where requests are held to their destinations: a URL whose
 * scheme or host the settings do not allow is refused before anything
 * leaves (http_url_refusal, net_guard.c), an address a host name resolves
 * to that is not public is refused before connecting (socket-open hook),
 * and proxies come only from withdraw.proxy, never from the environment.
 *
 *
 * Just over 600 lines: the multi handle, its callbacks and the wait share
 * the table of transfers and sockets, and are kept together.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "compat.h"
#include "http.h"
#include "net_guard.h"
#include "withdraw.h"

#define HTTP_MAX_RESPONSE (1024 * 1024)

typedef struct Transfer
{
	CURL	   *easy;
	struct curl_slist *headers;
	HttpRequest *request;
	HttpResponse *response;
	void	   *tag;
	MemoryContext cxt;
	char		errbuf[CURL_ERROR_SIZE];
	bool		truncated;
	size_t		body_offset;	/* how much of the body curl has read */
	int			rewinds;		/* times curl started the body over */
	bool		via_proxy;		/* withdraw.proxy was set */
	char		refused[200];	/* why the address was refused, or "" */
} Transfer;

typedef struct WatchedSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN/OUT/INOUT */
} WatchedSocket;

static CURLM *multi = NULL;

/*
 * The sockets curl asks us to watch.  The table grows with them (malloc,
 * so that a failure is a -1 to curl, never an ERROR thrown through curl's
 * frames): withdraw.max_in_flight allows thousands of exchanges.  Each
 * socket's curl "socketp" is its index + 1, so no lookup walks the table.
 */
static WatchedSocket *sockets = NULL;
static int	nsockets = 0;
static int	socket_room = 0;
static long curl_timeout_ms = -1;
static int	in_flight = 0;
static List *completed = NIL;
static MemoryContext http_cxt = NULL;

static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i = (int) (intptr_t) socketp - 1;

	/* the index curl keeps for us; a search only if it were ever stale */
	if (i < 0 || i >= nsockets || sockets[i].fd != fd)
		for (i = 0; i < nsockets; i++)
			if (sockets[i].fd == fd)
				break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < nsockets)
		{
			sockets[i] = sockets[--nsockets];
			if (i < nsockets)
				curl_multi_assign(multi, sockets[i].fd, (void *) (intptr_t) (i + 1));
		}
		return 0;
	}
	if (i == nsockets)
	{
		if (nsockets == socket_room)
		{
			int			room = Max(64, socket_room * 2);
			WatchedSocket *grown = realloc(sockets, sizeof(WatchedSocket) * room);

			if (grown == NULL)
				return -1;		/* curl marks the multi handle dead; see
								 * socket_action */
			sockets = grown;
			socket_room = room;
		}
		nsockets++;
		curl_multi_assign(multi, fd, (void *) (intptr_t) (i + 1));
	}
	sockets[i].fd = fd;
	sockets[i].what = what;
	return 0;
}

static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	curl_timeout_ms = timeout_ms;
	return 0;
}

static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	size_t		len = size * nmemb;

	if (t->response->body.len + len > HTTP_MAX_RESPONSE)
	{
		t->truncated = true;
		return 0;				/* makes curl fail the transfer */
	}
	appendBinaryStringInfo(&t->response->body, data, len);
	return len;
}

/* Feeds the request body to curl. */
static size_t
read_callback(char *buffer, size_t size, size_t nitems, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	size_t		left = t->request->body.len - t->body_offset;
	size_t		n = Min(left, size * nitems);

	memcpy(buffer, t->request->body.data + t->body_offset, n);
	t->body_offset += n;
	return n;
}

/*
 * curl rewinds the body to send the request again by itself when a reused
 * connection died under it.  Once any of the body has gone, the first copy
 * may have reached the provider: we refuse the rewind, so the transfer fails
 * and the worker decides about a resend (same key, its rate limit, an
 * attempt row) instead of libcurl doing it behind our back.
 */
static int
seek_callback(void *userp, curl_off_t offset, int origin)
{
	Transfer   *t = (Transfer *) userp;

	if (origin != SEEK_SET || offset != 0)
		return CURL_SEEKFUNC_CANTSEEK;
	if (t->body_offset > 0)
	{
		t->rewinds++;
		return CURL_SEEKFUNC_CANTSEEK;
	}
	return CURL_SEEKFUNC_OK;
}

/* ---------------------------------------------------------------------
 * Network guard: curl's hooks that hold each transfer to public addresses
 * (the rules themselves are net_guard.c's).
 * ---------------------------------------------------------------------
 */

/* Notes in t why the address was refused; curl then fails the transfer. */
static void
refuse_address(Transfer *t, const char *address, const char *why)
{
	snprintf(t->refused, sizeof(t->refused),
			 "address %s is not public: %s (withdraw.allow_private_addresses is off)",
			 address, why);
}

/*
 * curl's socket-open hook: the address a host name resolved to, before any
 * connection is made.  Through a proxy (withdraw.proxy, set by a superuser)
 * the address is the proxy's, and the proxy does the filtering.
 */
static curl_socket_t
opensocket_callback(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	Transfer   *t = (Transfer *) clientp;
	const char *why;

	if (!t->via_proxy && !withdraw_allow_private_addresses &&
		(why = net_address_class(&address->addr)) != NULL)
	{
		char		text[INET6_ADDRSTRLEN] = "?";

		if (address->family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *) &address->addr)->sin_addr, text, sizeof(text));
		else if (address->family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &address->addr)->sin6_addr, text, sizeof(text));
		refuse_address(t, text, why);
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/*
 * curl's pre-request hook, on new and reused connections alike: a cached
 * connection opened while withdraw.allow_private_addresses was on is not
 * used once it is off.
 */
static int
prereq_callback(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
	Transfer   *t = (Transfer *) clientp;
	struct sockaddr_storage ss;
	const char *why;

	if (t->via_proxy || withdraw_allow_private_addresses)
		return CURL_PREREQFUNC_OK;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, primary_ip, &((struct sockaddr_in *) &ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, primary_ip, &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	why = ss.ss_family == 0 ? "an address that cannot be read" : net_address_class((struct sockaddr *) &ss);
	if (why == NULL)
		return CURL_PREREQFUNC_OK;
	refuse_address(t, primary_ip, why);
	return CURL_PREREQFUNC_ABORT;
}

/* The guard's options of one transfer: address hooks and the proxy. */
static void
guard_transfer(Transfer *t)
{
	t->via_proxy = withdraw_proxy != NULL && withdraw_proxy[0] != '\0';
	curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETFUNCTION, opensocket_callback);
	curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETDATA, t);
	curl_easy_setopt(t->easy, CURLOPT_PREREQFUNCTION, prereq_callback);
	curl_easy_setopt(t->easy, CURLOPT_PREREQDATA, t);
	/* "" disables proxies, the environment's (http_proxy, ALL_PROXY...) too */
	curl_easy_setopt(t->easy, CURLOPT_PROXY, t->via_proxy ? withdraw_proxy : "");
	/* and with one, NO_PROXY from the environment exempts nothing */
	if (t->via_proxy)
		curl_easy_setopt(t->easy, CURLOPT_NOPROXY, "");
}


/* A refused request's completion: no byte left, so safe to send again. */
static HttpResponse *
refused_response(const char *why)
{
	HttpResponse *res = palloc0(sizeof(HttpResponse));

	initStringInfo(&res->body);
	res->transport_failed = true;
	res->maybe_delivered = false;
	res->error = psprintf("refused before sending: %s", why);
	return res;
}

/*
 * Lets the worker have as many sockets as the hard limit allows (at most
 * 65536): the usual soft limit of 1024 would fail exchanges beyond it
 * although withdraw.max_in_flight allows 10,000.
 */
static void
raise_socket_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
	{
		rlim_t		want = rl.rlim_max == RLIM_INFINITY ? 65536 : Min(rl.rlim_max, 65536);

		if (rl.rlim_cur < want)
		{
			rl.rlim_cur = want;
			if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
				ereport(LOG,
						(errmsg("withdraw: could not raise the open-files limit to %lu: %m",
								(unsigned long) want)));
		}
	}
}

void
http_init(void)
{
	raise_socket_limit();
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback);
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 64L);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 256L);
	http_cxt = AllocSetContextCreate(TopMemoryContext, "withdraw http",
									 ALLOCSET_DEFAULT_SIZES);
}


/* A curl easy handle set up for the request; the response goes to t. */
static Transfer *
transfer_create(HttpRequest *request, void *tag, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Transfer   *t = palloc0(sizeof(Transfer));
	ListCell   *lc;

	t->request = request;
	t->tag = tag;
	t->cxt = cxt;
	t->response = palloc0(sizeof(HttpResponse));
	initStringInfo(&t->response->body);
	t->easy = curl_easy_init();
	if (t->easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));

	foreach(lc, request->headers)
		t->headers = curl_slist_append(t->headers, (char *) lfirst(lc));
	/* no "Expect: 100-continue" round trip on larger bodies */
	t->headers = curl_slist_append(t->headers, "Expect:");

	curl_easy_setopt(t->easy, CURLOPT_URL, request->url);
	curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
	curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS,
					 (long) (request->timeout_ms > 0 ? request->timeout_ms : withdraw_request_timeout_ms));
	curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) withdraw_connect_timeout_ms);
	curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (withdraw_ca_file != NULL && withdraw_ca_file[0] != '\0')
		curl_easy_setopt(t->easy, CURLOPT_CAINFO, withdraw_ca_file);
	curl_easy_setopt(t->easy, CURLOPT_USERAGENT, "withdraw/0.1.0");
	guard_transfer(t);
	if (strcmp(request->method, "POST") == 0)
	{
		curl_easy_setopt(t->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE, (long) request->body.len);
		curl_easy_setopt(t->easy, CURLOPT_READFUNCTION, read_callback);
		curl_easy_setopt(t->easy, CURLOPT_READDATA, t);
		curl_easy_setopt(t->easy, CURLOPT_SEEKFUNCTION, seek_callback);
		curl_easy_setopt(t->easy, CURLOPT_SEEKDATA, t);
	}
	else
		curl_easy_setopt(t->easy, CURLOPT_HTTPGET, 1L);
	MemoryContextSwitchTo(old);
	return t;
}

/*
 * Starts one exchange.  The request and the response live in cxt, which
 * the caller deletes once it has recorded the completion.
 */
void
http_start(HttpRequest *request, void *tag, MemoryContext cxt)
{
	Transfer   *t;
	CURLMcode	mc;
	MemoryContext old = MemoryContextSwitchTo(cxt);	/* the exchange's memory */
	char	   *refusal = http_url_refusal(request->url);

	MemoryContextSwitchTo(old);
	if (refusal != NULL)
	{
		/* completed at once, nothing sent: the next http_wait returns it */
		HttpResponse *res;
		HttpCompletion *c;

		old = MemoryContextSwitchTo(cxt);
		res = refused_response(refusal);

		MemoryContextSwitchTo(http_cxt);
		c = palloc(sizeof(HttpCompletion));
		c->tag = tag;
		c->response = res;
		completed = lappend(completed, c);
		MemoryContextSwitchTo(old);
		return;
	}
	t = transfer_create(request, tag, cxt);
	mc = curl_multi_add_handle(multi, t->easy);

	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start an HTTP request: %s", curl_multi_strerror(mc))));
	in_flight++;
}

/* Did the request surely never reach the provider? */
static bool
surely_undelivered(CURL *easy, CURLcode code)
{
	curl_off_t	pretransfer = 0;
	curl_off_t	appconnect = -1;
	char	   *scheme = NULL;

	switch (code)
	{
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
			return true;
		default:
			break;
	}
	/* timed out before a single byte of the request was written */
	if (curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) == CURLE_OK &&
		pretransfer == 0)
		return true;

	/*
	 * Over TLS, a handshake that never completed: the request had no channel
	 * to leave by (newer libcurl reports a pre-transfer time even then).
	 */
	if (curl_easy_getinfo(easy, CURLINFO_SCHEME, &scheme) == CURLE_OK && scheme != NULL &&
		pg_strcasecmp(scheme, "https") == 0 &&
		curl_easy_getinfo(easy, CURLINFO_APPCONNECT_TIME_T, &appconnect) == CURLE_OK &&
		appconnect == 0)
		return true;
	return false;
}

/* Fills the response from a finished handle and frees the handle. */
static HttpResponse *
transfer_finish(Transfer *t, CURLcode code)
{
	HttpResponse *res = t->response;
	curl_off_t	total_us = 0;
	MemoryContext old = MemoryContextSwitchTo(t->cxt);

	curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
	res->latency_ms = total_us / 1000.0;
	if (code == CURLE_OK)
	{
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &res->status);
		res->maybe_delivered = true;
	}
	else
	{
		res->transport_failed = true;
		res->status = 0;
		res->maybe_delivered = !surely_undelivered(t->easy, code);
		res->error = psprintf("%s%s%s", curl_easy_strerror(code),
							  t->errbuf[0] ? ": " : "", t->errbuf);
		if (t->truncated)
			res->error = psprintf("response larger than %d bytes", HTTP_MAX_RESPONSE);
		if (t->rewinds > 0)
			res->error = pstrdup("the connection died after the request was sent: it may have reached the provider");
		if (t->refused[0] != '\0')
		{
			/* refused before connecting or before the request: not sent */
			res->maybe_delivered = false;
			res->error = psprintf("refused before sending: %s", t->refused);
		}
	}
	curl_easy_cleanup(t->easy);
	curl_slist_free_all(t->headers);
	t->easy = NULL;
	MemoryContextSwitchTo(old);
	return res;
}

static void
finish_transfer(CURL *easy, CURLcode code)
{
	Transfer   *t = NULL;
	HttpCompletion *c;
	MemoryContext old;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
	curl_multi_remove_handle(multi, easy);
	in_flight--;

	old = MemoryContextSwitchTo(http_cxt);
	c = palloc(sizeof(HttpCompletion));
	c->tag = t->tag;
	c->response = transfer_finish(t, code);
	completed = lappend(completed, c);
	MemoryContextSwitchTo(old);
}

/* Aborts a blocking transfer when the backend is asked to stop. */
static int
interrupt_callback(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
				   curl_off_t ultotal, curl_off_t ulnow)
{
	return (InterruptPending && (QueryCancelPending || ProcDiePending)) ? 1 : 0;
}

/*
 * One exchange, blocking, for the SQL functions that fetch on demand
 * (withdraw_sync).  A cancel request aborts it and is then served.
 */
HttpResponse *
http_perform(HttpRequest *request)
{
	static bool initialized = false;
	Transfer   *t;
	CURLcode	code;
	char	   *refusal = http_url_refusal(request->url);

	if (refusal != NULL)
		return refused_response(refusal);
	if (!initialized)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not initialize libcurl")));
		initialized = true;
	}
	t = transfer_create(request, NULL, CurrentMemoryContext);
	curl_easy_setopt(t->easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(t->easy, CURLOPT_XFERINFOFUNCTION, interrupt_callback);
	code = curl_easy_perform(t->easy);
	transfer_finish(t, code);
	CHECK_FOR_INTERRUPTS();
	return t->response;
}

static void
drain_messages(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		if (msg->msg == CURLMSG_DONE)
			finish_transfer(msg->easy_handle, msg->data.result);
}

/*
 * Hands curl the events of one socket (or its timeouts).  An error of the
 * multi handle leaves the exchanges in flight in an unknown state: the
 * worker stops with the reason, and on restart its rows in 'sending' are
 * recovered as unknown and reconciled, as after a crash.  A socket curl no
 * longer knows (closed while its event waited) is not an error.
 */
static void
socket_action(curl_socket_t fd, int mask)
{
	int			running;
	CURLMcode	mc = curl_multi_socket_action(multi, fd, mask, &running);

	if (mc == CURLM_OK)
		return;
	if (mc == CURLM_BAD_SOCKET)
	{
		elog(DEBUG1, "withdraw: libcurl no longer knows socket %d", (int) fd);
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("libcurl failed while driving the requests in flight: %s",
					curl_multi_strerror(mc)),
			 errdetail("The worker restarts; the withdrawals it had in flight are then reconciled as unknown.")));
}

bool
http_wait(long timeout_ms, uint32 wait_event_info)
{
	WaitEventSet *set;
	WaitEvent  *events;
	int			nevents;
	int			nwatched = nsockets + 2;
	bool		latch_set = false;
	bool		socket_ready = false;

	if (in_flight > 0 && curl_timeout_ms >= 0 && curl_timeout_ms < timeout_ms)
		timeout_ms = curl_timeout_ms;
	/* requests refused before sending are already complete */
	if (completed != NIL)
		timeout_ms = 0;

	events = palloc(sizeof(WaitEvent) * nwatched);
	set = withdraw_wait_event_set(nwatched);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < nsockets; i++)
	{
		uint32		ev = 0;

		if (sockets[i].what & CURL_POLL_IN)
			ev |= WL_SOCKET_READABLE;
		if (sockets[i].what & CURL_POLL_OUT)
			ev |= WL_SOCKET_WRITEABLE;
		AddWaitEventToSet(set, ev, sockets[i].fd, NULL, NULL);
	}

	nevents = WaitEventSetWait(set, timeout_ms, events, nwatched, wait_event_info);
	FreeWaitEventSet(set);

	for (int i = 0; i < nevents; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			latch_set = true;
			continue;
		}
		if (events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			int			mask = 0;

			if (events[i].events & WL_SOCKET_READABLE)
				mask |= CURL_CSELECT_IN;
			if (events[i].events & WL_SOCKET_WRITEABLE)
				mask |= CURL_CSELECT_OUT;
			socket_action(events[i].fd, mask);
			socket_ready = true;
		}
	}
	pfree(events);
	/* let curl handle its timeouts (and start newly added transfers) */
	if (!socket_ready || in_flight > 0)
		socket_action(CURL_SOCKET_TIMEOUT, 0);
	drain_messages();
	return latch_set;
}

/* The completions since the last call; the caller frees them. */
List *
http_collect(void)
{
	List	   *result = completed;

	completed = NIL;
	return result;
}

