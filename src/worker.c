/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker's loop: claims due work and sends it through
 *	  libcurl multi, records outcomes, polls statuses on a schedule.
 *
 * One loop, shaped like worker_spi's, with the HTTP sockets added to the
 * wait: every iteration records the exchanges that completed (record.c,
 * one transaction), claims new work when woken or when the tick is due
 * (claim.c, one transaction, committed before any request leaves), prunes
 * old history now and then, and waits on the latch, curl's sockets and the
 * next deadline.  Commits of new withdrawals set the latch.  No HTTP call
 * ever runs inside a transaction.
 *
 * There are withdraw.workers of these loops, one process each, so that
 * signing and recording use every core; schedule.c says how they share
 * the accounts.  Worker 0 also runs the syncs, the form-rule refreshes
 * and the pruning.
 *
 * Every transaction of the loop runs its SQL as role withdraw_worker in a
 * security-restricted context (worker_begin, session.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "claim.h"
#include "desk.h"
#include "http.h"
#include "inflight.h"
#include "readiness.h"
#include "record.h"
#include "schedule.h"
#include "session.h"
#include "store.h"
#include "withdraw.h"
#include "worker.h"

/* pruning runs this often, or a tenth of withdraw.retention if shorter */
#define PRUNE_INTERVAL_MS (60 * 1000)

int			worker_number = 0;
WithdrawWorkerFigures worker_figures;

/* error context: which withdrawal a log line is about */
static int64 current_withdrawal = 0;

/* the transaction under way runs as WITHDRAW_WORKER_ROLE (session.c) */
static bool as_worker_role = false;

static void
worker_error_context(void *arg)
{
	if (current_withdrawal != 0)
		errcontext("withdraw worker %d, withdrawal " INT64_FORMAT, worker_number, current_withdrawal);
	else
		errcontext("withdraw worker %d", worker_number);
}

/* Names the withdrawal the log lines that follow are about (0: none). */
void
worker_about(int64 withdrawal_id)
{
	current_withdrawal = withdrawal_id;
}

/* Opens a transaction of the loop, as the workers' role, with SPI. */
void
worker_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	as_worker_role = session_enter_worker_role();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
worker_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	session_leave_worker_role();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * How the commit of the transaction under way waits for its WAL, set for
 * this transaction alone (as SET LOCAL: a session source, undone at its
 * end; an override source would become the session's default for good).
 * durable: at least flushed locally, whatever synchronous_commit a
 * database or role setting gave the worker (a claim must be on disk
 * before its request leaves; standby.c waits for the standbys).  Not
 * durable: synchronous_commit off (withdraw.synchronous_outcomes).
 */
void
worker_commit_waits(bool durable)
{
	if (durable && synchronous_commit >= SYNCHRONOUS_COMMIT_LOCAL_FLUSH)
		return;
	(void) set_config_option("synchronous_commit", durable ? "local" : "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

/* Does the transaction under way run as the workers' role? */
bool
worker_in_role(void)
{
	return as_worker_role;
}

/* Registers withdraw.workers workers, numbered from 0. */
void
WithdrawWorkerRegister(void)
{
	for (int i = 0; i < withdraw_workers; i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 5;
		worker.bgw_main_arg = Int32GetDatum(i);
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "withdraw");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "withdraw_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "withdraw worker %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "withdraw worker");
		RegisterBackgroundWorker(&worker);
	}
}

/*
 * Deletes one batch of old history; returns true when a full batch went,
 * i.e. more is waiting.
 */
static bool
prune_history(void)
{
	int			deleted;

	if (withdraw_retention_s <= 0 || worker_number != 0)
		return false;
	worker_begin("withdraw: pruning old history");
	deleted = readiness_schema(GetCurrentTimestamp()) ?
		store_prune(withdraw_retention_s, withdraw_retention_batch) : 0;
	worker_end();
	return deleted >= withdraw_retention_batch;
}

/* The loop proper; never returns. */
static void
worker_loop(MemoryContext loop_cxt)
{
	TimestampTz next_tick = 0;
	TimestampTz next_prune = 0;
	TimestampTz next_expiry = 0;
	bool		claim_now = true;

	for (;;)
	{
		TimestampTz now;
		long		timeout;
		List	   *completions;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_prune = 0;		/* the retention may have changed */
		}
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);

		completions = http_collect();
		if (completions != NIL)
		{
			record_completions(completions);
			claim_now = true;
		}

		/* a commit leaves TopMemoryContext current: come back to the loop's */
		MemoryContextSwitchTo(loop_cxt);
		now = GetCurrentTimestamp();
		if (claim_now || now >= next_tick)
		{
			schedule_clear_deferred();
			claim_now = claim_and_send();
			/* more due than this worker can take: the next one helps */
			if (claim_now && withdraw_workers > 1)
				WithdrawWakeWorkers(1U << ((worker_number + 1) % withdraw_workers));
			MemoryContextSwitchTo(loop_cxt);
			next_tick = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), withdraw_naptime_ms);
		}

		if (now >= next_prune)
			next_prune = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 prune_history() ? withdraw_naptime_ms :
													 Min(PRUNE_INTERVAL_MS, withdraw_retention_s * 100L));
		/* approval requests past their expiry end (worker 0) */
		if (worker_number == 0 && now >= next_expiry)
		{
			worker_begin("withdraw: expiring approval requests");
			if (readiness_schema(now))
				(void) desk_expire_approvals();
			worker_end();
			next_expiry = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), withdraw_naptime_ms);
		}
		MemoryContextSwitchTo(loop_cxt);

		worker_figures.in_flight = inflight_jobs();
		WithdrawShmemReport(&worker_figures);

		now = GetCurrentTimestamp();
		timeout = claim_now ? 0 : TimestampDifferenceMilliseconds(now, next_tick);
		timeout = schedule_next_release_ms(now, timeout);
		if (http_wait(timeout, PG_WAIT_EXTENSION))
		{
			ResetLatch(MyLatch);
			claim_now = true;
		}
	}
}

void
withdraw_worker_main(Datum main_arg)
{
	MemoryContext loop_cxt;
	ErrorContextCallback errcallback;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	worker_number = DatumGetInt32(main_arg);
	BackgroundWorkerInitializeConnection(withdraw_database_name, NULL, 0);
	/* above whatever ALTER DATABASE or ALTER ROLE set: see session.c */
	session_pin_worker_settings();
	pgstat_report_appname(psprintf("withdraw worker %d", worker_number));
	WithdrawShmemAttachWorker(worker_number);

	errcallback.callback = worker_error_context;
	errcallback.arg = NULL;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	http_init();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "withdraw worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	inflight_init();
	schedule_init();

	ereport(LOG, (errmsg("withdraw worker %d of %d started in database \"%s\"",
						 worker_number, withdraw_workers, withdraw_database_name)));

	PG_TRY();
	{
		worker_loop(loop_cxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* show the error in withdraw.workers, then die as usual */
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		WithdrawShmemReportError(edata->message);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

