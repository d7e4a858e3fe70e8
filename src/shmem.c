/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The small piece of shared memory through which backends wake the
 *	  worker at commit and through which the worker publishes its figures
 *	  for the withdraw.workers view.
 *
 * Backends never talk to the worker otherwise: the tables are the queue.
 * Waking is only a latency optimisation; a missed wake-up is caught by
 * the worker's tick (withdraw.naptime).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "withdraw.h"

#define WITHDRAW_ERROR_LEN 256

typedef struct WithdrawShared
{
	slock_t		mutex;
	pid_t		worker_pid;		/* 0 when no worker runs */
	int			worker_procno;	/* index into ProcGlobal->allProcs */
	TimestampTz started_at;
	TimestampTz heartbeat_at;
	WithdrawWorkerFigures figures;
	int64		wakeups;
	char		last_error[WITHDRAW_ERROR_LEN];
	TimestampTz last_error_at;
} WithdrawShared;

static WithdrawShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_registered = false;
static bool wake_pending = false;

PG_FUNCTION_INFO_V1(withdraw_worker_info);
PG_FUNCTION_INFO_V1(withdraw_wake);

static void
withdraw_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WithdrawShared)));
}

static void
withdraw_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("withdraw", sizeof(WithdrawShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(WithdrawShared));
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
WithdrawShmemInit(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = withdraw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = withdraw_shmem_startup;
}

static void
detach_worker_on_exit(int code, Datum arg)
{
	WithdrawShmemDetachWorker();
}

/* Called by the worker once connected: from now on commits can wake it. */
void
WithdrawShmemAttachWorker(void)
{
	SpinLockAcquire(&shared->mutex);
	shared->worker_pid = MyProcPid;
	shared->worker_procno = MyProc->pgprocno;
	shared->started_at = GetCurrentTimestamp();
	shared->heartbeat_at = shared->started_at;
	memset(&shared->figures, 0, sizeof(WithdrawWorkerFigures));
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(detach_worker_on_exit, (Datum) 0);
}

void
WithdrawShmemDetachWorker(void)
{
	SpinLockAcquire(&shared->mutex);
	if (shared->worker_pid == MyProcPid)
	{
		shared->worker_pid = 0;
		shared->figures.in_flight = 0;
	}
	SpinLockRelease(&shared->mutex);
}

void
WithdrawShmemReport(const WithdrawWorkerFigures *figures)
{
	SpinLockAcquire(&shared->mutex);
	shared->heartbeat_at = GetCurrentTimestamp();
	shared->figures = *figures;
	SpinLockRelease(&shared->mutex);
}

void
WithdrawShmemReportError(const char *message)
{
	SpinLockAcquire(&shared->mutex);
	strlcpy(shared->last_error, message, WITHDRAW_ERROR_LEN);
	shared->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);
}

/* Sets the worker's latch, if a worker runs. */
void
WithdrawWakeWorker(void)
{
	int			procno = -1;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	if (shared->worker_pid != 0)
	{
		procno = shared->worker_procno;
		shared->wakeups++;
	}
	SpinLockRelease(&shared->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

static void
wake_at_commit_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
				WithdrawWakeWorker();
			wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction is picked up by the worker's tick */
			wake_pending = false;
			break;
		default:
			break;
	}
}

/*
 * Arranges for the worker to be woken when the current transaction commits,
 * so that new work is sent at once rather than on the next tick; nothing
 * happens if it rolls back.
 */
void
WithdrawWakeWorkerAtCommit(void)
{
	if (!wake_registered)
	{
		RegisterXactCallback(wake_at_commit_callback, NULL);
		wake_registered = true;
	}
	wake_pending = true;
}

/* SQL: withdraw._wake() — wake the worker when this transaction commits. */
Datum
withdraw_wake(PG_FUNCTION_ARGS)
{
	WithdrawWakeWorkerAtCommit();
	PG_RETURN_VOID();
}

/* SQL: withdraw._worker_info() — one row describing the worker, for the view. */
Datum
withdraw_worker_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WithdrawShared copy;
	Datum		values[10];
	bool		nulls[10];

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		PG_RETURN_VOID();

	SpinLockAcquire(&shared->mutex);
	copy = *shared;
	SpinLockRelease(&shared->mutex);

	memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum(withdraw_database_name);
	if (copy.worker_pid != 0)
		values[1] = Int32GetDatum(copy.worker_pid);
	else
		nulls[1] = true;
	values[2] = CStringGetTextDatum(copy.worker_pid != 0 ? "running" : "stopped");
	if (copy.started_at != 0)
		values[3] = TimestampTzGetDatum(copy.started_at);
	else
		nulls[3] = true;
	if (copy.heartbeat_at != 0)
		values[4] = TimestampTzGetDatum(copy.heartbeat_at);
	else
		nulls[4] = true;
	values[5] = Int32GetDatum(copy.figures.in_flight);
	values[6] = Int64GetDatum(copy.figures.requests_sent);
	values[7] = Int64GetDatum(copy.figures.responses);
	if (copy.last_error_at != 0)
	{
		values[8] = CStringGetTextDatum(copy.last_error);
		values[9] = TimestampTzGetDatum(copy.last_error_at);
	}
	else
		nulls[8] = nulls[9] = true;

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	PG_RETURN_VOID();
}
