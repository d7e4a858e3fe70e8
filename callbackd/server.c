/*-------------------------------------------------------------------------
 *
 * server.c
 *	  The HTTP side of withdraw-callbackd, on libmicrohttpd: routes, limits
 *	  and answers.
 *
 * Routes (nothing else is served):
 *	  POST /ACCOUNT/notify	 notifications and webhooks -> withdraw_callback
 *	  POST /ACCOUNT/confirm	 chainup's second confirmation -> withdraw_confirm
 *	  GET  /health			 200 when this thread reaches the database, else 503
 * for the accounts of the "accounts" setting.  The body and every header are
 * passed unchanged (headers as a JSON object of name -> value, repeated names
 * joined with ", "); the answer is the status and body withdraw_receive
 * returns, Content-Type application/json when the body is a JSON object,
 * else text/plain.
 *
 * Limits, checked before the database is touched: the source network
 * (refused at accept when the peer can be judged then; behind a trusted
 * proxy, once X-Forwarded-For is read), the header count, the body size
 * (Content-Length at once, a chunked body as it arrives: the connection
 * is closed when it passes the limit), the time the body takes
 * (request_timeout: closed).  libmicrohttpd bounds the rest: the
 * header bytes (the connection's memory pool: 431), connections, per-IP
 * connections, inactivity (timeout), and malformed HTTP (400, closed).
 *
 *-------------------------------------------------------------------------
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "callbackd.h"

/* One request, from its headers to its completion. */
typedef struct Request
{
	double		started_ms;
	char		peer[64];
	char		client[64];
	char		method[12];		/* letters only, for the access log */
	char		route[80];		/* what the access log names: never the raw path */
	char		account[64];
	const char *kind;			/* "notify", "confirm", "health", NULL */
	bool		counted;		/* in in_flight */
	char	   *body;
	size_t		len;
	size_t		cap;
	int			status;
	char		verdict[16];
	size_t		out_bytes;
} Request;

static atomic_int in_flight;

int
server_in_flight(void)
{
	return atomic_load(&in_flight);
}

/* A peer that cannot be judged later is refused before a byte is read. */
static enum MHD_Result
accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	unsigned char a[16];

	if (config.allow.n == 0)
		return MHD_YES;
	if (!sockaddr_to_v6(addr, a))
		return MHD_NO;
	if (netlist_contains(&config.trusted_proxies, a) || netlist_contains(&config.allow, a))
		return MHD_YES;
	return MHD_NO;
}

static enum MHD_Result
respond(struct MHD_Connection *conn, Request *r, int status, const char *body, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
							len > 0 && body[0] == '{' ? "application/json" : "text/plain; charset=utf-8");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	r->status = status;
	r->out_bytes = len;
	return ret;
}

static enum MHD_Result
respond_text(struct MHD_Connection *conn, Request *r, int status, const char *text)
{
	return respond(conn, r, status, text, strlen(text));
}

/* Headers as a JSON object, for withdraw_callback; a growing buffer. */
typedef struct JsonBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	int			count;			/* members written */
} JsonBuf;

static void
jb_put(JsonBuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap ? b->cap * 2 : 1024;
		b->data = realloc(b->data, b->cap);
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

/* A JSON string's content: quotes, backslashes and control bytes escaped; other bytes as they are. */
static void
jb_escaped(JsonBuf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		unsigned char ch = (unsigned char) s[i];
		char		esc[8];

		if (ch == '"' || ch == '\\')
		{
			esc[0] = '\\';
			esc[1] = (char) ch;
			jb_put(b, esc, 2);
		}
		else if (ch < 0x20 || ch == 0x7f)
		{
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
			jb_put(b, esc, 6);
		}
		else
			jb_put(b, (const char *) &ch, 1);
	}
}

static enum MHD_Result
count_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
			 const char *value, size_t value_size)
{
	(*(int *) cls)++;
	return MHD_YES;
}

/*
 * Collects the headers of one name (case-insensitively) into one value, in
 * order; called once per distinct name, so a request's n headers cost n^2
 * comparisons at most, with n bounded by max_headers.
 */
typedef struct Collect
{
	JsonBuf    *b;
	const char *name;
	size_t		name_len;
	int			index;			/* of this header among all */
	int			first;			/* index of the first header of this name */
	int			seen;
} Collect;

static enum MHD_Result
first_of_name(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
			  const char *value, size_t value_size)
{
	Collect    *c = cls;

	if (key_size == c->name_len && strncasecmp(key, c->name, key_size) == 0)
	{
		c->first = c->index;
		return MHD_NO;
	}
	c->index++;
	return MHD_YES;
}

static enum MHD_Result
values_of_name(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
			   const char *value, size_t value_size)
{
	Collect    *c = cls;

	if (key_size == c->name_len && strncasecmp(key, c->name, key_size) == 0)
	{
		if (c->seen++)
			jb_put(c->b, ", ", 2);
		jb_escaped(c->b, value ? value : "", value ? value_size : 0);
	}
	return MHD_YES;
}

