/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker: claims due withdrawals, sends them through
 *	  libcurl multi, records outcomes, polls statuses on a schedule.
 *
 * One loop, shaped like worker_spi's, with the HTTP sockets added to the
 * wait: every iteration records the exchanges that completed (one
 * transaction), claims new work when woken or when the tick is due (one
 * transaction, committed before any request leaves), and waits on the
 * latch, curl's sockets and the next deadline.  Commits of new
 * withdrawals set the latch.  No HTTP call ever runs inside a transaction.
 * The same loop walks providers' withdrawal lists page by page for the
 * scheduled syncs (JOB_SYNC), one page in flight per account, and
 * refreshes of cached form rules (JOB_RULES).
 *
 * Rate limits are per account: an account with create_interval_ms sends
 * its next create only when the previous one has been answered and the
 * interval has passed since that answer, so the provider never sees two
 * requests closer than the interval, whatever the network does.
 *
 * There are withdraw.workers of these loops, one process each, so that
 * signing and recording use every core.  They share no memory but the
 * tables: an account's work of a kind that is rate limited (creates with
 * create_interval_ms, polls with polls_per_second), and every kind of an
 * account allowed fewer exchanges in flight than there are workers, is
 * served by one worker alone (account id modulo workers), which keeps the
 * limit exact; the rest goes to whichever worker claims it first (SKIP
 * LOCKED keeps them apart), each with its share of the account's
 * max_in_flight and of withdraw.max_in_flight.  Worker 0 also runs the
 * syncs, the form-rule refreshes and the pruning.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
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
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "http.h"
#include "job.h"
#include "remote.h"
#include "rules.h"
#include "secrets.h"
#include "session.h"
#include "spi_util.h"
#include "standby.h"		/* issue 20 */
#include "store.h"
#include "withdraw.h"

/* pruning runs this often, or a tenth of withdraw.retention if shorter */
#define PRUNE_INTERVAL_MS (60 * 1000)
/* status candidates per free slot when some provider polls in batches */
#define STATUS_BATCH_CANDIDATES 20

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

static int	my_worker = 0;		/* this worker's number, 0 .. workers - 1 */
static HTAB *accounts = NULL;
static MemoryContext jobs_cxt = NULL;
static List *in_flight_jobs = NIL;	/* Job * in flight, in jobs_cxt */
static int	exchanges_in_flight = 0;	/* in_flight_jobs that are not riders */
static bool batching_accounts = false;	/* some account polls in batches */
static WithdrawWorkerFigures figures;
static bool recovered = false;
static TimestampTz worker_started_at = 0;

/* error context: which withdrawal a log line is about */
static int64 current_withdrawal = 0;

static void
worker_error_context(void *arg)
{
	if (current_withdrawal != 0)
		errcontext("withdraw worker %d, withdrawal " INT64_FORMAT, my_worker, current_withdrawal);
	else
		errcontext("withdraw worker %d", my_worker);
}

/* the transaction under way runs as WITHDRAW_WORKER_ROLE (session.c) */
static bool as_worker_role = false;

static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	as_worker_role = session_enter_worker_role();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	session_leave_worker_role();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* The part of total that worker number rank gets when n workers share it. */
static int
share_of(int total, int n, int rank)
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
	int			rank = ((my_worker - state->account_id % n) + n) % n;
	bool		alone = state->policy.max_in_flight < n;

	if (alone)
		state->cap = rank == 0 ? state->policy.max_in_flight : 0;
	else
		state->cap = share_of(state->policy.max_in_flight, n, rank);
	state->serves[JOB_CREATE] = rank == 0 || !(alone || state->policy.create_interval_ms > 0);
	state->serves[JOB_STATUS] = rank == 0 || !(alone || state->policy.polls_per_second > 0);
}

/*
 * The worker's memory of an account.  A new worker waits one create
 * interval after its start before an account's first create: the worker it
 * replaces may have sent one just before it died.
 */
static AccountState *
account_state(int32 account_id, const Provider *provider, Jsonb *options)
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
static List *
blocked_accounts(JobKind kind, TimestampTz now)
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

/* The withdrawals of a batched poll: the sending job, then its riders. */
static WithdrawalJob **
batch_of(Job *job)
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
 * Returns the jobs that send; choose() counted the same way.
 */
