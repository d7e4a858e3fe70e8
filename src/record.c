/*-------------------------------------------------------------------------
 *
 * record.c
 *	  Recording the outcomes of completed exchanges.
 *
 * Every iteration of the loop records the exchanges that completed in one
 * transaction: answers are read (by the provider's pure readers) and their
 * changes applied with two statements for the whole batch.  Bytes from the
 * network and rows that refuse a change must never stop the worker, so
 * each step that can raise an ERROR runs in a subtransaction
 * (spi_subtransaction): all at once in the common case, and one by one
 * when that fails, the failing ones becoming unreadable outcomes with a
 * strike (quarantine after withdraw.quarantine_after).  The pages of a
 * sync and fetched form rules are stored here too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "claim.h"
#include "inflight.h"
#include "poll_batch.h"
#include "record.h"
#include "remote.h"
#include "rules.h"
#include "schedule.h"
#include "spi_util.h"
#include "store.h"
#include "withdraw.h"
#include "worker.h"

/* The change an outcome makes, by the account's policy. */
static void
change_of(Job *job, Outcome *out, Change *change)
{
	AccountState *state = schedule_account(job->w.account->id, NULL, NULL);

	decide_change(job, &state->policy, out, change);
}

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

/*
 * Applies one change inside a subtransaction, so one bad row spoils nothing
 * else.  A provider id already linked to another withdrawal is refused
 * here (the batch path relies on the unique index and falls back to this).
 */
static void
apply_change(Job *job, HttpResponse *res, Change *change)
{
	RecordOne	one = {job, res, change};
	ErrorData  *edata;

	worker_about(job->w.id);
	if (change->provider_id != NULL && job->w.provider_id == NULL &&
		store_provider_id_taken(job, change->provider_id))
	{
		change->state = STATE_REVIEW;
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
	worker_about(0);
}

/* Records the change an outcome makes (a request that could not be built). */
void
record_outcome(Job *job, HttpResponse *res, Outcome *out)
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

	job->w.account->provider->sync->parse(job->w.account, &job->cursor, page->res, &page->out);
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

/*
 * Stores one page of an account's list (in a subtransaction: a bad record
 * fails this sync, not the worker).  Returns true when another page must
 * be fetched; otherwise the sync is over, done or failed.
 */
static bool
record_sync_page(Job *job, HttpResponse *res)
{
	MemoryContext old = MemoryContextSwitchTo(job->page_cxt);
	SyncPage	page;
	ErrorData  *edata;

	memset(&page, 0, sizeof(page));
	page.job = job;
	page.res = res;
	page.state = schedule_account(job->w.account->id, NULL, NULL);
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

	batch = poll_batch_withdrawals(job);
	outs = palloc0(sizeof(Outcome) * n);
	if (res->transport_failed)
		for (int i = 0; i < n; i++)
			outcome_of_transport_failure(job, res, &outs[i]);
	else
		job->w.account->provider->status_batch->parse(batch, n, res, outs);
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
	change->state = STATE_REVIEW;
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

	members = poll_batch_members(job, &n);
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

/*
 * Reads the create and status answers of list into jobs/responses/changes
 * and returns how many there are.  Bytes from the network must never stop
 * the worker, so the reading runs in a subtransaction: all answers in one
 * (the common case costs one), and if any raises an ERROR, again one by
 * one, each in its own, the failing ones becoming unreadable outcomes.
 * The providers' readers are pure functions of the bytes, so reading an
 * answer twice gives the same outcome.
 */
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
 * whose next page must be fetched (in inflight_cxt()).
 *
 * !wait_for_flush (withdraw.synchronous_outcomes off): the commit does not
 * wait for its WAL to reach the disk (or a synchronous standby).  Exactly
 * once does not rest on this commit but on the claim's, which always
 * waits: an outcome lost in a crash leaves its withdrawal in 'sending',
 * which the recovery makes 'unknown' and reconciles under its key.  And
 * the next claim's commit, later in the same WAL, makes it durable anyway;
 * what a crash can lose is the last fraction of a second of answers.
 */
static List *
record_some(List *completions, const char *activity, bool wait_for_flush)
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

	worker_begin(activity);
	if (!wait_for_flush)
		worker_commit_waits(false);
	foreach(lc, completions)
	{
		HttpCompletion *c = lfirst(lc);
		Job		   *job = c->tag;

		worker_figures.responses++;
		if (job->kind == JOB_SYNC)
		{
			if (record_sync_page(job, c->response))
			{
				MemoryContext old = MemoryContextSwitchTo(inflight_cxt());

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
	worker_end();
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
void
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
	next_pages = normal != NIL ?
		record_some(normal, "withdraw: recording outcomes", withdraw_synchronous_outcomes) : NIL;
	MemoryContextSwitchTo(cxt);
	foreach(lc, suspects)
	{
		HttpCompletion *c = lfirst(lc);
		List	   *ids = NIL;
		int			n;
		Job		  **members = poll_batch_members(c->tag, &n);
		char	   *activity;

		for (int i = 0; i < n; i++)
		{
			ids = lappend(ids, &members[i]->w.id);
			members[i]->strikes++;
			members[i]->stamped = true;
		}
		activity = psprintf("withdraw: reading the answer about withdrawal " INT64_FORMAT,
							((Job *) c->tag)->w.id);
		worker_begin("withdraw: stamping an answer before reading it");
		store_stamp(ids);
		worker_end();
		MemoryContextSwitchTo(cxt);
		/* its outcome clears the stamp: durable like the stamp */
		(void) record_some(list_make1(c), activity, true);
		MemoryContextSwitchTo(cxt);
	}

	foreach(lc, completions)
	{
		Job		   *job = ((HttpCompletion *) lfirst(lc))->tag;

		if (!list_member_ptr(next_pages, job))
			inflight_release(job, now);
	}
	list_free_deep(completions);

	/* the next page of a list goes out at once, as the same job */
	foreach(lc, next_pages)
	{
		Job		   *job = lfirst(lc);
		Outcome		failure;

		if (claim_build_request(job, &failure))
			claim_start(job);
		else
			inflight_release(job, now);
	}
	list_free(next_pages);
}

