/*-------------------------------------------------------------------------
 *
 * state.c
 *	  The states of a withdrawal: one name table for the C enum, and the
 *	  check that withdraw.state_transition names the same states.
 *
 * C code names states only through WithdrawState; their text lives here
 * alone.  The table of allowed transitions belongs to the DBA, who may
 * change its rows (triggers.c follows them), but a state the C code does
 * not know, or one it uses that the table never mentions, means the
 * library and the schema disagree: the workers then send nothing and say
 * why (readiness.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "lib/stringinfo.h"

#include "spi_util.h"
#include "state.h"

static const char *const state_names[WITHDRAW_STATES] = {
	[STATE_QUEUED] = "queued",
	[STATE_SENDING] = "sending",
	[STATE_SUBMITTED] = "submitted",
	[STATE_PROCESSING] = "processing",
	[STATE_REVIEW] = "review",
	[STATE_UNKNOWN] = "unknown",
	[STATE_AWAITING_APPROVAL] = "awaiting_approval",
	[STATE_HELD] = "held",
	[STATE_SUCCEEDED] = "succeeded",
	[STATE_FAILED] = "failed",
	[STATE_REJECTED] = "rejected",
	[STATE_CANCELLED] = "cancelled",
	[STATE_EXPIRED] = "expired",
};

/* The state's name in the tables; NULL for STATE_NONE. */
const char *
state_name(WithdrawState state)
{
	if (state == STATE_NONE)
		return NULL;
	Assert(state >= 0 && state < WITHDRAW_STATES);
	return state_names[state];
}

/* The state of a name, if C knows it. */
bool
state_lookup(const char *name, WithdrawState *state)
{
	for (int i = 0; i < WITHDRAW_STATES; i++)
		if (name != NULL && strcmp(state_names[i], name) == 0)
		{
			*state = (WithdrawState) i;
			return true;
		}
	return false;
}

/* The state of a name (NULL: STATE_NONE); a name C does not know is an ERROR. */
WithdrawState
state_of_name(const char *name)
{
	WithdrawState state;

	if (name == NULL)
		return STATE_NONE;
	if (state_lookup(name, &state))
		return state;
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("unknown withdrawal state \"%s\"", name),
			 errhint("This library knows the states of its own version of the extension.")));
	return STATE_NONE;			/* keep the compiler quiet */
}

/* Does a withdrawal in this state never change again?  (the enum's last five) */
bool
state_is_final(WithdrawState state)
{
	return state >= STATE_SUCCEEDED;
}

/*
 * Does withdraw.state_transition name exactly the states C knows?  NULL
 * when it does, else what differs.  Runs SQL: inside a transaction with
 * SPI connected.
 */
char *
state_machine_problem(void)
{
	static SPIPlanPtr plan = NULL;
	bool		mentioned[WITHDRAW_STATES] = {false};
	StringInfoData problem;

	if (plan == NULL)
		plan = spi_prepare_kept("SELECT from_state AS s FROM withdraw.state_transition"
								" UNION SELECT to_state FROM withdraw.state_transition",
								0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading withdraw.state_transition failed");
	initStringInfo(&problem);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		WithdrawState state;

		if (state_lookup(name, &state))
			mentioned[state] = true;
		else
			appendStringInfo(&problem, "%sstate \"%s\" of withdraw.state_transition is unknown to this library",
							 problem.len > 0 ? "; " : "", name);
	}
	for (int i = 0; i < WITHDRAW_STATES; i++)
		if (!mentioned[i])
			appendStringInfo(&problem, "%sstate \"%s\" is in no row of withdraw.state_transition",
							 problem.len > 0 ? "; " : "", state_names[i]);
	return problem.len > 0 ? problem.data : NULL;
}