typedef struct Walk
{
	struct MHD_Connection *conn;
	JsonBuf    *b;
	int			index;
} Walk;

static enum MHD_Result
write_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
			 const char *value, size_t value_size)
{
	Walk	   *w = cls;
	Collect		c = {w->b, key, key_size, 0, -1, 0};

	/* only the first header of each name writes the name's joined values */
	MHD_get_connection_values_n(w->conn, MHD_HEADER_KIND, first_of_name, &c);
	if (c.first == w->index)
	{
		if (w->b->count++)
			jb_put(w->b, ",", 1);
		jb_put(w->b, "\"", 1);
		jb_escaped(w->b, key, key_size);
		jb_put(w->b, "\":\"", 3);
		MHD_get_connection_values_n(w->conn, MHD_HEADER_KIND, values_of_name, &c);
		jb_put(w->b, "\"", 1);
	}
	w->index++;
	return MHD_YES;
}

static void
headers_json(struct MHD_Connection *conn, JsonBuf *b)
{
	Walk		w = {conn, b, 0};

	memset(b, 0, sizeof(*b));
	jb_put(b, "{", 1);
	MHD_get_connection_values_n(conn, MHD_HEADER_KIND, write_header, &w);
	jb_put(b, "}", 1);
}

/* "/ACCOUNT/KIND" -> account and kind, for a configured account only. */
static bool
route(const char *url, Request *r)
{
	const char *slash;
	size_t		n;

	if (url[0] != '/')
		return false;
	slash = strchr(url + 1, '/');
	if (slash == NULL)
		return false;
	n = slash - (url + 1);
	if (n == 0 || n >= sizeof(r->account))
		return false;
	memcpy(r->account, url + 1, n);
	r->account[n] = '\0';
	if (!config_has_account(&config, r->account))
		return false;
	if (strcmp(slash + 1, "notify") == 0)
		r->kind = "notify";
	else if (strcmp(slash + 1, "confirm") == 0)
		r->kind = "confirm";
	else
		return false;
	snprintf(r->route, sizeof(r->route), "/%s/%s", r->account, r->kind);
	return true;
}

/* The first call of a request: its headers are in; decide whether to read on. */
static enum MHD_Result
begin(struct MHD_Connection *conn, const char *url, const char *method, Request *r)
{
	const union MHD_ConnectionInfo *info;
	unsigned char peer[16],
				client[16];
	const char *length;
	int			headers = 0;

	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (info == NULL || !sockaddr_to_v6(info->client_addr, peer))
		return MHD_NO;
	addr_format(peer, r->peer, sizeof(r->peer));
	client_address(peer, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For"), client);
	addr_format(client, r->client, sizeof(r->client));
	strcpy(r->route, "-");
	for (size_t i = 0; method[i] && i < sizeof(r->method) - 1; i++)
		r->method[i] = (method[i] >= 'A' && method[i] <= 'Z') ? method[i] : '?';

	if (config.allow.n > 0 && !netlist_contains(&config.allow, client))
		return respond_text(conn, r, MHD_HTTP_FORBIDDEN, "source not allowed\n");

	if (strcmp(url, "/health") == 0)
	{
		strcpy(r->route, "/health");
		if (strcmp(method, "GET") != 0)
			return respond_text(conn, r, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
		r->kind = "health";
		return db_healthy() ? respond_text(conn, r, MHD_HTTP_OK, "ok\n")
			: respond_text(conn, r, MHD_HTTP_SERVICE_UNAVAILABLE, "database unreachable\n");
	}
	if (!route(url, r))
		return respond_text(conn, r, MHD_HTTP_NOT_FOUND, "no such route\n");
	if (strcmp(method, "POST") != 0)
		return respond_text(conn, r, MHD_HTTP_METHOD_NOT_ALLOWED, "POST only\n");

	MHD_get_connection_values_n(conn, MHD_HEADER_KIND, count_header, &headers);
	if (headers > config.max_headers)
		return respond_text(conn, r, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers\n");
	length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (length != NULL && strtoull(length, NULL, 10) > (unsigned long long) config.max_body_bytes)
		return respond_text(conn, r, MHD_HTTP_CONTENT_TOO_LARGE, "body too large\n");

	r->counted = true;
	atomic_fetch_add(&in_flight, 1);
	return MHD_YES;
}

/* The whole body is in: the database decides, and its answer goes back as it is. */
static enum MHD_Result
finish(struct MHD_Connection *conn, Request *r)
{
	JsonBuf		headers;
	DbAnswer	answer;
	enum MHD_Result ret;

	headers_json(conn, &headers);
	db_receive(r->account, r->kind, r->body, r->len, headers.data, headers.len, r->client, &answer);
	free(headers.data);
	memcpy(r->verdict, answer.verdict, sizeof(r->verdict));
	ret = respond(conn, r, answer.status, answer.reply, strlen(answer.reply));
	free(answer.reply);
	return ret;
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
	Request    *r = *req_cls;

	if (r == NULL)
	{
		r = calloc(1, sizeof(Request));
		if (r == NULL)
			return MHD_NO;
		r->started_ms = now_ms();
		*req_cls = r;
		return begin(conn, url, method, r);
	}
	if (r->status != 0)
	{
		/* answered already (a refusal): what still comes is not read */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		size_t		n = *upload_data_size;

		if (now_ms() - r->started_ms > config.request_timeout_s * 1000.0)
		{
			/* a body that drips (each byte within the inactivity limit): cut */
			r->status = MHD_HTTP_REQUEST_TIMEOUT;
			return MHD_NO;
		}

		if (r->len + n > (size_t) config.max_body_bytes)
		{
			/* a chunked body past the limit: the connection is closed */
			r->status = MHD_HTTP_CONTENT_TOO_LARGE;
			return MHD_NO;
		}
		if (r->len + n > r->cap)
		{
			r->cap = r->len + n > 4096 ? (r->len + n) * 2 : 4096;
			if (r->cap > (size_t) config.max_body_bytes)
				r->cap = config.max_body_bytes;
			r->body = realloc(r->body, r->cap);
			if (r->body == NULL)
				return MHD_NO;
		}
		memcpy(r->body + r->len, upload_data, n);
		r->len += n;
		*upload_data_size = 0;
		return MHD_YES;
	}
	return finish(conn, r);
}

/* Every request ends here, answered or not: one access log line. */
static void
completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe)
{
	Request    *r = *req_cls;
	static const char *const ends[] = {"ok", "error", "timeout", "shutdown", "read_error", "client_abort"};

	if (r == NULL)
		return;
	log_access("peer=%s client=%s method=%s route=%s status=%d verdict=%s in=%zu out=%zu ms=%.2f end=%s",
			   r->peer, r->client, r->method[0] ? r->method : "-", r->route, r->status, r->verdict[0] ? r->verdict : "-",
			   r->len, r->out_bytes, now_ms() - r->started_ms,
			   (unsigned) toe < sizeof(ends) / sizeof(ends[0]) ? ends[toe] : "other");
	if (r->counted)
		atomic_fetch_sub(&in_flight, 1);
	free(r->body);
	free(r);
	*req_cls = NULL;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* libmicrohttpd's own messages (malformed requests and the like), as warnings. */
static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char		text[256];
	size_t		n;

	vsnprintf(text, sizeof(text), fmt, ap);
	n = strlen(text);
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		text[--n] = '\0';
	/* its texts quote no body or header value; keep them to one safe line anyway */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char) text[i] < 0x20 || text[i] == '"')
			text[i] = '\'';
	log_msg("warning", "event=http msg=\"%s\"", text);
}

