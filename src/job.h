/*-------------------------------------------------------------------------
 *
 * job.h
 *	  One exchange the worker has in flight for one withdrawal, and the
 *	  change to the withdrawal's row that its outcome leads to.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_JOB_H
#define WITHDRAW_JOB_H

#include "providers/provider.h"
#include "state.h"

typedef enum JobKind
{
	JOB_CREATE,					/* send (or resend) the withdrawal */
	JOB_STATUS,					/* ask the provider where it stands */
	JOB_SYNC,					/* one page of an account's withdrawal list */
	JOB_RULES					/* a refresh of one pay_code's form rules */
} JobKind;

typedef struct Job
{
	WithdrawalJob w;			/* what the provider sees */
	JobKind		kind;
	WithdrawState state;		/* JOB_CREATE, JOB_STATUS: the state when
								 * claimed (STATE_SENDING for creates) */
	int			attempts;		/* create attempts so far, this one included */
	bool		maybe_delivered;
	MemoryContext cxt;			/* holds the job, its request and response */
	HttpRequest request;
	TimestampTz started_at;
	/* JOB_SYNC only: the list being walked; each page lives in page_cxt */
	SyncCursor	cursor;
	MemoryContext page_cxt;
	TimestampTz high_water;
	int64		changed;
	/* JOB_STATUS of a batching provider: the polls sharing this exchange */
	List	   *riders;			/* Job *, on the job that sends */
	bool		rider;			/* this job rides on another's exchange */
	/* JOB_RULES only: which rules */
	char	   *rule_key;
	char	   *rule_currency;
	/* quarantine (worker.c): failed handlings of this row's answers so far */
	int			strikes;
	bool		stamped;		/* strikes was raised before its answer was read */
} Job;

/* A change to apply to a withdrawal's row. */
typedef struct Change
{
	WithdrawState state;		/* the new state (may be the current one) */
	char	   *provider_status;	/* NULL keeps the current one */
	char	   *provider_id;	/* NULL keeps the current one */
	char	   *last_error;		/* NULL clears it */
	bool		maybe_delivered;	/* set, never cleared */
	bool		needs_reconcile;
	char	   *reconcile_cursor;	/* where the search goes on, NULL restarts */
	char	   *details;		/* JSON object merged into details, or NULL */
	int64		retry_in_ms;	/* next create attempt, -1 keeps it */
	int64		poll_in_ms;		/* next status poll, -1 for none */
	const char *outcome;		/* short word for withdraw.attempts */
	int			strikes;		/* the row's strikes after this: 0 once an
								 * answer was read normally */
} Change;

/* Per-account settings read from options, with provider defaults. */
typedef struct AccountPolicy
{
	int			create_interval_ms;
	int			polls_per_second;
	int			poll_interval_ms;
	int			request_timeout_ms;
	int			max_attempts;
	int			idempotency_window_ms;
	int			reconcile_timeout_ms;
	int			deadline_ms;	/* a create not sent by then is not sent at all */
	int			max_in_flight;	/* exchanges of this account in flight at once */
	int			sync_interval_ms;	/* between scheduled syncs of the list */
	int			status_batch_max;	/* withdrawals per status exchange, 1 = one by one */
} AccountPolicy;

/* policy.c */
extern void account_policy(const Provider *provider, Jsonb *options, AccountPolicy *policy);
extern void outcome_of_transport_failure(Job *job, HttpResponse *res, Outcome *out);
extern void decide_change(Job *job, const AccountPolicy *policy, Outcome *out, Change *change);
extern int64 retry_delay_ms(int attempts, int retry_after_ms);

#endif							/* WITHDRAW_JOB_H */
