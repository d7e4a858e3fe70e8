/*-------------------------------------------------------------------------
 *
 * net_guard.c
 *	  Where requests may go: the rules of the network guard, as pure
 *	  functions of the settings (withdraw.allowed_hosts, allow_http,
 *	  allow_private_addresses).  http.c applies them: a URL is checked
 *	  before its transfer starts, an address in curl's socket-open and
 *	  pre-request hooks; accounts.c checks a base_url when it is written.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <curl/curl.h>

#include "http.h"
#include "net_guard.h"
#include "withdraw.h"

/*
 * Why an address is not public, or NULL when it is.  Requests to these are
 * refused (unless withdraw.allow_private_addresses) whatever name resolved
 * to them: an account pointed at an internal host must not turn the worker
 * into a proxy into the server's network (SSRF) nor receive credentials.
 */
static const char *
ipv4_class(uint32 a)
{
	if ((a >> 24) == 0)
		return "\"this network\" (0.0.0.0/8)";
	if ((a >> 24) == 10 || (a >> 20) == 0xAC1 || (a >> 16) == 0xC0A8)
		return "private (RFC 1918)";
	if ((a >> 22) == (0x64400000 >> 22))
		return "shared address space (100.64.0.0/10)";
	if ((a >> 24) == 127)
		return "loopback";
	if ((a >> 16) == 0xA9FE)
		return "link-local";
	if ((a >> 8) == 0xC00000)
		return "IETF protocol assignments (192.0.0.0/24)";
	if ((a >> 8) == 0xC00002 || (a >> 8) == 0xC63364 || (a >> 8) == 0xCB0071)
		return "documentation";
	if ((a >> 8) == 0xC05863)
		return "6to4 relay (192.88.99.0/24)";
	if ((a >> 17) == (0xC6120000 >> 17))
		return "benchmarking (198.18.0.0/15)";
	if ((a >> 28) == 0xE)
		return "multicast";
	if ((a >> 28) == 0xF)
		return "reserved (240.0.0.0/4)";
	return NULL;
}

static uint32
ipv4_at(const unsigned char *b)
{
	return ((uint32) b[0] << 24) | ((uint32) b[1] << 16) | ((uint32) b[2] << 8) | b[3];
}

const char *
net_address_class(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ipv4_class(ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6)
	{
		const unsigned char *b = ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

		/* an IPv4 address in IPv6 clothing is judged as IPv4 */
		if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
			return ipv4_class(ipv4_at(b + 12));
		if (b[0] == 0x20 && b[1] == 0x02)	/* 6to4 */
			return ipv4_class(ipv4_at(b + 2));
		if (memcmp(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0)
			return "loopback";
		if (memcmp(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16) == 0)
			return "unspecified";
		if (b[0] == 0)
			return "reserved (::/8: IPv4-compatible, local NAT64...)";
		if (b[0] == 0x01 && b[1] == 0 && memcmp(b + 2, "\0\0\0\0\0\0", 6) == 0)
			return "discard-only (100::/64)";
		if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0)
			return "Teredo (2001::/32)";
		if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
			return "documentation";
		if ((b[0] & 0xfe) == 0xfc)
			return "unique local (fc00::/7)";
		if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
			return "link-local (fe80::/10)";
		if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
			return "site-local (fec0::/10)";
		if (b[0] == 0xff)
			return "multicast";
		return NULL;
	}
	return "not an Internet address";
}

/* Lower-cased host without IPv6 brackets or a final dot, for comparing. */
static char *
normalized_host(const char *host, int len)
{
	char	   *h;

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']')
	{
		host++;
		len -= 2;
	}
	if (len > 0 && host[len - 1] == '.')
		len--;
	h = pnstrdup(host, len);
	for (char *c = h; *c; c++)
		*c = pg_tolower((unsigned char) *c);
	return h;
}

/*
 * The scheme, host and port (the scheme's default when absent) of a URL as
 * libcurl reads it — the same parser that will use the URL — or false.
 */
bool
http_url_origin(const char *url, char **scheme, char **host, int *port)
{
	CURLU	   *u = curl_url();
	char	   *s = NULL;
	char	   *h = NULL;
	char	   *p = NULL;
	bool		ok;

	if (u == NULL)
		return false;
	ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_SCHEME, &s, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK &&
		h[0] != '\0';
	if (ok)
	{
		*scheme = normalized_host(s, strlen(s));
		*host = normalized_host(h, strlen(h));
		*port = atoi(p);
	}
	curl_free(s);
	curl_free(h);
	curl_free(p);
	curl_url_cleanup(u);
	return ok;
}

/*
 * The next entry of a comma-separated list of hosts (withdraw.allowed_hosts)
 * in [*start, *end), blanks trimmed (an empty entry has *start == *end);
 * advances *p past it.  false when the list is over.
 */
bool
http_host_list_next(const char **p, const char **start, const char **end)
{
	const char *s = *p;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return false;
	*start = s;
	while (*s && *s != ',')
		s++;
	*end = s;
	while (*end > *start && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
		(*end)--;
	if (*s == ',')
		s++;
	*p = s;
	return true;
}

/*
 * Is host (normalized) in withdraw.allowed_hosts?  Empty list: any host.
 * An entry "*.example.com" allows every host below example.com (not
 * example.com itself, which needs its own entry).
 */
bool
http_host_allowed(const char *host)
{
	const char *p = withdraw_allowed_hosts;
	const char *start;
	const char *end;
	int			hlen = strlen(host);
	bool		empty = true;

	if (p == NULL)
		return true;
	while (http_host_list_next(&p, &start, &end))
	{
		char	   *entry;
		int			elen;
		bool		match;

		if (end == start)
			continue;
		empty = false;
		if (end - start > 2 && start[0] == '*' && start[1] == '.')
		{
			entry = normalized_host(start + 1, end - start - 1);	/* ".example.com" */
			elen = strlen(entry);
			match = hlen > elen && strcmp(host + hlen - elen, entry) == 0;
		}
		else
		{
			entry = normalized_host(start, end - start);
			match = strcmp(host, entry) == 0;
		}
		pfree(entry);
		if (match)
			return true;
	}
	return empty;
}

/*
 * Why a request to url may not be sent under the current settings, or
 * NULL: the scheme (https, or http with withdraw.allow_http) and the host
 * (withdraw.allowed_hosts).  Checked at each send, so that a reload that
 * narrows the settings stops existing accounts too.
 */
char *
http_url_refusal(const char *url)
{
	char	   *scheme;
	char	   *host;
	int			port;

	if (!http_url_origin(url, &scheme, &host, &port))
		return pstrdup("the URL cannot be parsed");
	if (strcmp(scheme, "http") == 0 && !withdraw_allow_http)
		return pstrdup("http:// is not allowed (withdraw.allow_http is off)");
	if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)
		return psprintf("%s:// is not allowed", scheme);
	if (!http_host_allowed(host))
		return psprintf("host \"%s\" is not in withdraw.allowed_hosts", host);
	return NULL;
}