static char *
read_file(const char *path, char *err, size_t errlen)
{
	FILE	   *f = fopen(path, "r");
	char	   *data;
	long		n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > 1024 * 1024 ||
		fseek(f, 0, SEEK_SET) != 0)
	{
		snprintf(err, errlen, "could not read %s", path);
		if (f)
			fclose(f);
		return NULL;
	}
	data = calloc(1, n + 1);
	if (fread(data, 1, n, f) != (size_t) n)
	{
		snprintf(err, errlen, "could not read %s", path);
		free(data);
		data = NULL;
	}
	fclose(f);
	return data;
}

/* Starts the server threads on an open listening socket. */
struct MHD_Daemon *
server_start(int listen_fd, char *err, size_t errlen)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	struct MHD_OptionItem opts[16];
	int			n = 0;
	char	   *cert = NULL,
			   *key = NULL;
	struct MHD_Daemon *d;

	db_init();
	/* first, so that every message of the library comes here */
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t) mhd_logger, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_THREAD_POOL_SIZE, config.threads, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_LIMIT, config.max_connections, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_TIMEOUT, config.timeout_s, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_MEMORY_LIMIT, config.max_header_bytes, NULL};
	if (config.max_connections_per_ip > 0)
		opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_PER_IP_CONNECTION_LIMIT, config.max_connections_per_ip, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t) completed, NULL};
	/* refuse what HTTP/1.1 does not allow rather than guess */
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL};
	if (config.tls_cert)
	{
		if ((cert = read_file(config.tls_cert, err, errlen)) == NULL ||
			(key = read_file(config.tls_key, err, errlen)) == NULL)
			return NULL;
		flags |= MHD_USE_TLS;
		opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_CERT, 0, cert};
		opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_KEY, 0, key};
	}
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_END, 0, NULL};

	d = MHD_start_daemon(flags, 0, accept_policy, NULL, handle, NULL,
						 MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (key)
	{
		/* libmicrohttpd keeps its own copy once started: wipe ours */
		memset(key, 0, strlen(key));
		free(key);
	}
	free(cert);
	if (d == NULL)
		snprintf(err, errlen, "libmicrohttpd could not start (threads, TLS files or socket)");
	return d;
}
