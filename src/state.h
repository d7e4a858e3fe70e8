/*-------------------------------------------------------------------------
 *
 * state.h
 *	  The states of a withdrawal, as C knows them (state.c).  The SQL
 *	  side is withdraw.withdrawal's CHECK constraint and the rows of
 *	  withdraw.state_transition; state_machine_problem() checks that the
 *	  two agree.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_STATE_H
#define WITHDRAW_STATE_H

typedef enum WithdrawState
{
	STATE_NONE = -1,			/* no state (a notice that names none) */
	STATE_QUEUED = 0,			/* waiting to be sent */
	STATE_SENDING,				/* claimed: its create is in flight */
	STATE_SUBMITTED,			/* the provider took it */
	STATE_PROCESSING,			/* the provider is paying it */
	STATE_REVIEW,				/* held for a person */
	STATE_UNKNOWN,				/* may or may not have reached the provider */
	STATE_AWAITING_APPROVAL,	/* above its account's threshold: not sent
								 * until approved (the payout desk) */
	STATE_HELD,					/* held by an operator: not sent until released */
	STATE_SUCCEEDED,			/* paid: final */
	STATE_FAILED,				/* not paid: final */
	STATE_REJECTED,				/* refused by the provider: final */
	STATE_CANCELLED,			/* cancelled before it was paid: final */
	STATE_EXPIRED				/* lapsed, at the provider or unapproved: final */
} WithdrawState;

#define WITHDRAW_STATES (STATE_EXPIRED + 1)

extern const char *state_name(WithdrawState state);
extern bool state_lookup(const char *name, WithdrawState *state);
extern WithdrawState state_of_name(const char *name);
extern bool state_is_final(WithdrawState state);
extern char *state_machine_problem(void);

#endif							/* WITHDRAW_STATE_H */
