/*-------------------------------------------------------------------------
 *
 * triggers.c
 *	  The triggers of the extension's tables, in C.  On withdraw.withdrawal:
 *	  check_transition (per row)
 *	  refuses a change of state that withdraw.state_transition does not
 *	  list (and stamps finished_at when a withdrawal ends), and
 *	  record_transitions (per statement) writes the changes to
 *	  withdraw.event and announces each on channel withdraw_status.
 *
 * They fire for every change of state, two or three per withdrawal, mostly
 * inside the worker's batched UPDATEs, so they are in C and read nothing
 * per row: the allowed transitions are read from withdraw.state_transition
 * into a small array and kept until the table changes
 * (state_machine_changed, a trigger on it, sends a relcache invalidation
 * that every backend hears), and the notifications are queued with
 * Async_Notify.  The events of one UPDATE are one INSERT from its
 * transition tables, not one INSERT per changed row.
 * record_transition, the row trigger of 0.2.0, stays for databases not
 * yet updated to 0.3.0.
 *
 * check_withdrawal_ids (per statement, on withdraw.attempt and
 * withdraw.event) stands in for the foreign keys those history tables had
 * on withdraw.withdrawal: a foreign key runs one query per inserted row
 * (three per withdrawal sent); this checks all the rows of a statement
 * with one anti-join.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "session.h"
#include "spi_util.h"
#include "state.h"
#include "triggers.h"

PG_FUNCTION_INFO_V1(withdraw_check_transition);
PG_FUNCTION_INFO_V1(withdraw_record_transition);
PG_FUNCTION_INFO_V1(withdraw_record_transitions);
PG_FUNCTION_INFO_V1(withdraw_check_withdrawal_ids);
PG_FUNCTION_INFO_V1(withdraw_state_machine_changed);

/*
 * The state machine as last read, current while transitions_valid: by the
 * states C knows (state.c); a row naming another state allows nothing here
 * (the workers refuse to run with one: readiness.c).
 */
static bool allowed[WITHDRAW_STATES][WITHDRAW_STATES];
static bool transitions_valid = false;
static uint64 transitions_invalidations = 0;	/* changes heard so far */
static Oid	transitions_relid = InvalidOid;
static bool transitions_callback_registered = false;
static SPIPlanPtr transitions_plan = NULL;
static SPIPlanPtr event_plan = NULL;
static SPIPlanPtr events_plan = NULL;

/* A relcache invalidation of withdraw.state_transition (or of everything). */
static void
transitions_invalidated(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == transitions_relid)
	{
		transitions_valid = false;
		transitions_invalidations++;
	}
}

/* Reads withdraw.state_transition unless the copy is current (a DBA may change it). */
static void
load_transitions(void)
{
	int			nestlevel;
	uint64		heard;

	if (transitions_valid)
		return;
	if (!transitions_callback_registered)
	{
		CacheRegisterRelcacheCallback(transitions_invalidated, (Datum) 0);
		transitions_callback_registered = true;
	}
	transitions_relid = get_relname_relid("state_transition", get_namespace_oid("withdraw", false));
	heard = transitions_invalidations;
	SPI_connect();
	nestlevel = session_pin_search_path();
	if (transitions_plan == NULL)
		transitions_plan = spi_prepare_kept("SELECT from_state, to_state FROM withdraw.state_transition",
											0, NULL);
	if (SPI_execute_plan(transitions_plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading withdraw.state_transition failed");
	memset(allowed, 0, sizeof(allowed));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		WithdrawState from;
		WithdrawState to;

		if (state_lookup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1), &from) &&
			state_lookup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2), &to))
			allowed[from][to] = true;
	}
	session_unpin_search_path(nestlevel);
	SPI_finish();
	/* a change heard while reading (or an error) leaves it to be read again */
	transitions_valid = transitions_invalidations == heard;
}

/*
 * AFTER INSERT, UPDATE, DELETE or TRUNCATE on withdraw.state_transition,
 * per statement: every backend reads the state machine again (at its next
 * transaction; this one at its next command).
 */
Datum
withdraw_state_machine_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "state_machine_changed must be called as a trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

/* Is from -> to a row of withdraw.state_transition?  (callbacks ask too) */
bool
transition_allowed(const char *from, const char *to)
{
	WithdrawState f;
	WithdrawState t;

	load_transitions();
	return state_lookup(from, &f) && state_lookup(to, &t) && allowed[f][t];
}

