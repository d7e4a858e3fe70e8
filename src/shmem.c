/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The small piece of shared memory through which backends wake the
 *	  workers at commit and through which each worker publishes its
 *	  figures for the withdraw.workers view: one slot per worker.
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

#include "compat.h"
#include "standby.h"
#include "withdraw.h"

#define WITHDRAW_ERROR_LEN 256

typedef struct WorkerSlot
{
	pid_t		worker_pid;		/* 0 when this worker does not run */
	int			worker_procno;	/* index into ProcGlobal->allProcs */
	Oid			database_id;	/* the database it serves */
	TimestampTz started_at;
	TimestampTz heartbeat_at;
	WithdrawWorkerFigures figures;
	char		last_error[WITHDRAW_ERROR_LEN];
	TimestampTz last_error_at;
} WorkerSlot;

typedef struct WithdrawShared
{
	slock_t		mutex;
	WorkerSlot	slots[WITHDRAW_MAX_WORKERS];
} WithdrawShared;

static WithdrawShared *shared = NULL;
static WorkerSlot *my_slot = NULL;	/* in a worker: its own slot */
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_registered = false;
static uint32 wake_pending = 0;	/* workers to wake at commit, by bit */

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

/*
 * Called by worker number index once connected: from now on commits can
 * wake it.  A restarted worker takes over its slot, last error included.
 */
void
WithdrawShmemAttachWorker(int index)
{
	my_slot = &shared->slots[index];
	SpinLockAcquire(&shared->mutex);
	my_slot->worker_pid = MyProcPid;
	my_slot->worker_procno = WITHDRAW_MY_PROC_NUMBER;
	my_slot->database_id = MyDatabaseId;
	my_slot->started_at = GetCurrentTimestamp();
	my_slot->heartbeat_at = my_slot->started_at;
	memset(&my_slot->figures, 0, sizeof(WithdrawWorkerFigures));
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(detach_worker_on_exit, (Datum) 0);
}

void
WithdrawShmemDetachWorker(void)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	if (my_slot->worker_pid == MyProcPid)
	{
		my_slot->worker_pid = 0;
		my_slot->figures.in_flight = 0;
	}
	SpinLockRelease(&shared->mutex);
}

void
WithdrawShmemReport(const WithdrawWorkerFigures *figures)
{
	SpinLockAcquire(&shared->mutex);
	my_slot->heartbeat_at = GetCurrentTimestamp();
	my_slot->figures = *figures;
	SpinLockRelease(&shared->mutex);
}

void
WithdrawShmemReportError(const char *message)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	strlcpy(my_slot->last_error, message, WITHDRAW_ERROR_LEN);
	my_slot->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);
}

/*
 * Sets the latches of the workers of mask (bit i: worker i) that run in
 * this database: a commit elsewhere has queued nothing for them.
 */
void
WithdrawWakeWorkers(uint32 mask)
{
	int			procnos[WITHDRAW_MAX_WORKERS];
	int			n = 0;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < withdraw_workers; i++)
		if ((mask & (1U << i)) && shared->slots[i].worker_pid != 0 &&
			shared->slots[i].database_id == MyDatabaseId)
			procnos[n++] = shared->slots[i].worker_procno;
	SpinLockRelease(&shared->mutex);
	for (int i = 0; i < n; i++)
		SetLatch(&ProcGlobal->allProcs[procnos[i]].procLatch);
}

static void
wake_at_commit_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
				WithdrawWakeWorkers(wake_pending);
			wake_pending = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction is picked up by the worker's tick */
			wake_pending = 0;
			break;
		default:
			break;
	}
}

/*
 * Arranges for a worker to be woken when the current transaction commits,
 * so that new work of the account is sent at once rather than on the next
 * tick; nothing happens if it rolls back.  The worker woken is the
 * account's own (id modulo withdraw.workers), which serves it whether or
 * not it is rate limited; a worker that finds more than it can take wakes
 * the next one (worker.c), so a large commit still spreads over all of
 * them while a single withdrawal costs one wake-up, not one per worker.
 * A negative account_id wakes them all.
 */
void
WithdrawWakeWorkerAtCommit(int32 account_id)
{
	if (!wake_registered)
	{
		RegisterXactCallback(wake_at_commit_callback, NULL);
		wake_registered = true;
	}
	if (account_id < 0)
		wake_pending = WITHDRAW_ALL_WORKERS;
	else
		wake_pending |= 1U << (account_id % withdraw_workers);
}

/* SQL: withdraw._wake() — wake the workers when this transaction commits. */
Datum
withdraw_wake(PG_FUNCTION_ARGS)
{
	WithdrawWakeWorkerAtCommit(-1);
	PG_RETURN_VOID();
}

/*
 * SQL: withdraw._worker_info() — one row per worker (withdraw.workers of
 * them), for the view.
 */
Datum
withdraw_worker_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WithdrawShared copy;
	int			first;
	/* on a standby the workers do not run, and the rows say why */
	const char *standby = standby_not_sending_reason();

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		PG_RETURN_VOID();

	SpinLockAcquire(&shared->mutex);
	copy = *shared;
	SpinLockRelease(&shared->mutex);

	/*
	 * Until ALTER EXTENSION withdraw UPDATE, the function is declared as
	 * in 0.2.0, without the first column: its rows are the workers' rows
	 * without their numbers.
	 */
	first = rsinfo->setDesc->natts == 10 ? 1 : 0;
	for (int i = 0; i < withdraw_workers; i++)
	{
		WorkerSlot *slot = &copy.slots[i];
		Datum		values[11];
		bool		nulls[11];

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(i);
		values[1] = CStringGetTextDatum(withdraw_database_name);
		if (slot->worker_pid != 0)
			values[2] = Int32GetDatum(slot->worker_pid);
		else
			nulls[2] = true;
		values[3] = CStringGetTextDatum(standby ? "standby" :
										slot->worker_pid != 0 ? "running" : "stopped");
		if (slot->started_at != 0)
			values[4] = TimestampTzGetDatum(slot->started_at);
		else
			nulls[4] = true;
		if (slot->heartbeat_at != 0)
			values[5] = TimestampTzGetDatum(slot->heartbeat_at);
		else
			nulls[5] = true;
		values[6] = Int32GetDatum(slot->figures.in_flight);
		values[7] = Int64GetDatum(slot->figures.requests_sent);
		values[8] = Int64GetDatum(slot->figures.responses);
		if (standby)
		{
			values[9] = CStringGetTextDatum(standby);
			values[10] = TimestampTzGetDatum(PgStartTime);
		}
		else if (slot->last_error_at != 0)
		{
			values[9] = CStringGetTextDatum(slot->last_error);
			values[10] = TimestampTzGetDatum(slot->last_error_at);
		}
		else
			nulls[9] = nulls[10] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values + first, nulls + first);
	}
	PG_RETURN_VOID();
}
