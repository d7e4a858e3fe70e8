/*-------------------------------------------------------------------------
 *
 * schedule.h
 *	  Which work a worker may take now: each account's policy, this
 *	  worker's share of it, and the account's rate limits (schedule.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_SCHEDULE_H
#define WITHDRAW_SCHEDULE_H

#include "job.h"
#include "utils/jsonb.h"

/* What the worker remembers of an account between iterations. */
typedef struct AccountState
{
	int32		account_id;		/* hash key */
	AccountPolicy policy;
	int			in_flight;		/* exchanges of either kind, this worker's */
	int			cap;			/* this worker's share of policy.max_in_flight */
	bool		serves[2];		/* this worker claims [JOB_CREATE], [JOB_STATUS] */
	int			creates_in_flight;	/* every create in flight, whatever the
									 * interval: counted by track_job, released
									 * by release_job */
	TimestampTz next_create_at;
	bool		deferred;		/* has due creates held back by the limit */
	int			picked;			/* chosen in the current claim */
	int			batch_room;		/* polls that may still ride on the last
								 * exchange picked in this claim */
	bool		refreshed;		/* policy read from the options this claim */
	double		poll_tokens;
	TimestampTz poll_tokens_at;
} AccountState;

extern void schedule_init(void);
extern AccountState *schedule_account(int32 account_id, const Provider *provider, Jsonb *options);
extern int	schedule_share_of(int total, int n, int rank);
extern bool schedule_batching(void);
extern List *schedule_blocked_accounts(JobKind kind, TimestampTz now);
extern List *schedule_choose(JobKind kind, List *candidates, TimestampTz now, int capacity,
							 List **reconcile, List **unsent);
extern void schedule_refresh_accounts(TimestampTz now);
extern long schedule_next_release_ms(TimestampTz now, long limit);
extern void schedule_clear_deferred(void);

#endif							/* WITHDRAW_SCHEDULE_H */
