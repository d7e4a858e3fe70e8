/*-------------------------------------------------------------------------
 *
 * main.c
 *	  withdraw-callbackd's life: settings, the listening socket, dropping
 *	  root, the server threads, and a graceful stop.
 *
 *	  withdraw-callbackd [--config FILE] [--KEY=VALUE ...]
 *
 * Started as root (to bind a low port, or by an init system that does not
 * switch users), it binds first and then becomes "user" before a single
 * request is read; it refuses to serve as root.  SIGTERM and SIGINT stop
 * it gracefully: no new connection is accepted, the requests in flight
 * finish (up to shutdown_timeout seconds), then it exits.  A provider
 * whose callback was cut sends it again: nothing is lost either way.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "callbackd.h"

static void
usage(FILE *out)
{
	fprintf(out,
			"withdraw-callbackd " CALLBACKD_VERSION ": receives providers' callbacks for the withdraw extension\n"
			"\n"
			"usage: withdraw-callbackd [--config FILE] [--KEY=VALUE ...]\n"
			"\n"
			"Settings (file: KEY = VALUE lines; flags win over the file):\n"
			"  listen                  host:port to listen on (127.0.0.1:8480)\n"
			"  database                libpq connection string; the role must have withdraw_webhook only\n"
			"  accounts                accounts served: POST /ACCOUNT/notify, POST /ACCOUNT/confirm\n"
			"  threads                 server threads = database connections (4)\n"
			"  max_connections         connections at once (256)\n"
			"  max_connections_per_ip  per source address, 0 = no limit (0)\n"
			"  max_body_bytes          largest body (65536)\n"
			"  max_headers             most headers in a request (64)\n"
			"  max_header_bytes        request line and headers, bytes (16384)\n"
			"  timeout                 seconds a connection may stay silent (10)\n"
			"  request_timeout         seconds from the headers to the body's last byte (30)\n"
			"  db_timeout_ms           statement_timeout of each call (10000)\n"
			"  shutdown_timeout        seconds to finish requests in flight at a stop (10)\n"
			"  allow                   source networks allowed, e.g. 203.0.113.0/24 (empty: any)\n"
			"  trusted_proxies         proxies whose X-Forwarded-For is believed (none)\n"
			"  tls_cert, tls_key       PEM files: serve HTTPS\n"
			"  user                    the OS user to become when started as root\n"
			"  access_log              on | off (on): one line per request on stderr\n"
			"\n"
			"GET /health answers 200 when the database is reachable, 503 otherwise.\n");
}

/* "host:port" or "[v6]:port" -> a bound, listening socket. */
static int
listen_on(const char *spec, char *err, size_t errlen)
{
	char		host[256];
	const char *port;
	struct addrinfo hints = {0},
			   *res,
			   *ai;
	int			fd = -1,
				one = 1,
				rc;

	if (spec[0] == '[')
	{
		const char *close = strchr(spec, ']');

		if (close == NULL || close[1] != ':' || (size_t) (close - spec - 1) >= sizeof(host))
			goto bad;
		memcpy(host, spec + 1, close - spec - 1);
		host[close - spec - 1] = '\0';
		port = close + 2;
	}
	else
	{
		const char *colon = strrchr(spec, ':');

		if (colon == NULL || (size_t) (colon - spec) >= sizeof(host))
			goto bad;
		memcpy(host, spec, colon - spec);
		host[colon - spec] = '\0';
		port = colon + 1;
	}
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0)
	{
		snprintf(err, errlen, "listen %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next)
	{
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(err, errlen, "listen %s: %s", spec, strerror(errno));
	return fd;
bad:
	snprintf(err, errlen, "listen must be host:port or [v6]:port");
	return -1;
}

/* Root never serves: become config.user, or refuse. */
static bool
drop_root(char *err, size_t errlen)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return true;
	if (config.user == NULL)
	{
		snprintf(err, errlen, "started as root: set user = an unprivileged OS user to run as");
		return false;
	}
	if ((pw = getpwnam(config.user)) == NULL || pw->pw_uid == 0)
	{
		snprintf(err, errlen, "user \"%.64s\" does not exist or is root", config.user);
		return false;
	}
	if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0 ||
		setuid(0) == 0)
	{
		snprintf(err, errlen, "could not become user \"%.64s\": %s", config.user, strerror(errno));
		return false;
	}
	return true;
}

int
main(int argc, char **argv)
{
	char		err[512];
	sigset_t	sigs;
	int			sig,
				fd;
	struct MHD_Daemon *d;

	config_defaults(&config);
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
		{
			usage(stdout);
			return 0;
		}
		if (strcmp(a, "--version") == 0)
		{
			printf("withdraw-callbackd " CALLBACKD_VERSION "\n");
			return 0;
		}
		if (strcmp(a, "--config") == 0 && i + 1 < argc)
		{
			if (!config_load_file(&config, argv[++i], err, sizeof(err)))
				goto fail;
		}
		else if (strncmp(a, "--config=", 9) == 0)
		{
			if (!config_load_file(&config, a + 9, err, sizeof(err)))
				goto fail;
		}
	}
	/* flags after the file, whatever their order on the line */
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		char		key[64];
		const char *eq;

		if (strcmp(a, "--config") == 0)
		{
			i++;
			continue;
		}
		if (strncmp(a, "--config=", 9) == 0)
			continue;
		if (strncmp(a, "--", 2) != 0 || (eq = strchr(a, '=')) == NULL || (size_t) (eq - a - 2) >= sizeof(key))
		{
			snprintf(err, sizeof(err), "unexpected argument \"%.64s\" (see --help)", a);
			goto fail;
		}
		memcpy(key, a + 2, eq - a - 2);
		key[eq - a - 2] = '\0';
		for (char *k = key; *k; k++)
			if (*k == '-')
				*k = '_';
		if (!config_set(&config, key, eq + 1, err, sizeof(err)))
			goto fail;
	}
	if (!config_check(&config, err, sizeof(err)))
		goto fail;

	if ((fd = listen_on(config.listen, err, sizeof(err))) < 0)
		goto fail;
	if (!drop_root(err, sizeof(err)))
		goto fail;

	/* the server threads inherit this mask: only main() takes the signals */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	srand((unsigned) time(NULL) ^ (unsigned) getpid());

	if ((d = server_start(fd, err, sizeof(err))) == NULL)
		goto fail;
	log_msg("info", "event=started listen=%s accounts=%d threads=%d tls=%s pid=%d",
			config.listen, config.naccounts, config.threads, config.tls_cert ? "on" : "off", (int) getpid());

	for (;;)
	{
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP)
		{
			log_msg("info", "event=sighup msg=\"settings are read at start: restart to change them\"");
			continue;
		}
		break;
	}

	/* graceful: stop accepting, let what is in flight finish, then stop */
	{
		double		deadline = now_ms() + config.shutdown_timeout_s * 1000.0;
		MHD_socket	lfd = MHD_quiesce_daemon(d);

		log_msg("info", "event=stopping signal=%d in_flight=%d", sig, server_in_flight());
		if (lfd != MHD_INVALID_SOCKET)
			close(lfd);
		while (server_in_flight() > 0 && now_ms() < deadline)
		{
			struct timespec ts = {0, 20 * 1000 * 1000};

			nanosleep(&ts, NULL);
		}
		log_msg("info", "event=stopped in_flight_left=%d", server_in_flight());
		MHD_stop_daemon(d);
	}
	return 0;

fail:
	log_msg("error", "event=start_failed msg=\"%s\"", err);
	return 1;
}
