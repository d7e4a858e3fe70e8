/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  The decisions that keep money safe: what an outcome does to a
 *	  withdrawal's state, when to retry, when to give up.
 *
 * The rules, in short:
 *	- an exchange that may have reached the provider makes the withdrawal
 *	  maybe_delivered; from then on it is never declared failed or rejected
 *	  without the provider's word: it goes to review instead;
 *	- retries reuse the stored idempotency key; a provider that says it knows
 *	  the key is asked for the status only (needs_reconcile);
 *	- retries back off exponentially with jitter, capped, and honour the
 *	  provider's own wait; after max_attempts the withdrawal is given up:
 *	  failed if nothing can have been delivered, review otherwise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "common/pg_prng.h"
#include "utils/timestamp.h"

#include "job.h"
#include "withdraw.h"

#define RECONCILE_FIRST_POLL_MS 500

/*
 * The account's settings: its options, else the provider's defaults, else
 * the server's settings.  Also the validation of those options: an
 * out-of-range value raises an ERROR naming the option.
 */
void
account_policy(const Provider *provider, Jsonb *options, AccountPolicy *policy)
{
	policy->create_interval_ms = account_option_int(options, "create_interval_ms",
													provider->default_create_interval_ms,
													0, 24 * 3600 * 1000);
	policy->polls_per_second = account_option_int(options, "polls_per_second",
												  provider->default_polls_per_second, 0, 100000);
	policy->poll_interval_ms = account_option_int(options, "poll_interval_ms",
												  withdraw_poll_interval_ms, 10, 24 * 3600 * 1000);
	policy->request_timeout_ms = account_option_int(options, "request_timeout_ms",
													withdraw_request_timeout_ms, 100, 600 * 1000);
	policy->max_attempts = account_option_int(options, "max_attempts",
											  withdraw_max_attempts, 1, 10000);
	policy->idempotency_window_ms = account_option_int(options, "idempotency_window_ms",
													   24 * 3600 * 1000, 0, INT_MAX);
	policy->reconcile_timeout_ms = account_option_int(options, "reconcile_timeout_ms",
													  3600 * 1000, 1000, INT_MAX);
	policy->deadline_ms = account_option_int(options, "deadline_ms",
											 24 * 3600 * 1000, 1000, INT_MAX);
	policy->max_in_flight = account_option_int(options, "max_in_flight",
											   16, 1, 10000);
	policy->sync_interval_ms = account_option_int(options, "sync_interval_ms",
												  60 * 1000, 100, INT_MAX);
	policy->status_batch_max = provider->status_batch && provider->status_batch->max > 1 &&
		(provider->status_batch->batches == NULL || provider->status_batch->batches(options))
		? provider->status_batch->max : 1;
}

/* No HTTP answer: what do we know? */
void
outcome_of_transport_failure(Job *job, HttpResponse *res, Outcome *out)
{
	memset(out, 0, sizeof(Outcome));
	out->message = pstrdup(res->error ? res->error : "no answer");
	if (job->kind == JOB_STATUS)
		out->kind = OUTCOME_NO_CHANGE;
	else
		out->kind = res->maybe_delivered ? OUTCOME_UNKNOWN : OUTCOME_NOT_DELIVERED;
}

/* exponential backoff with "equal jitter": half fixed, half random */
int64
retry_delay_ms(int attempts, int retry_after_ms)
{
	double		delay = withdraw_retry_base_ms;

	for (int i = 1; i < attempts && delay < withdraw_retry_max_ms; i++)
		delay *= 2;
	if (delay > withdraw_retry_max_ms)
		delay = withdraw_retry_max_ms;
	delay = delay / 2 + pg_prng_double(&pg_global_prng_state) * delay / 2;
	return Max((int64) delay, (int64) retry_after_ms);
}

