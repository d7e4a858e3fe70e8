/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  Which work this worker may take now: account shares and rate limits.
 *
 * There are withdraw.workers worker processes.  They share no memory but
 * the tables: an account's work of a kind that is rate limited (creates
 * with create_interval_ms, polls with polls_per_second), and every kind of
 * an account allowed fewer exchanges in flight than there are workers, is
 * served by one worker alone (account id modulo workers), which keeps the
 * limit exact; the rest goes to whichever worker claims it first (SKIP
 * LOCKED keeps them apart), each with its share of the account's
 * max_in_flight and of withdraw.max_in_flight.
 *
 * Rate limits are per account: an account with create_interval_ms sends
 * its next create only when the previous one has been answered and the
 * interval has passed since that answer (inflight.c moves the clock), so
 * the provider never sees two requests closer than the interval, whatever
 * the network does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "schedule.h"
#include "spi_util.h"
#include "store.h"
#include "withdraw.h"
#include "worker.h"

static HTAB *accounts = NULL;	/* AccountState by account id */
static bool batching_accounts = false;	/* some account polls in batches */
static TimestampTz worker_started_at = 0;

/* The worker's table of accounts, empty at its start. */
void
schedule_init(void)
{
	HASHCTL		info;

	worker_started_at = GetCurrentTimestamp();
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(int32);
	info.entrysize = sizeof(AccountState);
	accounts = hash_create("withdraw accounts", 64, &info, HASH_ELEM | HASH_BLOBS);
}

/* Does some account poll many withdrawals in one exchange? */
bool
schedule_batching(void)
{
	return batching_accounts;
}

/* The part of total that worker number rank gets when n workers share it. */
int
schedule_share_of(int total, int n, int rank)
{
	return total / n + (rank < total % n ? 1 : 0);
}

/*
 * Which of this account's work this worker claims, and how many of its
 * exchanges it may have in flight (see the head of this file).  The
 * account's owner, rank 0, is account id modulo workers; the other ranks
 * follow it, so the remainders of small caps fall on different workers.
 */
static void
assign_share(AccountState *state)
{
	int			n = withdraw_workers;
	int			rank = ((worker_number - state->account_id % n) + n) % n;
	bool		alone = state->policy.max_in_flight < n;

	if (alone)
		state->cap = rank == 0 ? state->policy.max_in_flight : 0;
	else
		state->cap = schedule_share_of(state->policy.max_in_flight, n, rank);
	state->serves[JOB_CREATE] = rank == 0 || !(alone || state->policy.create_interval_ms > 0);
	state->serves[JOB_STATUS] = rank == 0 || !(alone || state->policy.polls_per_second > 0);
}

/*
 * The worker's memory of an account.  A new worker waits one create
 * interval after its start before an account's first create: the worker it
 * replaces may have sent one just before it died.
 */
AccountState *
schedule_account(int32 account_id, const Provider *provider, Jsonb *options)
{
	bool		found;
	AccountState *state = hash_search(accounts, &account_id, HASH_ENTER, &found);

	if (!found)
		memset(&state->policy, 0, sizeof(AccountPolicy));
	if (provider != NULL)
	{
		account_policy(provider, options, &state->policy);
		if (state->policy.status_batch_max > 1)
			batching_accounts = true;
		assign_share(state);
	}
	if (!found)
	{
		state->in_flight = 0;
		state->creates_in_flight = 0;
		state->deferred = false;
		state->next_create_at = TimestampTzPlusMilliseconds(worker_started_at,
															state->policy.create_interval_ms);
		state->poll_tokens = Max(1, state->policy.polls_per_second);
		state->poll_tokens_at = GetCurrentTimestamp();
	}
	return state;
}

/* Refills the account's bucket of polls: polls_per_second, at most one second's worth. */
static void
refill_poll_tokens(AccountState *state, TimestampTz now)
{
	double		rate = state->policy.polls_per_second;

	if (rate <= 0)
		return;
	state->poll_tokens += rate * (now - state->poll_tokens_at) / 1000000.0;
	if (state->poll_tokens > rate)
		state->poll_tokens = rate;
	state->poll_tokens_at = now;
}

/* Accounts that must not be offered work of this kind right now. */
List *
schedule_blocked_accounts(JobKind kind, TimestampTz now)
{
	HASH_SEQ_STATUS seq;
	AccountState *state;
	List	   *blocked = NIL;

	hash_seq_init(&seq, accounts);
	while ((state = hash_seq_search(&seq)) != NULL)
	{
		/* another worker's, or one slow account cannot take every slot */
		if (!state->serves[kind] || state->in_flight >= state->cap)
			blocked = lappend_int(blocked, state->account_id);
		else if (kind == JOB_CREATE && state->policy.create_interval_ms > 0 &&
			(state->creates_in_flight > 0 || now < state->next_create_at))
			blocked = lappend_int(blocked, state->account_id);
		else if (kind == JOB_STATUS && state->policy.polls_per_second > 0)
		{
			/* refilled here too: a blocked account is never a candidate */
			refill_poll_tokens(state, now);
			if (state->poll_tokens < 1)
				blocked = lappend_int(blocked, state->account_id);
		}
	}
	return blocked;
}

