/*-------------------------------------------------------------------------
 *
 * readiness.c
 *	  Whether a worker can send at all: a readable secrets key, the
 *	  extension at the version this library needs, the workers' role, the
 *	  state machine naming the states this library knows, and accounts
 *	  whose credentials open.
 *
 * What is missing is said in withdraw.workers at once and in the log at
 * most once a minute per reason; the worker looks again on its next claim.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "readiness.h"
#include "secrets.h"
#include "session.h"
#include "state.h"
#include "store.h"
#include "withdraw.h"
#include "worker.h"

/*
 * Why the worker sends nothing: in withdraw.workers at once, in the log at
 * most once a minute per reason (*logged_at is that reason's clock).
 */
static void
report_not_sending(const char *why, const char *hint, TimestampTz now, TimestampTz *logged_at)
{
	WithdrawShmemReportError(psprintf("not sending: %s", why));
	if (TimestampDifferenceExceeds(*logged_at, now, 60 * 1000))
	{
		ereport(WARNING,
				(errmsg("withdraw worker is not sending: %s", why),
				 errhint("%s", hint)));
		*logged_at = now;
	}
}

/*
 * Without a readable secrets key nothing can be signed: the worker sends
 * nothing, says why, and looks again on the next tick.  The file is read
 * at most once a second.
 */
bool
readiness_key(TimestampTz now)
{
	static TimestampTz checked_at = 0;
	static TimestampTz logged_at = 0;
	static bool ready = false;
	char	   *why = NULL;

	if (ready && !TimestampDifferenceExceeds(checked_at, now, 1000))
		return true;
	checked_at = now;
	ready = secrets_key_usable(&why);
	if (!ready)
		report_not_sending(why, "Withdrawals stay queued until the key file is readable; set withdraw.secrets_key_file and reload.",
						   now, &logged_at);
	return ready;
}

/*
 * The extension's objects are those this library was built for: after an
 * upgrade of the library and before ALTER EXTENSION withdraw UPDATE, the
 * worker's queries would fail on every claim, so it sends nothing and says
 * why.  Read again only when the extension's oid changes.
 */
bool
readiness_schema(TimestampTz now)
{
	static Oid	checked_oid = InvalidOid;
	static bool ready = false;
	static TimestampTz logged_at = 0;
	Oid			oid = get_extension_oid("withdraw", true);
	char	   *version;
	char	   *problem;

	if (oid == InvalidOid)
		return false;
	if (oid == checked_oid && ready && worker_in_role())
		return true;
	checked_oid = oid;
	if (SPI_execute("SELECT extversion FROM pg_extension WHERE extname = 'withdraw'", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "reading the extension's version failed");
	version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	ready = strcmp(version, WITHDRAW_SCHEMA_VERSION) == 0;
	if (ready && !worker_in_role())
	{
		/* never run the extension's work with the connection's superuser rights */
		ready = false;
		checked_oid = InvalidOid;
		report_not_sending(psprintf("role \"%s\" does not exist", WITHDRAW_WORKER_ROLE),
						   psprintf("Create role %s again with its rights on the extension's objects, as the extension's install script does.",
									WITHDRAW_WORKER_ROLE),
						   now, &logged_at);
	}
	else if (!ready)
	{
		checked_oid = InvalidOid;	/* look again on the next claim */
		report_not_sending(psprintf("extension withdraw is at version %s; this library needs %s",
									version, WITHDRAW_SCHEMA_VERSION),
						   psprintf("Run ALTER EXTENSION withdraw UPDATE in database \"%s\".",
									withdraw_database_name),
						   now, &logged_at);
	}
	else if ((problem = state_machine_problem()) != NULL)
	{
		/* the states C writes and reads must be the table's (state.c) */
		ready = false;
		checked_oid = InvalidOid;
		report_not_sending(problem,
						   "Make withdraw.state_transition name the states of this version (README, States) again.",
						   now, &logged_at);
	}
	return ready;
}

/*
 * Accounts whose sealed credentials cannot be opened (their key is not
 * configured, or they do not authenticate): their work is not claimed, so
 * that one of them stops only itself, and each is reported (in
 * withdraw.workers at once, in the log once a minute; withdraw.accounts
 * shows the reason too).  Looked at once per withdraw.naptime, or at once
 * when force is set (a take failed).  The list lives in TopMemoryContext.
 */
static List *unopenable_accounts = NIL;

void
readiness_credentials(TimestampTz now, bool force)
{
	static TimestampTz checked_at = 0;
	static TimestampTz logged_at = 0;
	List	   *reasons;
	List	   *ids;
	MemoryContext old;
	ListCell   *lc;

	if (!force && !TimestampDifferenceExceeds(checked_at, now, withdraw_naptime_ms))
		return;
	checked_at = now;
	ids = store_unopenable_accounts(&reasons);
	old = MemoryContextSwitchTo(TopMemoryContext);
	list_free(unopenable_accounts);
	unopenable_accounts = list_copy(ids);
	MemoryContextSwitchTo(old);
	if (reasons != NIL)
	{
		StringInfoData all;

		initStringInfo(&all);
		foreach(lc, reasons)
			appendStringInfo(&all, "%s%s", all.len > 0 ? "; " : "", (char *) lfirst(lc));
		report_not_sending(all.data,
						   "The other accounts are sent for. Configure the key that sealed the credentials (withdraw.secrets_key_file, or withdraw.secrets_previous_key_file during a rotation), or give the account its credentials again with withdraw_account_update.",
						   now, &logged_at);
	}
}

/* The accounts readiness_credentials found unopenable (not to be claimed). */
List *
readiness_unopenable_accounts(void)
{
	return unopenable_accounts;
}
