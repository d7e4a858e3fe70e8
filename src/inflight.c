/*-------------------------------------------------------------------------
 *
 * inflight.c
 *	  The exchanges a worker has in flight, and what they count against.
 *
 * A job is tracked from the claim that sends it until its answer is
 * recorded; while it is, it counts against its account's share
 * (schedule.c) and this worker's share of withdraw.max_in_flight.  A poll
 * that rides on another's exchange (poll_batch.c) is tracked too, but
 * costs no exchange.  Jobs and the list live in a context of their own,
 * which outlives the loop's per-iteration context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "inflight.h"
#include "schedule.h"

static MemoryContext jobs_cxt = NULL;
static List *in_flight_jobs = NIL;	/* Job * in flight, in jobs_cxt */
static int	exchanges_in_flight = 0;	/* in_flight_jobs that are not riders */

void
inflight_init(void)
{
	jobs_cxt = AllocSetContextCreate(TopMemoryContext, "withdraw jobs",
									 ALLOCSET_DEFAULT_SIZES);
}

/* Where claimed jobs are made: they live until their answer is recorded. */
MemoryContext
inflight_cxt(void)
{
	return jobs_cxt;
}

/* Counts one job against its account and this worker. */
static void
track_job(Job *job)
{
	MemoryContext old = MemoryContextSwitchTo(jobs_cxt);

	in_flight_jobs = lappend(in_flight_jobs, job);
	if (!job->rider)
	{
		schedule_account(job->w.account->id, NULL, NULL)->in_flight++;
		exchanges_in_flight++;
	}
	if (job->kind == JOB_CREATE)
		schedule_account(job->w.account->id, NULL, NULL)->creates_in_flight++;
	MemoryContextSwitchTo(old);
}

/*
 * Stops counting one job and frees it.  The interval between an account's
 * creates runs from the answer: arrival order cannot squeeze it.
 */
static void
release_job(Job *job, TimestampTz now)
{
	AccountState *state = schedule_account(job->w.account->id, NULL, NULL);

	if (!job->rider)
	{
		state->in_flight--;
		exchanges_in_flight--;
	}
	if (job->kind == JOB_CREATE)
	{
		state->creates_in_flight--;
		state->next_create_at = TimestampTzPlusMilliseconds(now, state->policy.create_interval_ms);
	}
	in_flight_jobs = list_delete_ptr(in_flight_jobs, job);
	MemoryContextDelete(job->cxt);
}

/* Tracks a job and the polls that ride on it. */
void
inflight_track(Job *job)
{
	ListCell   *lc;

	track_job(job);
	foreach(lc, job->riders)
		track_job(lfirst(lc));
}

/* Releases (and frees) a job and the polls that rode on it. */
void
inflight_release(Job *job, TimestampTz now)
{
	ListCell   *lc;

	foreach(lc, job->riders)
		release_job(lfirst(lc), now);
	release_job(job, now);
}

/* Jobs in flight, riders included. */
int
inflight_jobs(void)
{
	return list_length(in_flight_jobs);
}

/* Exchanges in flight: the jobs that are not riders. */
int
inflight_exchanges(void)
{
	return exchanges_in_flight;
}

/* The accounts that have a job of this kind in flight (a new list). */
List *
inflight_accounts(JobKind kind)
{
	List	   *ids = NIL;
	ListCell   *lc;

	foreach(lc, in_flight_jobs)
		if (((Job *) lfirst(lc))->kind == kind)
			ids = lappend_int(ids, ((Job *) lfirst(lc))->w.account->id);
	return ids;
}
