/*-------------------------------------------------------------------------
 *
 * session.c
 *	  Under which role and which settings the extension's own SQL runs.
 *
 * A background worker connects as the bootstrap superuser, and
 * BackgroundWorkerInitializeConnection applies whatever ALTER DATABASE and
 * ALTER ROLE ... IN DATABASE set for that database, search_path included:
 * a database owner could otherwise aim the workers' unqualified names and
 * operators (now(), int * interval) at functions of their own, run with
 * superuser rights.  So each worker pins the settings its SQL depends on
 * at PGC_S_OVERRIDE, above any of those, and runs every transaction's SQL
 * as the non-superuser role withdraw_worker (granted exactly the
 * extension's tables and the functions that open credentials), in a
 * security-restricted context, as VACUUM and CREATE INDEX run user code
 * as a table's owner.  The switch is per transaction because a worker
 * starts before CREATE EXTENSION has created that role, and because an
 * abort restores the previous user by itself.
 *
 * C code that runs SQL in someone else's session (the triggers) pins
 * search_path around its SPI calls instead; SECURITY DEFINER functions pin
 * it with SET search_path in their declaration (0.3.0--0.4.0).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"

#include "session.h"

/*
 * The settings the workers' SQL reads, pinned to the values it was written
 * for.  Planner and memory settings stay the DBA's to tune.
 */
static const struct
{
	const char *name;
	const char *value;
}			pinned_settings[] =
{
	{"search_path", WITHDRAW_SEARCH_PATH},
	/* a worker's statement is never cut short: a cut claim is a lost wake-up */
	{"statement_timeout", "0"},
	{"lock_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
	{"default_transaction_read_only", "off"},
	{"default_transaction_isolation", "read committed"},
	{"row_security", "on"},
	/* text forms of dates, intervals and bytes that the C code reads back */
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"bytea_output", "hex"},
	{"extra_float_digits", "1"},

	/*
	 * Only short statements run here: compiling one never pays, and a claim
	 * planned with sequential scans disabled (spi_util.c) costs enough on
	 * paper to be compiled every time.
	 */
	{"jit", "off"},
};

void
session_pin_worker_settings(void)
{
	for (int i = 0; i < lengthof(pinned_settings); i++)
		SetConfigOption(pinned_settings[i].name, pinned_settings[i].value,
						PGC_SUSET, PGC_S_OVERRIDE);
}

static bool role_entered = false;
static Oid	saved_user = InvalidOid;
static int	saved_context = 0;

bool
session_enter_worker_role(void)
{
	Oid			role = get_role_oid(WITHDRAW_WORKER_ROLE, true);

	role_entered = false;
	if (!OidIsValid(role))
		return false;
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(role, saved_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	role_entered = true;
	return true;
}

void
session_leave_worker_role(void)
{
	if (role_entered)
		SetUserIdAndSecContext(saved_user, saved_context);
	role_entered = false;
}

int
session_pin_search_path(void)
{
	int			nestlevel = NewGUCNestLevel();

	/* in a worker the override set above wins and this changes nothing */
	(void) set_config_option("search_path", WITHDRAW_SEARCH_PATH, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

void
session_unpin_search_path(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}