static List *
batch_status_jobs(List *jobs)
{
	List	   *senders = NIL;
	ListCell   *lc;

	foreach(lc, jobs)
	{
		Job		   *job = lfirst(lc);
		int			max = account_state(job->w.account->id, NULL, NULL)->policy.status_batch_max;
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

/* Builds the signed request; a failure becomes the job's outcome. */
static bool
build_request(Job *job, Outcome *failure)
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
			WithdrawalJob **batch = batch_of(job);

			provider->build_status_batch(job->w.account, batch, 1 + list_length(job->riders),
										 &job->request);
		}
		else if (job->kind == JOB_STATUS && provider->build_status == NULL)
			ereport(ERROR,
					(errmsg("%s has no status query: its notifications settle withdrawals",
							provider->name)));
		else if (job->kind == JOB_STATUS)
			provider->build_status(&job->w, &job->request);
		else if (job->kind == JOB_RULES)
			provider->build_rules(job->w.account, job->rule_key, job->rule_currency, &job->request);
		else
			provider->build_sync(job->w.account, &job->cursor, &job->request);
		job->request.timeout_ms = account_state(job->w.account->id, NULL, NULL)->policy.request_timeout_ms;
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

/* The change an outcome makes, by the account's policy. */
static void
change_of(Job *job, Outcome *out, Change *change)
{
	AccountState *state = account_state(job->w.account->id, NULL, NULL);

	decide_change(job, &state->policy, out, change);
}

/*
 * Applies one change inside a subtransaction, so one bad row spoils nothing
 * else.  A provider id already linked to another withdrawal is refused
 * here (the batch path relies on the unique index and falls back to this).
 */
/* one job's answer (and the change it makes), as a subtransaction's work */
typedef struct RecordOne
{
	Job		   *job;
	HttpResponse *res;
	Change	   *change;
} RecordOne;

static void
record_one(void *arg)
{
	RecordOne  *r = arg;

	store_record(r->job, r->res, r->change);
}

static void
apply_change(Job *job, HttpResponse *res, Change *change)
{
	RecordOne	one = {job, res, change};
	ErrorData  *edata;

	current_withdrawal = job->w.id;
	if (change->provider_id != NULL && job->w.provider_id == NULL &&
		store_provider_id_taken(job, change->provider_id))
	{
		change->state = "review";
		change->last_error = psprintf("provider id %s is already linked to another withdrawal",
									  change->provider_id);
		change->provider_id = NULL;
	}

	edata = spi_subtransaction(record_one, &one);
	if (edata != NULL)
	{
		ereport(WARNING,
				(errmsg("could not record the outcome of withdrawal " INT64_FORMAT ": %s",
						job->w.id, edata->message),
				 errdetail("The withdrawal is left for recovery; it will be settled by status query.")));
		WithdrawShmemReportError(edata->message);
		FreeErrorData(edata);
	}
	current_withdrawal = 0;
}

static void
apply_outcome(Job *job, HttpResponse *res, Outcome *out)
{
	Change		change;

	change_of(job, out, &change);
	apply_change(job, res, &change);
}

/*
 * Records n exchanges: all at once with two statements, or, if that fails
 * (a refused transition, a provider id seen twice), one by one.
 */
typedef struct RecordBatch
{
	int			n;
	Job		  **jobs;
	HttpResponse **responses;
	Change	   *changes;
} RecordBatch;

static void
record_batch(void *arg)
{
	RecordBatch *b = arg;

	store_record_batch(b->n, b->jobs, b->responses, b->changes);
}

static void
record_changes(int n, Job **jobs, HttpResponse **responses, Change *changes)
{
	RecordBatch batch = {n, jobs, responses, changes};
	bool		done = false;

	if (n == 0)
		return;
	if (n > 1)
	{
		ErrorData  *edata = spi_subtransaction(record_batch, &batch);

		done = edata == NULL;
		if (edata != NULL)
			FreeErrorData(edata);
	}
	if (!done)
		for (int i = 0; i < n; i++)
			apply_change(jobs[i], responses[i], &changes[i]);
}

/* in_flight_jobs outlives the loop's context: it lives in jobs_cxt */
static void
track_job(Job *job)
{
	MemoryContext old = MemoryContextSwitchTo(jobs_cxt);

	in_flight_jobs = lappend(in_flight_jobs, job);
	if (!job->rider)
	{
		account_state(job->w.account->id, NULL, NULL)->in_flight++;
		exchanges_in_flight++;
	}
	if (job->kind == JOB_CREATE)
		account_state(job->w.account->id, NULL, NULL)->creates_in_flight++;
	MemoryContextSwitchTo(old);
}

static void
release_job(Job *job, TimestampTz now)
{
	AccountState *state = account_state(job->w.account->id, NULL, NULL);

	if (!job->rider)
	{
		state->in_flight--;
		exchanges_in_flight--;
	}
	if (job->kind == JOB_CREATE)
	{
		state->creates_in_flight--;
		/* the interval runs from the answer: arrival order cannot squeeze it */
		state->next_create_at = TimestampTzPlusMilliseconds(now, state->policy.create_interval_ms);
	}
	in_flight_jobs = list_delete_ptr(in_flight_jobs, job);
	MemoryContextDelete(job->cxt);
}

/*
 * Stores one page of an account's list (in a subtransaction: a bad record
 * fails this sync, not the worker).  Returns true when another page must
 * be fetched; otherwise the sync is over, done or failed.
 */
/* One page of a sync read and stored, as a subtransaction's work. */
typedef struct SyncPage
{
	Job		   *job;
	HttpResponse *res;
	AccountState *state;
	SyncResult	out;
	bool		more;
} SyncPage;

static void
store_sync_page(void *arg)
{
	SyncPage   *page = arg;
	Job		   *job = page->job;
	ListCell   *lc;

	job->w.account->provider->parse_sync(job->w.account, &job->cursor, page->res, &page->out);
	if (job->cursor.position)
		job->cursor.position = MemoryContextStrdup(job->cxt, job->cursor.position);
	if (page->out.error != NULL)
		return;
	foreach(lc, page->out.records)
	{
		RemoteRecord *r = lfirst(lc);

		job->changed += remote_upsert(job->w.account->id, r) ? 1 : 0;
		job->high_water = Max(job->high_water, r->requested_at);
	}
	page->more = page->out.more && ++job->cursor.pages < 100000;
	if (!page->more)
		remote_sync_done(job->w.account->id, job->high_water, job->changed,
						 page->state->policy.sync_interval_ms);
}

static bool
record_sync_page(Job *job, HttpResponse *res)
{
	MemoryContext old = MemoryContextSwitchTo(job->page_cxt);
	SyncPage	page;
	ErrorData  *edata;

	memset(&page, 0, sizeof(page));
	page.job = job;
	page.res = res;
	page.state = account_state(job->w.account->id, NULL, NULL);
	/* the page is read inside too: an ERROR from its bytes fails this sync only */
	edata = spi_subtransaction(store_sync_page, &page);
	if (edata != NULL)
	{
		page.out.error = psprintf("could not read or store the list: %s", edata->message);
		page.more = false;
	}
	if (page.out.error)
	{
		/* never a tight loop: failures back off like retries */
		remote_sync_failed(job->w.account->id, page.out.error,
						   retry_delay_ms(job->attempts + 1, 0));
		WithdrawShmemReportError(psprintf("sync of account \"%s\": %s",
										  job->w.account->name, page.out.error));
	}
	MemoryContextSwitchTo(old);
	return page.more;
}

/*
 * The outcomes of a batched poll, one per withdrawal of the batch, into
 * jobs/responses/changes; returns how many.  Every withdrawal keeps its own
 * attempt row; they share the exchange's response.
 */
static int
record_batch_outcomes(Job *job, HttpResponse *res, Job **jobs, HttpResponse **responses,
					  Change *changes)
{
	int			n = 1 + list_length(job->riders);
	WithdrawalJob **batch;
	Outcome    *outs;
	MemoryContext old = MemoryContextSwitchTo(job->cxt);

	batch = batch_of(job);
	outs = palloc0(sizeof(Outcome) * n);
	if (res->transport_failed)
		for (int i = 0; i < n; i++)
			outcome_of_transport_failure(job, res, &outs[i]);
	else
		job->w.account->provider->parse_status_batch(batch, n, res, outs);
	for (int i = 0; i < n; i++)
	{
		Job		   *member = i == 0 ? job : list_nth(job->riders, i - 1);

		member->request = job->request;
		member->started_at = job->started_at;
		change_of(member, &outs[i], &changes[i]);
		jobs[i] = member;
		responses[i] = res;
	}
	MemoryContextSwitchTo(old);
	return n;
}

/* The withdrawals an exchange answers for: the job, then its riders. */
static Job **
members_of(Job *job, int *n)
{
	Job		  **members = palloc(sizeof(Job *) * (1 + list_length(job->riders)));
	ListCell   *lc;

	*n = 0;
	members[(*n)++] = job;
	foreach(lc, job->riders)
		members[(*n)++] = lfirst(lc);
	return members;
}

/*
 * A failed handling of job's answer: one more strike (none if it was
 * stamped before the reading: the stamp was this strike), and review once
 * the strikes reach withdraw.quarantine_after.
 */
static void
strike(Job *job, Change *change, const char *why)
{
	change->strikes = job->stamped ? job->strikes : job->strikes + 1;
	if (change->strikes < withdraw_quarantine_after)
		return;
	change->state = "review";
	change->outcome = "quarantined";
	change->needs_reconcile = false;
	change->retry_in_ms = -1;
	change->poll_in_ms = -1;
	change->maybe_delivered = change->maybe_delivered || job->kind == JOB_CREATE;
	change->last_error = psprintf("quarantined: its answers could not be read %d times in a row (last: %s);"
								  " it is no longer sent or polled: check it at the provider and settle it by hand",
								  change->strikes, why);
}

/*
 * The outcome of an answer that could not be read (its reading raised an
 * ERROR): for a create, an unknown outcome, since the provider may have
 * executed it; for a poll, no change.  Then the strike.
 */
static int
unreadable_outcomes(Job *job, HttpResponse *res, const char *why, Job **jobs,
					HttpResponse **responses, Change *changes)
{
	Job		  **members;
	int			n;
	MemoryContext old = MemoryContextSwitchTo(job->cxt);

	members = members_of(job, &n);
	/* the attempt rows say why too */
	if (res->error == NULL)
		res->error = psprintf("could not read the answer: %s", why);
	for (int i = 0; i < n; i++)
	{
		Outcome		out;

		memset(&out, 0, sizeof(out));
		out.kind = job->kind == JOB_CREATE ? OUTCOME_UNKNOWN : OUTCOME_NO_CHANGE;
		out.message = psprintf("could not read the answer: %s", why);
		members[i]->request = job->request;
		members[i]->started_at = job->started_at;
		change_of(members[i], &out, &changes[i]);
		strike(members[i], &changes[i], why);
		jobs[i] = members[i];
		responses[i] = res;
	}
	MemoryContextSwitchTo(old);
	return n;
}

/* Reads one create or status answer into outcomes; returns how many. */
static int
read_answer(HttpCompletion *c, Job **jobs, HttpResponse **responses, Change *changes)
{
	Job		   *job = c->tag;
	Outcome		out;
	MemoryContext old;

	if (job->riders != NIL)
		return record_batch_outcomes(job, c->response, jobs, responses, changes);
	old = MemoryContextSwitchTo(job->cxt);
	memset(&out, 0, sizeof(out));
	if (c->response->transport_failed)
		outcome_of_transport_failure(job, c->response, &out);
	else if (job->kind == JOB_CREATE)
		job->w.account->provider->parse_create(&job->w, c->response, &out);
	else
		job->w.account->provider->parse_status(&job->w, c->response, &out);
	change_of(job, &out, changes);
	MemoryContextSwitchTo(old);
	jobs[0] = job;
	responses[0] = c->response;
	return 1;
}

/*
 * Reads the create and status answers of list into jobs/responses/changes
 * and returns how many there are.  Bytes from the network must never stop
 * the worker, so the reading runs in a subtransaction: all answers in one
 * (the common case costs one), and if any raises an ERROR, again one by
 * one, each in its own, the failing ones becoming unreadable outcomes.
 * The providers' readers are pure functions of the bytes, so reading an
 * answer twice gives the same outcome.
 */
/* Answers read into jobs/responses/changes, as a subtransaction's work. */
typedef struct ReadAnswers
{
	List	   *list;			/* of HttpCompletion */
	Job		  **jobs;
	HttpResponse **responses;
	Change	   *changes;
	int			n;				/* outcomes read so far */
} ReadAnswers;

static void
read_some(void *arg)
{
	ReadAnswers *r = arg;
	ListCell   *lc;

	foreach(lc, r->list)
		r->n += read_answer(lfirst(lc), r->jobs + r->n, r->responses + r->n, r->changes + r->n);
}

static int
read_answers(List *list, Job **jobs, HttpResponse **responses, Change *changes)
{
	ReadAnswers all = {list, jobs, responses, changes, 0};
	ErrorData  *edata;
	int			n = 0;
	ListCell   *lc;

	edata = spi_subtransaction(read_some, &all);
	if (edata == NULL)
		return all.n;
	FreeErrorData(edata);

	foreach(lc, list)
	{
		HttpCompletion *c = lfirst(lc);
		Job		   *job = c->tag;
		ReadAnswers one = {list_make1(c), jobs + n, responses + n, changes + n, 0};

		edata = spi_subtransaction(read_some, &one);
		if (edata != NULL)
		{
			ereport(WARNING,
					(errmsg("could not read the answer about withdrawal " INT64_FORMAT ": %s",
							job->w.id, edata->message),
					 errdetail("The answer is recorded as unreadable; after %d such failures in a row the withdrawal goes to review.",
							   withdraw_quarantine_after)));
			WithdrawShmemReportError(psprintf("could not read the answer about withdrawal " INT64_FORMAT ": %s",
											  job->w.id, edata->message));
			one.n = unreadable_outcomes(job, c->response, edata->message, jobs + n, responses + n,
										changes + n);
			FreeErrorData(edata);
		}
		n += one.n;
	}
	return n;
}

/* Tracks a job and the polls that ride on it. */
static void
track_batch(Job *job)
{
	ListCell   *lc;

	track_job(job);
	foreach(lc, job->riders)
		track_job(lfirst(lc));
}

/* Releases a job and the polls that rode on it. */
static void
release_batch(Job *job, TimestampTz now)
{
	ListCell   *lc;

	foreach(lc, job->riders)
		release_job(lfirst(lc), now);
	release_job(job, now);
}

/* Was any withdrawal this exchange answers for in flight when a worker stopped? */
static bool
is_suspect(Job *job)
{
	ListCell   *lc;

	if (job->kind != JOB_CREATE && job->kind != JOB_STATUS)
		return false;
	if (job->strikes > 0)
		return true;
	foreach(lc, job->riders)
		if (((Job *) lfirst(lc))->strikes > 0)
			return true;
	return false;
}

/* Stores fetched form rules; an ERROR reading them fails this fetch only. */
static void
rules_one(void *arg)
{
	RecordOne  *r = arg;

	rules_record(r->job, r->res);
}

static void
record_rules(Job *job, HttpResponse *res)
{
	RecordOne	one = {job, res, NULL};
	ErrorData  *edata = spi_subtransaction(rules_one, &one);

	if (edata != NULL)
	{
		rules_store(job->w.account, job->rule_key, job->rule_currency, NULL,
					psprintf("could not read the rules: %s", edata->message));
		FreeErrorData(edata);
	}
}

/*
 * Records completed exchanges in one transaction; returns the sync jobs
 * whose next page must be fetched (in jobs_cxt).
 */
static List *
record_some(List *completions, const char *activity)
{
	ListCell   *lc;
	List	   *answers = NIL;
	List	   *next_pages = NIL;
	int			n = 0;
	int			total = 0;
	Job		  **jobs;
	HttpResponse **responses;
	Change	   *changes;

	foreach(lc, completions)
		total += 1 + list_length(((Job *) ((HttpCompletion *) lfirst(lc))->tag)->riders);
	jobs = palloc(sizeof(Job *) * total);
	responses = palloc(sizeof(HttpResponse *) * total);
	changes = palloc(sizeof(Change) * total);

	begin_work(activity);
	foreach(lc, completions)
	{
		HttpCompletion *c = lfirst(lc);
		Job		   *job = c->tag;

		figures.responses++;
		if (job->kind == JOB_SYNC)
		{
			if (record_sync_page(job, c->response))
			{
				MemoryContext old = MemoryContextSwitchTo(jobs_cxt);

				next_pages = lappend(next_pages, job);
				MemoryContextSwitchTo(old);
			}
		}
		else if (job->kind == JOB_RULES)
			record_rules(job, c->response);
		else
			answers = lappend(answers, c);
	}
	if (answers != NIL)
		n = read_answers(answers, jobs, responses, changes);
	record_changes(n, jobs, responses, changes);
	end_work();
	return next_pages;
}

/*
 * Records every completed exchange: in one transaction, except the
 * answers about withdrawals that were in flight when a worker stopped
 * (strikes > 0).  Each of those is read alone, after the others are
 * safely recorded, and after a committed stamp (store_stamp): if reading
 * it stops the worker again, the stamp is the strike that eventually
 * quarantines it, and no other withdrawal is blamed.
 */
static void
record_completions(List *completions)
{
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext cxt = CurrentMemoryContext;
	List	   *next_pages;
	List	   *normal = NIL;
	List	   *suspects = NIL;

	foreach(lc, completions)
	{
		HttpCompletion *c = lfirst(lc);

		if (is_suspect(c->tag))
			suspects = lappend(suspects, c);
		else
			normal = lappend(normal, c);
	}
	next_pages = normal != NIL ? record_some(normal, "withdraw: recording outcomes") : NIL;
	MemoryContextSwitchTo(cxt);
	foreach(lc, suspects)
	{
		HttpCompletion *c = lfirst(lc);
		List	   *ids = NIL;
		int			n;
		Job		  **members = members_of(c->tag, &n);
		char	   *activity;

		for (int i = 0; i < n; i++)
		{
			ids = lappend(ids, &members[i]->w.id);
			members[i]->strikes++;
			members[i]->stamped = true;
		}
		activity = psprintf("withdraw: reading the answer about withdrawal " INT64_FORMAT,
							((Job *) c->tag)->w.id);
		begin_work("withdraw: stamping an answer before reading it");
		store_stamp(ids);
		end_work();
		MemoryContextSwitchTo(cxt);
		(void) record_some(list_make1(c), activity);
		MemoryContextSwitchTo(cxt);
	}

	foreach(lc, completions)
	{
		Job		   *job = ((HttpCompletion *) lfirst(lc))->tag;

		if (!list_member_ptr(next_pages, job))
			release_batch(job, now);
	}
	list_free_deep(completions);

	/* the next page of a list goes out at once, as the same job */
	foreach(lc, next_pages)
	{
		Job		   *job = lfirst(lc);
		Outcome		failure;

		if (build_request(job, &failure))
		{
			http_start(&job->request, job, job->page_cxt);
			figures.requests_sent++;
		}
		else
			release_job(job, now);
	}
	list_free(next_pages);
}

/* Picks, among locked candidates, those the account limits allow now. */
static List *
choose(JobKind kind, List *candidates, TimestampTz now, int capacity, List **reconcile,
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
			state = account_state(c->account_id, c->provider, c->options);
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
 * Why the worker sends nothing: in withdraw.workers at once, in the log at
 * most once a minute per reason (*logged_at is that reason's clock).
 */
static void
report_not_sending(const char *why, const char *hint, TimestampTz now, TimestampTz *logged_at)
{
	WithdrawShmemReportError(psprintf("not sending: %s", why));
	if (TimestampDifferenceExceeds(*logged_at, now, 60 * 1000))
	{
		ereport(WARNING,
				(errmsg("withdraw worker is not sending: %s", why),
				 errhint("%s", hint)));
		*logged_at = now;
	}
}

/*
 * Without a readable secrets key nothing can be signed: the worker sends
 * nothing, says why, and looks again on the next tick.  The file is read
 * at most once a second.
 */
static bool
key_ready(TimestampTz now)
{
	static TimestampTz checked_at = 0;
	static TimestampTz logged_at = 0;
	static bool ready = false;
	char	   *why = NULL;

	if (ready && !TimestampDifferenceExceeds(checked_at, now, 1000))
		return true;
	checked_at = now;
	ready = secrets_key_usable(&why);
	if (!ready)
		report_not_sending(why, "Withdrawals stay queued until the key file is readable; set withdraw.secrets_key_file and reload.",
						   now, &logged_at);
	return ready;
}

/*
 * The options of every account, when there are several workers, at most
 * once per withdraw.naptime.  choose() reads the options of the accounts
 * the claim offers, and skips any this worker does not serve; but an
 * account blocked here as another worker's is never offered, so without
 * this read it would stay blocked after its limits were lifted.
 */
static void
refresh_accounts(TimestampTz now)
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
		(void) account_state(DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull)), provider,
							 DatumGetJsonbP(SPI_getbinval(tuple, desc, 3, &isnull)));
	}
}

