/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  Claiming due work and sending it.
 *
 * One claim transaction takes every kind of job in turn (claim_kinds):
 * creates and polls of withdrawals, then, on worker 0 only, pages of
 * providers' withdrawal lists (syncs) and refreshes of cached form rules.
 * Each kind takes its rows with FOR UPDATE SKIP LOCKED in a subtransaction
 * (an account whose credentials do not open must not stop the others),
 * and each job's request is built (signed) before the commit; the
 * requests are started only after it, so a withdrawal is committed as
 * sending before its request leaves.  No HTTP call runs inside a
 * transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "claim.h"
#include "http.h"
#include "inflight.h"
#include "poll_batch.h"
#include "readiness.h"
#include "record.h"
#include "remote.h"
#include "rules.h"
#include "schedule.h"
#include "spi_util.h"
#include "standby.h"
#include "store.h"
#include "withdraw.h"
#include "worker.h"

/* status candidates per free slot when some provider polls in batches */
#define STATUS_BATCH_CANDIDATES 20

/* One kind of job the claim takes. */
typedef struct ClaimKind ClaimKind;
struct ClaimKind
{
	JobKind		kind;
	const char *what;			/* for withdraw.workers: "could not take ..." */
	bool		first_worker_only;
	/* takes up to capacity due jobs; *more when more were due */
	List	   *(*take) (const ClaimKind *ck, int capacity, TimestampTz now, bool *more);
	/* records that a job's request could not be built */
	void		(*unbuildable) (Job *job, Outcome *failure);
};

static List *take_withdrawals(const ClaimKind *ck, int capacity, TimestampTz now, bool *more);
static List *take_syncs(const ClaimKind *ck, int capacity, TimestampTz now, bool *more);
static List *take_rules(const ClaimKind *ck, int capacity, TimestampTz now, bool *more);
static void withdrawal_unbuildable(Job *job, Outcome *failure);
static void sync_unbuildable(Job *job, Outcome *failure);
static void rules_unbuildable(Job *job, Outcome *failure);

static const ClaimKind claim_kinds[] = {
	{JOB_CREATE, "withdrawals", false, take_withdrawals, withdrawal_unbuildable},
	{JOB_STATUS, "withdrawals", false, take_withdrawals, withdrawal_unbuildable},
	{JOB_SYNC, "syncs", true, take_syncs, sync_unbuildable},
	{JOB_RULES, "form rule fetches", true, take_rules, rules_unbuildable},
};

static bool recovered = false;	/* store_recover ran at the first claim */