/* Picks, among locked candidates, those the account limits allow now. */
List *
schedule_choose(JobKind kind, List *candidates, TimestampTz now, int capacity, List **reconcile,
	   List **unsent)
{
	List	   *chosen = NIL;
	ListCell   *lc;
	HASH_SEQ_STATUS seq;
	AccountState *state;

	/* the picks of this round count against each account's in-flight cap */
	hash_seq_init(&seq, accounts);
	while ((state = hash_seq_search(&seq)) != NULL)
	{
		state->picked = 0;
		state->batch_room = 0;
		state->refreshed = false;
	}

	foreach(lc, candidates)
	{
		Candidate  *c = lfirst(lc);
		int64	   *id = palloc(sizeof(int64));

		*id = c->id;
		/* the options are read once per account and claim, not per candidate */
		state = hash_search(accounts, &c->account_id, HASH_FIND, NULL);
		if (state == NULL || !state->refreshed)
		{
			state = schedule_account(c->account_id, c->provider, c->options);
			state->refreshed = true;
		}
		if (kind == JOB_CREATE && !c->unknown &&
			TimestampDifferenceExceeds(c->created_at, now, state->policy.deadline_ms))
		{
			*unsent = lappend(*unsent, id);
			continue;
		}
		/* past the deadline or the provider's idempotency window: never resend */
		if (kind == JOB_CREATE && c->unknown &&
			(TimestampDifferenceExceeds(c->created_at, now, state->policy.deadline_ms) ||
			 (c->first_sent_at != 0 &&
			  TimestampDifferenceExceeds(c->first_sent_at, now, state->policy.idempotency_window_ms))))
		{
			*reconcile = lappend(*reconcile, id);
			continue;
		}
		/* a poll that fits in this account's open batch costs no exchange */
		if (kind == JOB_STATUS && state->batch_room > 0)
		{
			state->batch_room--;
			chosen = lappend(chosen, id);
			continue;
		}
		/* the options changed since this claim began: next claim */
		if (!state->serves[kind])
			continue;
		if (capacity <= 0 || state->in_flight + state->picked >= state->cap)
			continue;
		/* one create at a time: none in flight, none picked in this claim */
		if (kind == JOB_CREATE && state->policy.create_interval_ms > 0 &&
			(state->creates_in_flight > 0 || state->picked > 0 || now < state->next_create_at))
		{
			state->deferred = true;
			continue;
		}
		if (kind == JOB_STATUS && state->policy.polls_per_second > 0)
		{
			refill_poll_tokens(state, now);
			if (state->poll_tokens < 1)
				continue;
			state->poll_tokens -= 1;
		}
		state->picked++;
		capacity--;
		if (kind == JOB_STATUS && state->policy.status_batch_max > 1)
			state->batch_room = state->policy.status_batch_max - 1;
		chosen = lappend(chosen, id);
	}
	return chosen;
}

/*
 * The options of every account, when there are several workers, at most
 * once per withdraw.naptime.  schedule_choose() reads the options of the accounts
 * the claim offers, and skips any this worker does not serve; but an
 * account blocked here as another worker's is never offered, so without
 * this read it would stay blocked after its limits were lifted.
 */
void
schedule_refresh_accounts(TimestampTz now)
{
	static TimestampTz refreshed_at = 0;
	static SPIPlanPtr plan = NULL;

	if (withdraw_workers == 1 ||
		!TimestampDifferenceExceeds(refreshed_at, now, withdraw_naptime_ms))
		return;
	refreshed_at = now;
	if (plan == NULL)
		plan = spi_prepare_kept("SELECT id, provider, options FROM withdraw.account", 0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the accounts failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		const Provider *provider = provider_lookup(SPI_getvalue(tuple, desc, 2));

		if (provider == NULL)
			continue;
		(void) schedule_account(DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull)), provider,
							 DatumGetJsonbP(SPI_getbinval(tuple, desc, 3, &isnull)));
	}
}

/* How long until a rate-limited account may send again, in ms. */
long
schedule_next_release_ms(TimestampTz now, long limit)
{
	HASH_SEQ_STATUS seq;
	AccountState *state;

	hash_seq_init(&seq, accounts);
	while ((state = hash_seq_search(&seq)) != NULL)
	{
		if (state->deferred && state->creates_in_flight == 0)
		{
			long		ms = TimestampDifferenceMilliseconds(now, state->next_create_at);

			if (ms < limit)
				limit = ms;
		}
	}
	return limit;
}

/* Forgets, before a claim, which accounts held creates back in the last one. */
void
schedule_clear_deferred(void)
{
	HASH_SEQ_STATUS seq;
	AccountState *state;

	hash_seq_init(&seq, accounts);
	while ((state = hash_seq_search(&seq)) != NULL)
		state->deferred = false;
}