static void
give_up(Job *job, bool maybe_delivered, Change *change, const char *why)
{
	change->state = maybe_delivered ? STATE_REVIEW : STATE_FAILED;
	change->last_error = psprintf("%s; gave up after %d attempts%s", why, job->attempts,
								  maybe_delivered ? " (an attempt may have reached the provider: check it there)" : "");
	change->retry_in_ms = -1;
	change->poll_in_ms = maybe_delivered ? 1000 : -1;	/* keep looking for it */
}

static void
decide_create(Job *job, const AccountPolicy *policy, Outcome *out, Change *change)
{
	bool		delivered = job->maybe_delivered;

	switch (out->kind)
	{
		case OUTCOME_SUBMITTED:
			change->state = STATE_SUBMITTED;
			change->provider_id = out->provider_id;
			change->poll_in_ms = policy->poll_interval_ms;
			change->last_error = NULL;
			change->outcome = "submitted";
			return;
		case OUTCOME_NOT_DELIVERED:
			change->outcome = "not delivered";
			if (job->attempts >= policy->max_attempts)
				give_up(job, delivered, change, out->message);
			else
			{
				change->state = delivered ? STATE_UNKNOWN : STATE_QUEUED;
				change->retry_in_ms = retry_delay_ms(job->attempts, out->retry_after_ms);
			}
			return;
		case OUTCOME_UNKNOWN:
			change->outcome = "unknown";
			change->maybe_delivered = true;
			if (job->attempts >= policy->max_attempts)
				give_up(job, true, change, out->message);
			else
			{
				change->state = STATE_UNKNOWN;
				change->retry_in_ms = retry_delay_ms(job->attempts, out->retry_after_ms);
			}
			return;
		case OUTCOME_RECONCILE:
			if (out->duplicate && !delivered)
			{
				/* a first send refused as a repeat: the key is someone else's */
				change->outcome = "duplicate";
				change->state = STATE_REVIEW;
				change->last_error = psprintf("%s: the provider already has this idempotency key, yet nothing this withdrawal sent before can have reached it; the key belongs to another request, a person must decide",
											  out->provider_status ? out->provider_status : "duplicate");
				return;
			}
			if (job->w.account->provider->build_status == NULL)
			{
				/* the provider has it and will notify; there is nothing to poll */
				change->outcome = "duplicate";
				change->state = STATE_SUBMITTED;
				change->maybe_delivered = true;
				return;
			}
			change->outcome = "reconcile";
			change->state = STATE_UNKNOWN;
			change->maybe_delivered = true;
			change->needs_reconcile = true;
			change->poll_in_ms = Max(RECONCILE_FIRST_POLL_MS, out->retry_after_ms);
			return;
		case OUTCOME_REJECTED:
			change->outcome = "rejected";
			if (delivered)
			{
				change->state = STATE_REVIEW;
				change->last_error = psprintf("%s (an earlier attempt may have reached the provider: check it there)",
											  out->message);
				/* keep looking for it, as give_up does */
				change->poll_in_ms = 1000;
			}
			else
				change->state = STATE_REJECTED;
			return;
		case OUTCOME_STATE:
		case OUTCOME_NO_CHANGE:
			/* a create exchange answered like a status query: not expected */
			change->outcome = "unknown";
			change->state = STATE_UNKNOWN;
			change->maybe_delivered = true;
			change->retry_in_ms = retry_delay_ms(job->attempts, out->retry_after_ms);
			return;
	}
}

/*
 * A status answer found a record under our key or id, but for another
 * amount or destination: the key was used by another request (reused,
 * or the duplicate of another account).  Never adopt it: a person
 * decides.  Returns true when the change is made so.
 */