/* Builds the signed request; a failure becomes the job's outcome. */
bool
claim_build_request(Job *job, Outcome *failure)
{
	const Provider *provider = job->w.account->provider;
	MemoryContext old;
	volatile bool ok = true;

	if (job->kind == JOB_SYNC)
		MemoryContextReset(job->page_cxt);
	old = MemoryContextSwitchTo(job->kind == JOB_SYNC ? job->page_cxt : job->cxt);
	PG_TRY();
	{
		if (job->kind == JOB_CREATE)
			provider->build_create(&job->w, &job->request);
		else if (job->kind == JOB_STATUS && job->riders != NIL)
		{
			WithdrawalJob **batch = poll_batch_withdrawals(job);

			provider->status_batch->build(job->w.account, batch, 1 + list_length(job->riders),
										  &job->request);
		}
		else if (job->kind == JOB_STATUS && provider->build_status == NULL && provider->notices != NULL)
		{
			/* no status query: a poll falls due when a notification is overdue */
			memset(failure, 0, sizeof(Outcome));
			provider->notices->overdue(&job->w, failure);
			ok = false;
		}
		else if (job->kind == JOB_STATUS && provider->build_status == NULL)
			ereport(ERROR,
					(errmsg("%s has no status query: its notifications settle withdrawals",
							provider->name)));
		else if (job->kind == JOB_STATUS)
			provider->build_status(&job->w, &job->request);
		else if (job->kind == JOB_RULES)
			provider->form_rules->build(job->w.account, job->rule_key, job->rule_currency, &job->request);
		else
			provider->sync->build(job->w.account, &job->cursor, &job->request);
		job->request.timeout_ms = schedule_account(job->w.account->id, NULL, NULL)->policy.request_timeout_ms;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(job->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		memset(failure, 0, sizeof(Outcome));
		failure->kind = job->kind == JOB_CREATE ? OUTCOME_NOT_DELIVERED : OUTCOME_NO_CHANGE;
		failure->message = psprintf("could not build the request: %s", edata->message);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return ok;
}

/* Starts a job's request (after the commit that claimed it). */
void
claim_start(Job *job)
{
	http_start(&job->request, job, job->kind == JOB_SYNC ? job->page_cxt : job->cxt);
	worker_figures.requests_sent++;
}

/* A take of one kind of job, as a subtransaction's work. */
typedef struct TakeArgs
{
	JobKind		kind;
	List	   *ids;			/* JOB_CREATE, JOB_STATUS: the chosen rows */
	List	   *excluded;		/* JOB_SYNC, JOB_RULES: accounts left out */
	int			limit;			/* JOB_SYNC, JOB_RULES */
	List	   *jobs;			/* the result, in inflight_cxt() */
} TakeArgs;

static void
take_jobs(void *arg)
{
	TakeArgs   *t = arg;

	if (t->kind == JOB_SYNC)
		t->jobs = store_take_syncs(t->excluded, t->limit, inflight_cxt());
	else if (t->kind == JOB_RULES)
		t->jobs = rules_take_due(t->excluded, t->limit, inflight_cxt());
	else
		t->jobs = store_take(t->kind, t->ids, worker_number, inflight_cxt());
}

/*
 * Runs a take inside a subtransaction: the take opens each account's
 * credentials, and one that cannot be opened (its key was unset since the
 * last readiness_credentials) must not stop the worker.  On an ERROR
 * nothing of this kind is taken in this claim; the credentials are looked
 * at again at once, so the next claim leaves that account out.
 */
static List *
take_in_subtransaction(const ClaimKind *ck, List *ids, List *excluded, int limit)
{
	TakeArgs	t = {ck->kind, ids, excluded, limit, NIL};
	ErrorData  *edata = spi_subtransaction(take_jobs, &t);

	if (edata == NULL)
		return t.jobs;
	WithdrawShmemReportError(psprintf("could not take %s: %s", ck->what, edata->message));
	FreeErrorData(edata);
	readiness_credentials(GetCurrentTimestamp(), true);
	return NIL;
}

/*
 * Creates or polls: the due rows of the accounts that may send now, those
 * the account limits allow (schedule_choose), taken; the ones past their
 * deadline or idempotency window are settled here instead of sent.
 */
static List *
take_withdrawals(const ClaimKind *ck, int capacity, TimestampTz now, bool *more)
{
	List	   *candidates;
	List	   *chosen;
	List	   *reconcile = NIL;
	List	   *unsent = NIL;
	List	   *jobs = NIL;
	JobKind		kind = ck->kind;

	/* polls that can ride on another's exchange need more candidates */
	int			limit = (kind == JOB_STATUS && schedule_batching()) ?
		Min(capacity * STATUS_BATCH_CANDIDATES, 5000) : capacity;

	candidates = store_candidates(kind, list_concat(schedule_blocked_accounts(kind, now),
													readiness_unopenable_accounts()),
								  limit, CurrentMemoryContext);
	if (list_length(candidates) == limit)
		*more = true;
	chosen = schedule_choose(kind, candidates, now, capacity, &reconcile, &unsent);
	if (chosen != NIL)
		jobs = take_in_subtransaction(ck, chosen, NIL, 0);
	store_mark_reconcile(reconcile);
	store_fail_unsent(unsent);
	if (kind == JOB_STATUS)
		jobs = poll_batch_form(jobs);
	return jobs;
}

/* Due syncs, one per account at a time, each from where the last stopped. */
static List *
take_syncs(const ClaimKind *ck, int capacity, TimestampTz now, bool *more)
{
	List	   *excluded = list_concat(inflight_accounts(JOB_SYNC), readiness_unopenable_accounts());
	List	   *jobs = take_in_subtransaction(ck, NIL, excluded, capacity);
	ListCell   *lc;

	foreach(lc, jobs)
	{
		Job		   *job = lfirst(lc);

		(void) schedule_account(job->w.account->id, job->w.account->provider,
								job->w.account->options);
		if (job->w.account->provider->sync->by_id)
			job->cursor.position = MemoryContextStrdup(job->cxt,
													  remote_sync_position(job->w.account->id));
		else
			job->cursor.since = remote_sync_since(job->w.account->id);
	}
	return jobs;
}

/* Form rules due for refresh: a few at a time, they are rarely many. */
static List *
take_rules(const ClaimKind *ck, int capacity, TimestampTz now, bool *more)
{
	List	   *jobs = take_in_subtransaction(ck, NIL, readiness_unopenable_accounts(),
											  Min(capacity, 4));
	ListCell   *lc;

	foreach(lc, jobs)
	{
		Job		   *job = lfirst(lc);

		(void) schedule_account(job->w.account->id, job->w.account->provider,
								job->w.account->options);
	}
	return jobs;
}

/* A create or poll that could not be built: its outcome, and its riders'. */
static void
withdrawal_unbuildable(Job *job, Outcome *failure)
{
	ListCell   *lc;

	record_outcome(job, NULL, failure);
	foreach(lc, job->riders)
	{
		((Job *) lfirst(lc))->started_at = job->started_at;
		record_outcome(lfirst(lc), NULL, failure);
	}
}

/* A sync that could not be built backs off like a failed page. */
static void
sync_unbuildable(Job *job, Outcome *failure)
{
	remote_sync_failed(job->w.account->id, failure->message, retry_delay_ms(job->attempts + 1, 0));
}

static void
rules_unbuildable(Job *job, Outcome *failure)
{
	rules_store(job->w.account, job->rule_key, job->rule_currency, NULL, failure->message);
}

/*
 * At the first claim: the withdrawals this worker had in flight when it
 * last stopped become unknown (to be reconciled), or quarantined when
 * reading their answers stopped it too often.
 */
static void
recover_once(void)
{
	int			quarantined = 0;
	int			n;

	if (recovered)
		return;
	n = store_recover(worker_number, &quarantined);
	if (n > 0)
		ereport(LOG,
				(errmsg("withdraw worker %d found %d withdrawals in flight at its last stop; they are now unknown and will be reconciled",
						worker_number, n)));
	if (quarantined > 0)
		ereport(WARNING,
				(errmsg("withdraw worker %d quarantined %d withdrawals: it stopped %d times in a row while reading their answers",
						worker_number, quarantined, withdraw_quarantine_after),
				 errhint("They are in state review with the reason in last_error; settle them by hand.")));
	recovered = true;
}

/*
 * One claim transaction for every kind of work; the requests are built
 * (signed) before the commit and started after it.  Returns true when the
 * claim was cut short by the batch size, i.e. more work is waiting.
 */
bool
claim_and_send(void)
{
	/* at least one slot each: the accounts a worker serves alone wait for it */
	int			capacity = Max(1, schedule_share_of(withdraw_max_in_flight, withdraw_workers,
													worker_number)) - inflight_exchanges();
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext loop_cxt = CurrentMemoryContext;
	List	   *ready = NIL;
	List	   *unbuildable = NIL;
	bool		more = false;
	ListCell   *lc;

	if (capacity <= 0 || !readiness_key(now))
		return false;

	worker_begin("withdraw: claiming work");
	/* 'sending' is on disk before any request leaves */
	worker_commit_waits(true);
	if (!readiness_schema(now))
	{
		worker_end();
		return false;
	}
	recover_once();
	schedule_refresh_accounts(now);
	readiness_credentials(now, false);

	for (int k = 0; k < lengthof(claim_kinds) && capacity > 0; k++)
	{
		const ClaimKind *ck = &claim_kinds[k];

		if (ck->first_worker_only && worker_number != 0)
			continue;
		foreach(lc, ck->take(ck, capacity, now, &more))
		{
			Job		   *job = lfirst(lc);
			Outcome    *failure = palloc0(sizeof(Outcome));
			MemoryContext spi_cxt;
			bool		built;

			job->started_at = GetCurrentTimestamp();
			built = claim_build_request(job, failure);
			if (!built)
				ck->unbuildable(job, failure);
			spi_cxt = MemoryContextSwitchTo(loop_cxt);
			if (built)
				ready = lappend(ready, job);
			else
				unbuildable = lappend(unbuildable, job);
			MemoryContextSwitchTo(spi_cxt);
			capacity--;
		}
	}
	worker_end();

	foreach(lc, unbuildable)
	{
		Job		   *job = lfirst(lc);

		inflight_track(job);
		inflight_release(job, now);
	}
	/* nothing leaves before the synchronous standbys hold the claim */
	if (ready != NIL)
		standby_await_sync_commit();
	foreach(lc, ready)
	{
		Job		   *job = lfirst(lc);

		inflight_track(job);
		claim_start(job);
	}
	return more;
}