static char *
column_text(HeapTuple tuple, TupleDesc desc, const char *name)
{
	int			attno = SPI_fnumber(desc, name);

	if (attno <= 0)
		elog(ERROR, "withdraw.withdrawal has no column \"%s\"", name);
	return SPI_getvalue(tuple, desc, attno);
}

static TriggerData *
trigger_data(FunctionCallInfo fcinfo, const char *name)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "%s must be called as a row trigger on UPDATE", name);
	return trigdata;
}

/*
 * BEFORE UPDATE OF state: the change must be listed.  A final state stamps
 * finished_at and finished_state (the index of finished withdrawals sorts
 * by finished_state, since no index may name state: see the withdrawal
 * indexes in the install script) and ends the polls; leaving a final state
 * (withdraw_retry's failed to queued, or a change a DBA added to the state
 * machine) clears both, so that the row is open again for the claims'
 * indexes, which hold the rows with finished_at NULL.
 */
Datum
withdraw_check_transition(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = trigger_data(fcinfo, "check_transition");
	TupleDesc	desc = trigdata->tg_relation->rd_att;
	HeapTuple	old = trigdata->tg_trigtuple;
	HeapTuple	new = trigdata->tg_newtuple;
	char	   *from = column_text(old, desc, "state");
	char	   *to = column_text(new, desc, "state");
	bool		ends = state_is_final(state_of_name(to));

	if (!transition_allowed(from, to))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("withdrawal %s cannot change from state %s to state %s",
						column_text(old, desc, "id"), from, to),
				 errhint("The allowed changes are listed in withdraw.state_transition.")));
	if (ends || state_is_final(state_of_name(from)))
	{
		int			cols[3];
		Datum		values[3];
		bool		nulls[3];
		int			n = 0;
		int			finished_state = SPI_fnumber(desc, "finished_state");

		cols[n] = SPI_fnumber(desc, "finished_at");
		values[n] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		nulls[n++] = !ends;
		/* absent before 0.6.0: this library may run under an older schema until its update */
		if (finished_state > 0)
		{
			cols[n] = finished_state;
			values[n] = CStringGetTextDatum(to);
			nulls[n++] = !ends;
		}
		/* a row that leaves a final state keeps the next poll it was given */
		if (ends)
		{
			cols[n] = SPI_fnumber(desc, "next_poll_at");
			values[n] = (Datum) 0;
			nulls[n++] = true;
		}
		new = heap_modify_tuple_by_cols(new, desc, n, cols, values, nulls);
	}
	return PointerGetDatum(new);
}

/* a JSON string member, or null */
static void
json_member(StringInfo buf, const char *key, const char *value, bool quoted)
{
	if (buf->len > 1)
		appendStringInfoString(buf, ", ");
	escape_json(buf, key);
	appendStringInfoString(buf, " : ");
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else if (quoted)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, value);
}

/*
 * The notification of a change: {"id", "state", "previous_state",
 * "provider_status"} (json_build_object's layout, as the PL/pgSQL version
 * sent it).
 */
static void
notify_change(const char *id, const char *from, const char *to, const char *provider_status)
{
	StringInfoData payload;

	initStringInfo(&payload);
	appendStringInfoChar(&payload, '{');
	json_member(&payload, "id", id, false);
	json_member(&payload, "state", to, true);
	json_member(&payload, "previous_state", from, true);
	json_member(&payload, "provider_status", provider_status, true);
	appendStringInfoChar(&payload, '}');
	Async_Notify("withdraw_status", payload.data);
	pfree(payload.data);
}

/*
 * AFTER UPDATE, per statement, with the statement's transition tables
 * old_rows and new_rows: every change of state as an event, and as a
 * notification, in the order of the withdrawals' ids.
 */
Datum
withdraw_record_transitions(PG_FUNCTION_ARGS)
{
	int			nestlevel;
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		trigdata->tg_oldtable == NULL || trigdata->tg_newtable == NULL)
		elog(ERROR, "record_transitions must be called as a statement trigger on UPDATE"
			 " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows");
	if (tuplestore_tuple_count(trigdata->tg_newtable) == 0)
		return PointerGetDatum(NULL);

	SPI_connect();
	nestlevel = session_pin_search_path();
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "registering the transition tables failed");
	if (events_plan == NULL)
		events_plan = spi_prepare_kept("INSERT INTO withdraw.event"
									   " (withdrawal_id, from_state, to_state, provider_status, detail)"
									   " SELECT n.id, o.state, n.state, n.provider_status, n.last_error"
									   " FROM old_rows o JOIN new_rows n ON n.id = o.id"
									   " WHERE o.state IS DISTINCT FROM n.state ORDER BY n.id"
									   " RETURNING withdrawal_id, from_state, to_state, provider_status",
									   0, NULL);
	if (SPI_execute_plan(events_plan, NULL, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "recording the changes of state failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		notify_change(SPI_getvalue(tuple, desc, 1), SPI_getvalue(tuple, desc, 2),
					  SPI_getvalue(tuple, desc, 3), SPI_getvalue(tuple, desc, 4));
	}
	session_unpin_search_path(nestlevel);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/*
 * AFTER INSERT or UPDATE, per statement, with the statement's new rows as
 * new_rows: every withdrawal_id must name a withdrawal, as the foreign key
 * did (see the head of this file).  The plan is kept per table, by name
 * (which outlives a DROP and CREATE EXTENSION): the transition table of
 * each has its own columns.
 */