static bool
record_is_another(Job *job, Outcome *out, Change *change)
{
	char	   *why = NULL;

	if (out->record_amount != NULL && !decimal_equal(out->record_amount, job->w.amount))
		why = psprintf("the provider's record is for %s, not %s", out->record_amount, job->w.amount);
	else if (out->record_destination != NULL && job->w.destination != NULL &&
			 strcmp(out->record_destination, job->w.destination) != 0)
		why = psprintf("the provider's record goes to \"%s\", not \"%s\"",
					   out->record_destination, job->w.destination);
	if (why == NULL)
		return false;
	change->outcome = "status";
	change->state = STATE_REVIEW;
	change->needs_reconcile = false;
	change->provider_id = NULL;
	change->details = NULL;
	change->poll_in_ms = -1;
	change->last_error = psprintf("%s: the key belongs to another request", why);
	return true;
}

static void
decide_status(Job *job, const AccountPolicy *policy, Outcome *out, Change *change)
{
	change->state = job->state;
	change->poll_in_ms = Max(policy->poll_interval_ms, out->retry_after_ms);
	change->needs_reconcile = job->state == STATE_UNKNOWN;

	if (out->kind == OUTCOME_STATE && record_is_another(job, out, change))
		return;
	if (out->kind == OUTCOME_STATE)
	{
		change->outcome = "status";
		change->state = out->state;
		change->provider_id = out->provider_id;
		change->needs_reconcile = false;
		if (state_is_final(change->state))
			change->poll_in_ms = -1;
		return;
	}

	change->outcome = "no change";
	/* a poll that learned nothing leaves the reason of a review for a person */
	if (job->state == STATE_REVIEW)
		change->last_error = NULL;
	if (out->next_cursor != NULL)
	{
		/* the search of the provider's list goes on at its next page */
		change->reconcile_cursor = out->next_cursor;
		change->poll_in_ms = Max(RECONCILE_FIRST_POLL_MS / 5, out->retry_after_ms);
		return;
	}
	/* a withdrawal we cannot find at the provider goes to a person in time */
	if (job->state == STATE_UNKNOWN && job->w.first_sent_at != 0 &&
		TimestampDifferenceExceeds(job->w.first_sent_at, GetCurrentTimestamp(),
								   policy->reconcile_timeout_ms))
	{
		change->state = STATE_REVIEW;
		change->needs_reconcile = false;
		change->last_error = psprintf("not found at the provider within %d s of sending: %s",
									  policy->reconcile_timeout_ms / 1000,
									  out->message ? out->message : "no answer");
	}
}

/*
 * A provider that answers for many withdrawals in one call gets its polls
 * on a shared beat: each delay is stretched to the next multiple of the
 * poll interval since the epoch, so the account's polls fall due together
 * and go out as full batches instead of one small batch per create.
 */
static void
align_poll(const AccountPolicy *policy, Change *change)
{
	int64		beat = policy->poll_interval_ms;
	int64		due;

	if (change->poll_in_ms <= 0 || beat <= 0 || policy->status_batch_max <= 1)
		return;
	due = epoch_ms(GetCurrentTimestamp()) + change->poll_in_ms;
	change->poll_in_ms += (beat - due % beat) % beat;
}

/*
 * Turns an outcome into the change of the row.  last_error starts as the
 * outcome's message; decide_* may replace it.
 */
void
decide_change(Job *job, const AccountPolicy *policy, Outcome *out, Change *change)
{
	memset(change, 0, sizeof(Change));
	change->provider_status = out->provider_status;
	change->details = out->details;
	change->last_error = out->message;
	change->retry_in_ms = -1;
	change->poll_in_ms = -1;
	change->maybe_delivered = job->maybe_delivered;

	if (job->kind == JOB_CREATE)
		decide_create(job, policy, out, change);
	else
		decide_status(job, policy, out, change);
	align_poll(policy, change);
	/* a provider without a status query is settled by its notifications,
	 * until its deadline for them when it has one */
	if (job->w.account->provider->build_status == NULL)
		change->poll_in_ms = (job->w.account->provider->notices != NULL &&
							  (change->state == STATE_SUBMITTED || change->state == STATE_PROCESSING))
			? job->w.account->provider->notices->deadline_ms(job->w.account->options) : -1;
}
