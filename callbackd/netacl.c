/*-------------------------------------------------------------------------
 *
 * netacl.c
 *	  Source networks: the lists "allow" (where callbacks may come from;
 *	  providers publish theirs) and "trusted_proxies" (whose X-Forwarded-For
 *	  is believed), and the client address of a request.
 *
 * Addresses are kept as 16 bytes, IPv4 as IPv4-mapped IPv6, so that one
 * comparison serves both families.  X-Forwarded-For is read only when the
 * peer is a trusted proxy, from the right: the first address that is not a
 * trusted proxy is the client (addresses further left were written by the
 * client itself and prove nothing).
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callbackd.h"

static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* An address in text (IPv4 or IPv6) as 16 bytes; false if it is none. */
static bool
parse_addr(const char *text, unsigned char out[16], bool *is_v4)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, text, &a4) == 1)
	{
		memcpy(out, v4mapped, 12);
		memcpy(out + 12, &a4, 4);
		*is_v4 = true;
		return true;
	}
	if (inet_pton(AF_INET6, text, &a6) == 1)
	{
		memcpy(out, &a6, 16);
		*is_v4 = false;
		return true;
	}
	return false;
}

/* "10.0.0.0/8, 2001:db8::/32 192.0.2.7" -> list (replacing it). */
bool
netlist_parse(NetList *list, const char *text, char *err, size_t errlen)
{
	char	   *copy = strdup(text);
	char	   *save = NULL;
	char	   *tok;

	free(list->nets);
	list->nets = calloc(strlen(text) / 2 + 2, sizeof(Network));
	list->n = 0;
	for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
	{
		Network    *net = &list->nets[list->n];
		char	   *slash = strchr(tok, '/');
		bool		v4;
		int			bits = -1;

		if (slash)
		{
			char	   *end;

			*slash = '\0';
			bits = (int) strtol(slash + 1, &end, 10);
			if (end == slash + 1 || *end != '\0')
				bits = -2;
		}
		if (!parse_addr(tok, net->addr, &v4) || bits == -2 || bits > (v4 ? 32 : 128))
		{
			snprintf(err, errlen, "\"%.64s\" is not an address or network (a.b.c.d/n, x::y/n)", tok);
			free(copy);
			return false;
		}
		net->prefix = bits < 0 ? 128 : (v4 ? 96 + bits : bits);
		list->n++;
	}
	free(copy);
	return true;
}

bool
netlist_contains(const NetList *list, const unsigned char addr[16])
{
	for (int i = 0; i < list->n; i++)
	{
		const Network *net = &list->nets[i];
		int			full = net->prefix / 8,
					rest = net->prefix % 8;

		if (memcmp(net->addr, addr, full) != 0)
			continue;
		if (rest && ((net->addr[full] ^ addr[full]) & (0xff << (8 - rest)) & 0xff))
			continue;
		return true;
	}
	return false;
}

/* A peer's socket address as 16 bytes. */
bool
sockaddr_to_v6(const struct sockaddr *sa, unsigned char out[16])
{
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET)
	{
		memcpy(out, v4mapped, 12);
		memcpy(out + 12, &((const struct sockaddr_in *) sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6)
	{
		memcpy(out, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
		return true;
	}
	return false;
}

/* 16 bytes as text (IPv4-mapped ones as a.b.c.d). */
void
addr_format(const unsigned char addr[16], char *out, size_t outlen)
{
	if (memcmp(addr, v4mapped, 12) == 0)
		inet_ntop(AF_INET, addr + 12, out, outlen);
	else
		inet_ntop(AF_INET6, addr, out, outlen);
}

/*
 * The client of a request from peer: the peer itself unless it is a
 * trusted proxy, else the rightmost address of X-Forwarded-For that is not
 * a trusted proxy.  A header that does not parse leaves the peer (the
 * proxy): the allow list then judges the proxy, which must not be in it
 * unless it is meant to be.
 */
bool
client_address(const unsigned char peer[16], const char *forwarded_for, unsigned char out[16])
{
	char		item[64];
	const char *end;

	memcpy(out, peer, 16);
	if (forwarded_for == NULL || !netlist_contains(&config.trusted_proxies, peer))
		return true;
	end = forwarded_for + strlen(forwarded_for);
	while (end > forwarded_for)
	{
		const char *start = end;
		size_t		n;
		unsigned char addr[16];
		bool		v4;

		while (start > forwarded_for && start[-1] != ',')
			start--;
		while (start < end && isspace((unsigned char) *start))
			start++;
		n = end - start;
		while (n > 0 && isspace((unsigned char) start[n - 1]))
			n--;
		if (n == 0 || n >= sizeof(item))
			break;
		memcpy(item, start, n);
		item[n] = '\0';
		if (!parse_addr(item, addr, &v4))
			break;
		memcpy(out, addr, 16);
		if (!netlist_contains(&config.trusted_proxies, addr))
			return true;
		end = start;
		while (end > forwarded_for && (end[-1] == ',' || isspace((unsigned char) end[-1])))
			end--;
	}
	memcpy(out, peer, 16);
	return false;
}