Datum
withdraw_check_withdrawal_ids(PG_FUNCTION_ARGS)
{
	int			nestlevel;
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	static NameData plan_tables[2];
	static SPIPlanPtr plans[2] = {NULL, NULL};
	const char *table;
	int			slot;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		trigdata->tg_newtable == NULL)
		elog(ERROR, "check_withdrawal_ids must be called as a statement trigger"
			 " REFERENCING NEW TABLE AS new_rows");
	if (tuplestore_tuple_count(trigdata->tg_newtable) == 0)
		return PointerGetDatum(NULL);

	table = RelationGetRelationName(trigdata->tg_relation);
	for (slot = 0; slot < lengthof(plans); slot++)
		if (plans[slot] == NULL || strcmp(NameStr(plan_tables[slot]), table) == 0)
			break;
	if (slot == lengthof(plans))
		elog(ERROR, "check_withdrawal_ids serves two tables at most");

	SPI_connect();
	nestlevel = session_pin_search_path();
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "registering the transition table failed");
	if (plans[slot] == NULL)
	{
		plans[slot] = spi_prepare_kept("SELECT n.withdrawal_id FROM new_rows n"
									   " WHERE n.withdrawal_id IS NOT NULL AND NOT EXISTS"
									   "  (SELECT FROM withdraw.withdrawal w WHERE w.id = n.withdrawal_id)"
									   " LIMIT 1", 0, NULL);
		namestrcpy(&plan_tables[slot], table);
	}
	/* one lookup in the primary key per row, whatever the statistics say */
	if (spi_execute_plan_indexed(plans[slot], NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "checking the withdrawal ids failed");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("insert or update on table \"%s\" names withdrawal %s, which does not exist",
						RelationGetRelationName(trigdata->tg_relation),
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errdetail("The history of a withdrawal is kept only while the withdrawal exists.")));
	session_unpin_search_path(nestlevel);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/*
 * AFTER UPDATE OF state, per row: the trigger of 0.2.0 (see the head of
 * this file).
 */
Datum
withdraw_record_transition(PG_FUNCTION_ARGS)
{
	int			nestlevel;
	TriggerData *trigdata = trigger_data(fcinfo, "record_transition");
	TupleDesc	desc = trigdata->tg_relation->rd_att;
	HeapTuple	old = trigdata->tg_trigtuple;
	HeapTuple	new = trigdata->tg_newtuple;
	char	   *id = column_text(new, desc, "id");
	char	   *from = column_text(old, desc, "state");
	char	   *to = column_text(new, desc, "state");
	char	   *provider_status = column_text(new, desc, "provider_status");
	char	   *last_error = column_text(new, desc, "last_error");
	Datum		values[5];
	char		nulls[6] = "     ";

	SPI_connect();
	nestlevel = session_pin_search_path();
	if (event_plan == NULL)
	{
		Oid			types[5] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};

		event_plan = spi_prepare_kept("INSERT INTO withdraw.event"
									  " (withdrawal_id, from_state, to_state, provider_status, detail)"
									  " VALUES ($1, $2, $3, $4, $5)", 5, types);
	}
	values[0] = DirectFunctionCall1(int8in, CStringGetDatum(id));
	values[1] = CStringGetTextDatum(from);
	values[2] = CStringGetTextDatum(to);
	values[3] = spi_text_or_null(provider_status, &nulls[3]);
	values[4] = spi_text_or_null(last_error, &nulls[4]);
	if (SPI_execute_plan(event_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "recording the change of withdrawal %s failed", id);
	session_unpin_search_path(nestlevel);
	SPI_finish();
	notify_change(id, from, to, provider_status);
	return PointerGetDatum(NULL);
}