/*
 * The extension's objects are those this library was built for: after an
 * upgrade of the library and before ALTER EXTENSION withdraw UPDATE, the
 * worker's queries would fail on every claim, so it sends nothing and says
 * why.  Read again only when the extension's oid changes.
 */
static bool
schema_ready(TimestampTz now)
{
	static Oid	checked_oid = InvalidOid;
	static bool ready = false;
	static TimestampTz logged_at = 0;
	Oid			oid = get_extension_oid("withdraw", true);
	char	   *version;

	if (oid == InvalidOid)
		return false;
	if (oid == checked_oid && ready && as_worker_role)
		return true;
	checked_oid = oid;
	if (SPI_execute("SELECT extversion FROM pg_extension WHERE extname = 'withdraw'", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "reading the extension's version failed");
	version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	ready = strcmp(version, WITHDRAW_SCHEMA_VERSION) == 0;
	if (ready && !as_worker_role)
	{
		/* never run the extension's work with the connection's superuser rights */
		ready = false;
		checked_oid = InvalidOid;
		report_not_sending(psprintf("role \"%s\" does not exist", WITHDRAW_WORKER_ROLE),
						   psprintf("Create role %s again with its rights on the extension's objects, as the script withdraw--0.3.0--0.4.0.sql does.",
									WITHDRAW_WORKER_ROLE),
						   now, &logged_at);
	}
	else if (!ready)
	{
		checked_oid = InvalidOid;	/* look again on the next claim */
		report_not_sending(psprintf("extension withdraw is at version %s; this library needs %s",
									version, WITHDRAW_SCHEMA_VERSION),
						   psprintf("Run ALTER EXTENSION withdraw UPDATE in database \"%s\".",
									withdraw_database_name),
						   now, &logged_at);
	}
	return ready;
}

/*
 * Accounts whose sealed credentials cannot be opened (their key is not
 * configured, or they do not authenticate): their work is not claimed, so
 * that one of them stops only itself, and each is reported (in
 * withdraw.workers at once, in the log once a minute; withdraw.accounts
 * shows the reason too).  Looked at once per withdraw.naptime, or at once
 * when force is set (a take failed).  The list lives in jobs_cxt.
 */
static List *unopenable_accounts = NIL;

static void
check_credentials(TimestampTz now, bool force)
{
	static TimestampTz checked_at = 0;
	static TimestampTz logged_at = 0;
	List	   *reasons;
	List	   *ids;
	MemoryContext old;
	ListCell   *lc;

	if (!force && !TimestampDifferenceExceeds(checked_at, now, withdraw_naptime_ms))
		return;
	checked_at = now;
	ids = store_unopenable_accounts(&reasons);
	old = MemoryContextSwitchTo(jobs_cxt);
	list_free(unopenable_accounts);
	unopenable_accounts = list_copy(ids);
	MemoryContextSwitchTo(old);
	if (reasons != NIL)
	{
		StringInfoData all;

		initStringInfo(&all);
		foreach(lc, reasons)
			appendStringInfo(&all, "%s%s", all.len > 0 ? "; " : "", (char *) lfirst(lc));
		report_not_sending(all.data,
						   "The other accounts are sent for. Configure the key that sealed the credentials (withdraw.secrets_key_file, or withdraw.secrets_previous_key_file during a rotation), or give the account its credentials again with withdraw_account_update.",
						   now, &logged_at);
	}
}

/* A take of one kind of job, as a subtransaction's work. */
typedef struct TakeArgs
{
	JobKind		kind;
	List	   *ids;			/* JOB_CREATE, JOB_STATUS: the chosen rows */
	List	   *excluded;		/* JOB_SYNC, JOB_RULES: accounts left out */
	int			limit;			/* JOB_SYNC, JOB_RULES */
	List	   *jobs;			/* the result, in jobs_cxt */
} TakeArgs;

static void
take_jobs(void *arg)
{
	TakeArgs   *t = arg;

	if (t->kind == JOB_SYNC)
		t->jobs = store_take_syncs(t->excluded, t->limit, jobs_cxt);
	else if (t->kind == JOB_RULES)
		t->jobs = rules_take_due(t->excluded, t->limit, jobs_cxt);
	else
		t->jobs = store_take(t->kind, t->ids, my_worker, jobs_cxt);
}

/* Runs a take; on an ERROR takes nothing and looks at the credentials again. */
static List *
take_in_subtransaction(TakeArgs *t, const char *what)
{
	ErrorData  *edata = spi_subtransaction(take_jobs, t);

	if (edata == NULL)
		return t->jobs;
	WithdrawShmemReportError(psprintf("could not take %s: %s", what, edata->message));
	FreeErrorData(edata);
	check_credentials(GetCurrentTimestamp(), true);
	return NIL;
}

/*
 * Takes the chosen withdrawals inside a subtransaction: the take opens
 * each account's credentials, and one that cannot be opened (its key was
 * unset since the last check_credentials) must not stop the worker.  On
 * an ERROR nothing of this kind is taken in this claim; the credentials
 * are looked at again at once, so the next claim leaves that account out.
 */
static List *
take(JobKind kind, List *ids)
{
	TakeArgs	t = {kind, ids, NIL, 0, NIL};

	if (ids == NIL)
		return NIL;
	return take_in_subtransaction(&t, "withdrawals");
}

/*
 * Takes due syncs (kind JOB_SYNC, none of the excluded accounts) or form
 * rule fetches (JOB_RULES), inside a subtransaction like take().
 */
static List *
take_account_jobs(JobKind kind, List *excluded, int limit)
{
	TakeArgs	t = {kind, NIL, excluded, limit, NIL};

	return take_in_subtransaction(&t, kind == JOB_SYNC ? "syncs" : "form rule fetches");
}

/*
 * One claim transaction for both kinds of work; the requests are built
 * (signed) before the commit and started after it.  Returns true when the
 * claim was cut short by the batch size, i.e. more work is waiting.
 */
static bool
claim_and_send(void)
{
	/* at least one slot each: the accounts a worker serves alone wait for it */
	int			capacity = Max(1, share_of(withdraw_max_in_flight, withdraw_workers, my_worker)) -
		exchanges_in_flight;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext loop_cxt = CurrentMemoryContext;
	List	   *ready = NIL;
	List	   *unbuildable = NIL;
	bool		more = false;
	ListCell   *lc;

	if (capacity <= 0 || !key_ready(now))
		return false;

	begin_work("withdraw: claiming work");
	if (!schema_ready(now))
	{
		end_work();
		return false;
	}
	if (!recovered)
	{
		int			quarantined = 0;
		int			n = store_recover(my_worker, &quarantined);

		if (n > 0)
			ereport(LOG,
					(errmsg("withdraw worker %d found %d withdrawals in flight at its last stop; they are now unknown and will be reconciled",
							my_worker, n)));
		if (quarantined > 0)
			ereport(WARNING,
					(errmsg("withdraw worker %d quarantined %d withdrawals: it stopped %d times in a row while reading their answers",
							my_worker, quarantined, withdraw_quarantine_after),
					 errhint("They are in state review with the reason in last_error; settle them by hand.")));
		recovered = true;
	}
	refresh_accounts(now);
	check_credentials(now, false);

	for (JobKind kind = JOB_CREATE; kind <= JOB_STATUS && capacity > 0; kind++)
	{
		List	   *candidates;
		List	   *reconcile = NIL;
		List	   *unsent = NIL;
		List	   *jobs;
		/* polls that can ride on another's exchange need more candidates */
		int			limit = (kind == JOB_STATUS && batching_accounts) ?
			Min(capacity * STATUS_BATCH_CANDIDATES, 5000) : capacity;

		candidates = store_candidates(kind, list_concat(blocked_accounts(kind, now),
														unopenable_accounts),
									  limit, CurrentMemoryContext);
		if (list_length(candidates) == limit)
			more = true;
		jobs = take(kind, choose(kind, candidates, now, capacity, &reconcile, &unsent));
		store_mark_reconcile(reconcile);
		store_fail_unsent(unsent);
		if (kind == JOB_STATUS)
			jobs = batch_status_jobs(jobs);

		foreach(lc, jobs)
		{
			Job		   *job = lfirst(lc);
			Outcome    *failure = palloc0(sizeof(Outcome));
			MemoryContext spi_cxt;

			job->started_at = GetCurrentTimestamp();
			if (build_request(job, failure))
			{
				spi_cxt = MemoryContextSwitchTo(loop_cxt);
				ready = lappend(ready, job);
				MemoryContextSwitchTo(spi_cxt);
			}
			else
			{
				ListCell   *lc2;

				apply_outcome(job, NULL, failure);
				foreach(lc2, job->riders)
				{
					((Job *) lfirst(lc2))->started_at = job->started_at;
					apply_outcome(lfirst(lc2), NULL, failure);
				}
				spi_cxt = MemoryContextSwitchTo(loop_cxt);
				unbuildable = lappend(unbuildable, job);
				MemoryContextSwitchTo(spi_cxt);
			}
			capacity--;
		}
	}
	/* syncs and form rules are worker 0's */
	if (capacity > 0 && my_worker == 0)
	{
		List	   *syncing = NIL;

		foreach(lc, in_flight_jobs)
			if (((Job *) lfirst(lc))->kind == JOB_SYNC)
				syncing = lappend_int(syncing, ((Job *) lfirst(lc))->w.account->id);
		syncing = list_concat(syncing, unopenable_accounts);
		foreach(lc, take_account_jobs(JOB_SYNC, syncing, capacity))
		{
			Job		   *job = lfirst(lc);
			Outcome		failure;
			MemoryContext spi_cxt;

			(void) account_state(job->w.account->id, job->w.account->provider,
								 job->w.account->options);
			if (job->w.account->provider->sync_by_id)
				job->cursor.position = MemoryContextStrdup(job->cxt,
														  remote_sync_position(job->w.account->id));
			else
				job->cursor.since = remote_sync_since(job->w.account->id);
			job->started_at = GetCurrentTimestamp();
			spi_cxt = MemoryContextSwitchTo(loop_cxt);
			if (build_request(job, &failure))
				ready = lappend(ready, job);
			else
			{
				remote_sync_failed(job->w.account->id, failure.message,
								   retry_delay_ms(job->attempts + 1, 0));
				unbuildable = lappend(unbuildable, job);
			}
			MemoryContextSwitchTo(spi_cxt);
		}
	}
	if (capacity > 0 && my_worker == 0)
	{
		/* form rules due for refresh: a few at a time, they are rarely many */
		foreach(lc, take_account_jobs(JOB_RULES, unopenable_accounts, Min(capacity, 4)))
		{
			Job		   *job = lfirst(lc);
			Outcome		failure;
			MemoryContext spi_cxt;

			(void) account_state(job->w.account->id, job->w.account->provider,
								 job->w.account->options);
			job->started_at = GetCurrentTimestamp();
			spi_cxt = MemoryContextSwitchTo(loop_cxt);
			if (build_request(job, &failure))
				ready = lappend(ready, job);
			else
			{
				rules_store(job->w.account, job->rule_key, job->rule_currency, NULL, failure.message);
				unbuildable = lappend(unbuildable, job);
			}
			MemoryContextSwitchTo(spi_cxt);
		}
	}
	end_work();

	foreach(lc, unbuildable)
	{
		Job		   *job = lfirst(lc);

		track_batch(job);
		if (job->kind == JOB_SYNC)
			release_job(job, now);
		else
			release_batch(job, now);
	}
	/* issue 20: nothing leaves before the synchronous standbys hold the claim */
	if (ready != NIL)
		standby_await_sync_commit();
	foreach(lc, ready)
	{
		Job		   *job = lfirst(lc);

		track_batch(job);
		http_start(&job->request, job, job->kind == JOB_SYNC ? job->page_cxt : job->cxt);
		figures.requests_sent++;
	}
	return more;
}

/* How long until a rate-limited account may send again, in ms. */
static long
next_release_ms(TimestampTz now, long limit)
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

static void
clear_deferred(void)
{
	HASH_SEQ_STATUS seq;
	AccountState *state;

	hash_seq_init(&seq, accounts);
	while ((state = hash_seq_search(&seq)) != NULL)
		state->deferred = false;
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

	if (withdraw_retention_s <= 0 || my_worker != 0)
		return false;
	begin_work("withdraw: pruning old history");
	deleted = schema_ready(GetCurrentTimestamp()) ?
		store_prune(withdraw_retention_s, withdraw_retention_batch) : 0;
	end_work();
	return deleted >= withdraw_retention_batch;
}

/* The loop proper; never returns. */
static void
worker_loop(MemoryContext loop_cxt)
{
	TimestampTz next_tick = 0;
	TimestampTz next_prune = 0;
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
			clear_deferred();
			claim_now = claim_and_send();
			/* more due than this worker can take: the next one helps */
			if (claim_now && withdraw_workers > 1)
				WithdrawWakeWorkers(1U << ((my_worker + 1) % withdraw_workers));
			MemoryContextSwitchTo(loop_cxt);
			next_tick = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), withdraw_naptime_ms);
		}

		if (now >= next_prune)
			next_prune = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 prune_history() ? withdraw_naptime_ms :
													 Min(PRUNE_INTERVAL_MS, withdraw_retention_s * 100L));
		MemoryContextSwitchTo(loop_cxt);

		figures.in_flight = list_length(in_flight_jobs);
		WithdrawShmemReport(&figures);

		now = GetCurrentTimestamp();
		timeout = claim_now ? 0 : TimestampDifferenceMilliseconds(now, next_tick);
		timeout = next_release_ms(now, timeout);
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
	HASHCTL		info;
	ErrorContextCallback errcallback;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	my_worker = DatumGetInt32(main_arg);
	BackgroundWorkerInitializeConnection(withdraw_database_name, NULL, 0);
	/* above whatever ALTER DATABASE or ALTER ROLE set: see session.c */
	session_pin_worker_settings();
	pgstat_report_appname(psprintf("withdraw worker %d", my_worker));
	WithdrawShmemAttachWorker(my_worker);

	errcallback.callback = worker_error_context;
	errcallback.arg = NULL;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	http_init();
	worker_started_at = GetCurrentTimestamp();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "withdraw worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	jobs_cxt = AllocSetContextCreate(TopMemoryContext, "withdraw jobs",
									 ALLOCSET_DEFAULT_SIZES);
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(int32);
	info.entrysize = sizeof(AccountState);
	accounts = hash_create("withdraw accounts", 64, &info, HASH_ELEM | HASH_BLOBS);

	ereport(LOG, (errmsg("withdraw worker %d of %d started in database \"%s\"",
						 my_worker, withdraw_workers, withdraw_database_name)));

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
