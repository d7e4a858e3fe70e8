/*-------------------------------------------------------------------------
 *
 * db.c
 *	  The database side of withdraw-callbackd: one libpq connection per
 *	  server thread (so no request waits for another's connection), opened
 *	  lazily, re-opened after a failure with exponential backoff, and one
 *	  prepared call per callback:
 *
 *		SELECT http_status, reply, verdict
 *		FROM withdraw_receive(account, kind, body, headers, source)
 *
 * The body and headers go as binary bytea parameters, byte for byte; the
 * function decides what is authentic and what the provider is answered.
 * While the database cannot be reached the answer is 503 at once (the
 * provider sends the callback again later), never a wait.
 *
 * A connection whose role is a superuser is refused: the daemon must run
 * with withdraw_webhook's rights only.  Messages name SQLSTATEs, never the
 * connection string (it may hold a password) or what a callback carried.
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "callbackd.h"

#define BACKOFF_MIN_MS	100.0
#define BACKOFF_MAX_MS	10000.0

typedef struct DbConn
{
	PGconn	   *conn;
	int			failures;		/* consecutive failed connects */
	double		next_try_ms;	/* no connect before this (now_ms clock) */
} DbConn;

static pthread_key_t conn_key;
static pthread_once_t conn_once = PTHREAD_ONCE_INIT;

static const char *const receive_sql =
"SELECT http_status, reply, verdict FROM withdraw_receive($1, $2, $3, $4, $5::inet)";

/* Thread exit (the server stops its threads): close its connection. */
static void
conn_free(void *p)
{
	DbConn	   *db = p;

	if (db->conn)
		PQfinish(db->conn);
	free(db);
}

static void
make_key(void)
{
	pthread_key_create(&conn_key, conn_free);
}

void
db_init(void)
{
	pthread_once(&conn_once, make_key);
}

/* The server's notices (withdraw_confirm's WARNING on a refusal) are not ours to log. */
static void
ignore_notice(void *arg, const char *message)
{
}

static void
drop(DbConn *db)
{
	double		delay;

	if (db->conn)
		PQfinish(db->conn);
	db->conn = NULL;
	db->failures++;
	delay = BACKOFF_MIN_MS * (double) (1 << (db->failures < 8 ? db->failures - 1 : 7));
	if (delay > BACKOFF_MAX_MS)
		delay = BACKOFF_MAX_MS;
	/* jitter, so that the threads do not knock all at once */
	delay = delay / 2 + (double) (rand() % 1000) / 1000.0 * delay / 2;
	db->next_try_ms = now_ms() + delay;
}

/* This thread's connection, opened now if it is time to try; NULL if none. */
static PGconn *
conn_get(void)
{
	DbConn	   *db = pthread_getspecific(conn_key);
	PGresult   *res;
	char		setting[64];
	const char *super;

	if (db == NULL)
	{
		db = calloc(1, sizeof(DbConn));
		pthread_setspecific(conn_key, db);
	}
	if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK)
		return db->conn;
	if (db->conn != NULL)
		drop(db);
	if (now_ms() < db->next_try_ms)
		return NULL;

	{
		/* the configured string comes last: its settings win */
		const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
		const char *const vals[] = {"5", "withdraw-callbackd", config.database, NULL};

		db->conn = PQconnectdbParams(keys, vals, 1);
	}
	if (PQstatus(db->conn) != CONNECTION_OK)
	{
		log_msg("warning", "event=db_connect_failed failures=%d", db->failures + 1);
		drop(db);
		return NULL;
	}
	PQsetNoticeProcessor(db->conn, ignore_notice, NULL);
	super = PQparameterStatus(db->conn, "is_superuser");
	if (super == NULL || strcmp(super, "off") != 0)
	{
		log_msg("error", "event=db_role_refused reason=\"the role is a superuser: connect as a role that has withdraw_webhook only\"");
		drop(db);
		return NULL;
	}
	snprintf(setting, sizeof(setting), "SET statement_timeout = %d", config.db_timeout_ms);
	res = PQexec(db->conn, setting);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		PQclear(res);
		drop(db);
		return NULL;
	}
	PQclear(res);
	res = PQprepare(db->conn, "receive", receive_sql, 5, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		log_msg("error", "event=db_prepare_failed sqlstate=%s hint=\"is the extension at 0.6.0, and does the role have withdraw_webhook?\"",
				state ? state : "none");
		PQclear(res);
		drop(db);
		return NULL;
	}
	PQclear(res);
	if (db->failures > 0)
		log_msg("info", "event=db_connected after_failures=%d", db->failures);
	db->failures = 0;
	return db->conn;
}

static void
answer_set(DbAnswer *answer, int status, const char *reply, const char *verdict)
{
	answer->status = status;
	answer->reply = strdup(reply);
	snprintf(answer->verdict, sizeof(answer->verdict), "%s", verdict);
}

/*
 * Passes one callback to withdraw_receive; the answer is the provider's.
 * Whatever goes wrong on the way is a 503 (the provider retries), or a 500
 * when the database refused the call itself (a grant or version missing).
 */
void
db_receive(const char *account, const char *kind, const char *body, size_t body_len,
		   const char *headers_json, size_t headers_len, const char *source, DbAnswer *answer)
{
	PGconn	   *conn = conn_get();
	const char *values[5];
	int			lengths[5] = {0, 0, (int) body_len, (int) headers_len, 0};
	int			formats[5] = {0, 0, 1, 1, 0};
	PGresult   *res;

	if (conn == NULL)
	{
		answer_set(answer, 503, "database unreachable: send it again", "");
		return;
	}
	values[0] = account;
	values[1] = kind;
	values[2] = body_len ? body : "";
	values[3] = headers_json;
	values[4] = source;
	res = PQexecPrepared(conn, "receive", 5, values, lengths, formats, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
	{
		answer_set(answer, atoi(PQgetvalue(res, 0, 0)),
				   PQgetisnull(res, 0, 1) ? "" : PQgetvalue(res, 0, 1),
				   PQgetisnull(res, 0, 2) ? "" : PQgetvalue(res, 0, 2));
		PQclear(res);
		return;
	}
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (PQstatus(conn) != CONNECTION_OK)
		{
			log_msg("warning", "event=db_connection_lost");
			answer_set(answer, 503, "database unreachable: send it again", "");
			PQclear(res);
			drop(pthread_getspecific(conn_key));
			return;
		}
		log_msg("error", "event=db_call_failed sqlstate=%s", state ? state : "none");
		/* 57014 statement timeout, 40001/40P01, 53xxx, 57Pxx: the database is busy */
		if (state && (strncmp(state, "40", 2) == 0 || strncmp(state, "53", 2) == 0 ||
					  strncmp(state, "57", 2) == 0))
			answer_set(answer, 503, "database busy: send it again", "");
		else
			answer_set(answer, 500, "the database refused the call", "");
		/* the function changed under the prepared call (an upgrade): prepare it again */
		if (state && (strcmp(state, "0A000") == 0 || strcmp(state, "26000") == 0 ||
					  strcmp(state, "42883") == 0))
			drop(pthread_getspecific(conn_key));
		PQclear(res);
	}
}

/* The health endpoint: this thread reaches the database and may call it. */
bool
db_healthy(void)
{
	PGconn	   *conn = conn_get();
	PGresult   *res;
	bool		ok;

	if (conn == NULL)
		return false;
	res = PQexec(conn, "SELECT 1");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	PQclear(res);
	if (!ok && PQstatus(conn) != CONNECTION_OK)
		drop(pthread_getspecific(conn_key));
	return ok;
}
