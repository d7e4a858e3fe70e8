/*-------------------------------------------------------------------------
 *
 * poll_batch.c
 *	  Status polls that share one exchange.
 *
 * A provider that answers for many withdrawals at once (status_batch_max
 * above 1) gets one request for several polls of an account: the first
 * poll sends, the others ride on it (Job.riders, Job.rider).  The claim
 * counts them the same way (schedule_choose).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "poll_batch.h"
#include "schedule.h"

/* The withdrawals of a batched poll: the sending job, then its riders. */
WithdrawalJob **
poll_batch_withdrawals(Job *job)
{
	WithdrawalJob **batch = palloc(sizeof(WithdrawalJob *) * (1 + list_length(job->riders)));
	ListCell   *lc;
	int			n = 0;

	batch[n++] = &job->w;
	foreach(lc, job->riders)
		batch[n++] = &((Job *) lfirst(lc))->w;
	return batch;
}

/*
 * Polls of a provider that answers for many withdrawals at once ride on
 * the first poll of their account, up to the provider's batch size.
 * Returns the jobs that send; schedule_choose() counted the same way.
 */
List *
poll_batch_form(List *jobs)
{
	List	   *senders = NIL;
	ListCell   *lc;

	foreach(lc, jobs)
	{
		Job		   *job = lfirst(lc);
		int			max = schedule_account(job->w.account->id, NULL, NULL)->policy.status_batch_max;
		Job		   *leader = NULL;
		ListCell   *lc2;

		if (max > 1)
			foreach(lc2, senders)
			{
				Job		   *s = lfirst(lc2);

				if (s->w.account->id == job->w.account->id && 1 + list_length(s->riders) < max)
				{
					leader = s;
					break;
				}
			}
		if (leader != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(leader->cxt);

			leader->riders = lappend(leader->riders, job);
			job->rider = true;
			MemoryContextSwitchTo(old);
		}
		else
			senders = lappend(senders, job);
	}
	return senders;
}

/* The withdrawals an exchange answers for: the job, then its riders. */
Job **
poll_batch_members(Job *job, int *n)
{
	Job		  **members = palloc(sizeof(Job *) * (1 + list_length(job->riders)));
	ListCell   *lc;

	*n = 0;
	members[(*n)++] = job;
	foreach(lc, job->riders)
		members[(*n)++] = lfirst(lc);
	return members;
}
