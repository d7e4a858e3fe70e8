/*-------------------------------------------------------------------------
 *
 * callbackd.h
 *	  withdraw-callbackd: a small HTTP daemon that receives providers'
 *	  callbacks (notifications, chainup's second confirmations) and hands
 *	  them, raw, to the extension's withdraw_receive() over libpq, as a
 *	  role that holds only withdraw_webhook.
 *
 * It is a separate process on purpose: it faces the network, so a crash
 * or a bug in it cannot take the database down, and it has no more rights
 * than the webhook role.  HTTP is libmicrohttpd's (no parser of ours); the
 * files are one concern each:
 *
 *	main.c		start, privileges, signals, graceful shutdown
 *	config.c	configuration file and command-line flags
 *	netacl.c	allowed source networks, X-Forwarded-For from trusted proxies
 *	server.c	routes, limits, answers (libmicrohttpd callbacks)
 *	db.c		one libpq connection per server thread, reconnect with backoff
 *	log.c		access log lines and messages (never a body, header or secret)
 *
 *-------------------------------------------------------------------------
 */
#ifndef CALLBACKD_H
#define CALLBACKD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CALLBACKD_VERSION "0.6.0"

/* an IPv4 or IPv6 network (IPv4 kept as IPv4-mapped IPv6) */
typedef struct Network
{
	unsigned char addr[16];
	int			prefix;			/* bits of addr that must match, 0-128 */
} Network;

typedef struct NetList
{
	Network    *nets;
	int			n;
} NetList;

typedef struct Config
{
	char	   *listen;			/* host:port, [v6]:port */
	char	   *database;		/* libpq connection string (never logged) */
	char	  **accounts;		/* accounts that have routes */
	int			naccounts;
	int			threads;		/* server threads = database connections */
	int			max_connections;
	int			max_connections_per_ip;	/* 0: no limit */
	int			max_body_bytes;
	int			max_headers;
	int			max_header_bytes;
	int			timeout_s;		/* a connection's inactivity limit */
	int			request_timeout_s;	/* headers in to the last byte of the body */
	int			db_timeout_ms;	/* statement_timeout of each call */
	int			shutdown_timeout_s;
	NetList		allow;			/* empty: every source */
	NetList		trusted_proxies;
	char	   *tls_cert;
	char	   *tls_key;
	char	   *user;			/* switched to when started as root */
	bool		access_log;
} Config;

extern Config config;

/* config.c */
extern void config_defaults(Config *c);
extern bool config_set(Config *c, const char *key, const char *value, char *err, size_t errlen);
extern bool config_load_file(Config *c, const char *path, char *err, size_t errlen);
extern bool config_check(Config *c, char *err, size_t errlen);
extern bool config_has_account(const Config *c, const char *name);

/* netacl.c */
extern bool netlist_parse(NetList *list, const char *text, char *err, size_t errlen);
extern bool netlist_contains(const NetList *list, const unsigned char addr[16]);
extern bool sockaddr_to_v6(const struct sockaddr *sa, unsigned char out[16]);
extern void addr_format(const unsigned char addr[16], char *out, size_t outlen);
extern bool client_address(const unsigned char peer[16], const char *forwarded_for,
						   unsigned char out[16]);

/* db.c */
typedef struct DbAnswer
{
	int			status;			/* the HTTP status to answer with */
	char	   *reply;			/* the body (malloc'd), never NULL */
	char		verdict[16];	/* withdraw.callback's verdict, or "" */
} DbAnswer;

extern void db_init(void);
extern void db_receive(const char *account, const char *kind, const char *body, size_t body_len,
					   const char *headers_json, size_t headers_len, const char *source,
					   DbAnswer *answer);
extern bool db_healthy(void);

/* server.c */
extern struct MHD_Daemon *server_start(int listen_fd, char *err, size_t errlen);
extern int	server_in_flight(void);

/* log.c */
extern void log_msg(const char *level, const char *fmt,...) __attribute__((format(printf, 2, 3)));
extern void log_access(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern double now_ms(void);

#endif							/* CALLBACKD_H */
