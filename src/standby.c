/*-------------------------------------------------------------------------
 *
 * standby.c
 *	  The workers send only from a primary, and, where synchronous
 *	  replication is configured, only what a synchronous standby already
 *	  holds (README, High availability).
 *
 * Two guards.  The workers are registered with
 * BgWorkerStart_RecoveryFinished (worker.c): the postmaster of a hot
 * standby never starts them, and starts them by itself when the standby is
 * promoted, with no manual step; withdraw.workers says so on a standby
 * (standby_not_sending_reason, read by shmem.c).
 *
 * The second guard is for the moment a request leaves.  A worker commits
 * 'sending' before any request goes out; with synchronous_standby_names
 * set, that commit waits until a synchronous standby has flushed it, so
 * whatever leaves is on the standby that a failover promotes.  The commit's
 * own wait is not enough on its own: it is skipped when the session's
 * synchronous_commit is local or off (a database or role setting reaches
 * the worker), and a query cancel of the worker during the wait lets the
 * commit return unconfirmed.  standby_await_sync_commit therefore checks,
 * after the claim's commit and before any request starts, that the
 * synchronous standbys have confirmed it, and waits until they have.  An
 * old primary that comes back as a primary, cut off from the standbys
 * (one was promoted), thus sends nothing: its claims are never confirmed.
 *
 * Without synchronous_standby_names (asynchronous replication) nothing
 * here can fence an old primary: the orchestrator must (README, High
 * availability).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogdefs.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "replication/syncrep.h"
#include "replication/walsender_private.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "standby.h"
#include "withdraw.h"

/* how often the wait looks at the standbys' confirmations, in ms */
#define SYNC_POLL_MS 10
/* how often the wait says so in the log, in ms */
#define SYNC_LOG_MS (60 * 1000)

/*
 * Why the workers of this server send nothing because of its role, or NULL
 * on a primary.  On a standby the postmaster has not started them.
 */
const char *
standby_not_sending_reason(void)
{
	if (RecoveryInProgress())
		return "not sending: this server is a standby (in recovery); the workers start when it is promoted";
	return NULL;
}

/* synchronous_standby_names is set (as this process last read it) */
static bool
sync_standbys_named(void)
{
	return SyncRepStandbyNames != NULL && SyncRepStandbyNames[0] != '\0';
}

/* the WAL position up to which the synchronous standbys have flushed */
static XLogRecPtr
sync_flushed_upto(void)
{
	XLogRecPtr	flushed;

	LWLockAcquire(SyncRepLock, LW_SHARED);
	flushed = WalSndCtl->lsn[SYNC_REP_WAIT_FLUSH];
	LWLockRelease(SyncRepLock);
	return flushed;
}

/*
 * Called by a worker after the commit that marked its claims 'sending' and
 * before any of them starts: returns once that commit (this process's last)
 * is flushed on the synchronous standbys, or at once when no synchronous
 * standby is named.  While it waits, withdraw.workers.last_error and, once
 * a minute, the log say why nothing is sent.  Interrupts and reloads are
 * served (a reload that empties synchronous_standby_names ends the wait,
 * as it ends the commits' own waits); the postmaster's death ends the
 * process.
 */
void
standby_await_sync_commit(void)
{
	XLogRecPtr	commit_end = XactLastCommitEnd;
	TimestampTz logged_at = 0;
	bool		waited = false;

	for (;;)
	{
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (XLogRecPtrIsInvalid(commit_end) || !sync_standbys_named() ||
			sync_flushed_upto() >= commit_end)
			break;

		now = GetCurrentTimestamp();
		if (!waited)
			WithdrawShmemReportError("not sending: waiting for a synchronous standby to confirm the claim "
									 "(synchronous_standby_names is set and none has confirmed it)");
		if (logged_at == 0 || TimestampDifferenceExceeds(logged_at, now, SYNC_LOG_MS))
		{
			ereport(LOG,
					(errmsg("withdraw worker waits for a synchronous standby before sending"),
					 errdetail("Its claim committed at %X/%X; the synchronous standbys have confirmed up to %X/%X.",
							   LSN_FORMAT_ARGS(commit_end), LSN_FORMAT_ARGS(sync_flushed_upto())),
					 errhint("A primary cut off from its synchronous standbys sends nothing. If this server was "
							 "demoted by a failover, stop it and rebuild it as a standby.")));
			logged_at = now;
		}
		waited = true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 SYNC_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	/* a wake-up for new work may have been taken by the wait: claim again */
	if (waited)
		SetLatch(MyLatch);
}
