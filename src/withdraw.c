/*-------------------------------------------------------------------------
 *
 * withdraw.c
 *	  Module entry point: defines the extension's settings and starts the
 *	  pieces that must exist from postmaster start (shared memory and the
 *	  background worker).  Nothing else lives here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "accounts.h"
#include "http.h"
#include "withdraw.h"

PG_MODULE_MAGIC;

char	   *withdraw_database_name = NULL;
int			withdraw_max_in_flight = 64;
int			withdraw_workers = 1;
int			withdraw_naptime_ms = 1000;
int			withdraw_poll_interval_ms = 10000;
int			withdraw_request_timeout_ms = 30000;
int			withdraw_connect_timeout_ms = 5000;
int			withdraw_retry_base_ms = 1000;
int			withdraw_retry_max_ms = 300000;
int			withdraw_max_attempts = 20;
char	   *withdraw_ca_file = NULL;
char	   *withdraw_secrets_key_file = NULL;
char	   *withdraw_secrets_previous_key_file = NULL;
bool		withdraw_allow_http = false;
int			withdraw_retention_s = 30 * 24 * 3600;
int			withdraw_retention_batch = 1000;
int			withdraw_quarantine_after = 3;
bool		withdraw_synchronous_outcomes = true;

/* network guard (issue 14): where requests may go */
char	   *withdraw_allowed_hosts = NULL;
bool		withdraw_allow_private_addresses = false;
char	   *withdraw_proxy = NULL;

void		_PG_init(void);

/*
 * withdraw.allowed_hosts: a comma-separated list of host names or IP
 * literals, each optionally starting with "*." (any host below that
 * domain, not the domain itself).  A typo must fail at reload, not turn
 * into a silent refusal of every request, so the syntax is checked here.
 */
static bool
check_allowed_hosts(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;
	const char *start;
	const char *end;

	if (p == NULL || strspn(p, " \t") == strlen(p))
		return true;			/* the empty list: no limit */
	while (http_host_list_next(&p, &start, &end))
	{
		const char *c;

		if (end == start)
		{
			GUC_check_errdetail("An entry of the list is empty.");
			return false;
		}
		c = start;
		if (end - c > 2 && c[0] == '*' && c[1] == '.')
			c += 2;
		for (; c < end; c++)
			if (!isalnum((unsigned char) *c) && *c != '.' && *c != '-' && *c != ':' &&
				*c != '[' && *c != ']' && *c != '_')
			{
				GUC_check_errdetail("\"%.*s\" is not a host name: use names, IP addresses or \"*.domain\", separated by commas.",
									(int) (end - start), start);
				return false;
			}
	}
	return true;
}

static void
define_settings(void)
{
	DefineCustomStringVariable("withdraw.database_name",
							   "Database in which the withdraw worker runs.",
							   "The extension must be created in this database.",
							   &withdraw_database_name,
							   "postgres",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.workers",
							"Number of background workers that send withdrawals.",
							"Accounts without rate limits are shared among them by withdrawal; "
							"a rate-limited account is served by one of them.",
							&withdraw_workers,
							1, 1, WITHDRAW_MAX_WORKERS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.max_in_flight",
							"Maximum number of provider requests in flight at once.",
							"Counted over all workers: each has its share.",
							&withdraw_max_in_flight,
							64, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.naptime",
							"How often the worker looks for due retries and status polls when nothing wakes it.",
							"New withdrawals wake the worker at commit; this tick only drives scheduled work.",
							&withdraw_naptime_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.poll_interval",
							"Default interval between status polls of a submitted withdrawal.",
							"An account's option poll_interval_ms overrides it.",
							&withdraw_poll_interval_ms,
							10000, 10, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.request_timeout",
							"Timeout of one HTTP exchange with a provider.",
							"An account's option request_timeout_ms overrides it.",
							&withdraw_request_timeout_ms,
							30000, 100, 600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.connect_timeout",
							"Timeout for establishing a connection to a provider.",
							NULL,
							&withdraw_connect_timeout_ms,
							5000, 100, 600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.retry_base_delay",
							"First delay of the exponential retry backoff.",
							"Each retry doubles the delay, with jitter, up to withdraw.retry_max_delay.",
							&withdraw_retry_base_ms,
							1000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.retry_max_delay",
							"Largest delay between two retries of one withdrawal.",
							NULL,
							&withdraw_retry_max_ms,
							300000, 1, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.max_attempts",
							"Attempts after which a withdrawal is given up.",
							"A withdrawal that may have reached the provider goes to review instead of failed.",
							&withdraw_max_attempts,
							20, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("withdraw.ca_file",
							   "File of certificate authorities used to verify providers' TLS certificates.",
							   "Empty means the system's default trust store.",
							   &withdraw_ca_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("withdraw.secrets_key_file",
							   "File of the 256-bit key that seals account credentials at rest.",
							   "64 hex digits, outside the data directory, readable by the server's owner only.",
							   &withdraw_secrets_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("withdraw.secrets_previous_key_file",
							   "File of the key credentials were sealed with before a rotation.",
							   "Set during a rotation, until withdraw_rotate_secrets() has re-sealed every account.",
							   &withdraw_secrets_previous_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("withdraw.allow_http",
							 "Allows accounts whose base URL uses plain http.",
							 "Only for tests against local mock providers: real providers must be reached over https.",
							 &withdraw_allow_http,
							 false,
							 PGC_SIGHUP,
							 GUC_SUPERUSER_ONLY,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.retention",
							"Age after which attempts and events are deleted.",
							"Withdrawals themselves are never deleted. 0 keeps everything.",
							&withdraw_retention_s,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdraw.retention_batch",
							"Rows of each history table deleted per pruning transaction.",
							"Small batches keep pruning from competing with sending.",
							&withdraw_retention_batch,
							1000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	/* network guard (issue 14): where requests may go; see http.c */
	DefineCustomStringVariable("withdraw.allowed_hosts",
							   "Provider hosts that accounts may name and requests may go to.",
							   "Comma-separated host names or IP addresses; \"*.example.com\" allows any host below "
							   "example.com. Empty means no limit; production should list its providers.",
							   &withdraw_allowed_hosts,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_allowed_hosts, NULL, NULL);

	DefineCustomBoolVariable("withdraw.allow_private_addresses",
							 "Allows requests to loopback, private, link-local and other non-public addresses.",
							 "Checked on the address a host name resolves to, before connecting. "
							 "Only for tests against local mock providers.",
							 &withdraw_allow_private_addresses,
							 false,
							 PGC_SIGHUP,
							 GUC_SUPERUSER_ONLY,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("withdraw.proxy",
							   "HTTP(S) proxy through which every provider request goes.",
							   "Empty means none: proxy variables of the server's environment are ignored.",
							   &withdraw_proxy,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	/* poison answers: what keeps failing is set aside for a person */
	DefineCustomIntVariable("withdraw.quarantine_after",
							"Failed handlings of one withdrawal's answer before it goes to review.",
							"A handling fails when reading the answer raises an error or the worker "
							"stops while reading it; the count restarts at every answer read normally. "
							"At least 2: the first stop of a worker counts against every withdrawal in flight.",
							&withdraw_quarantine_after,
							3, 2, 100,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	/* the commits of outcomes: see record.c, record_some */
	DefineCustomBoolVariable("withdraw.synchronous_outcomes",
							 "Whether the workers' commits of answers wait for the WAL flush.",
							 "off: the transaction that records answers commits as with synchronous_commit "
							 "off, and the next claim's commit makes it durable.  A crash or failover "
							 "can then forget answers already received; those withdrawals are found "
							 "in sending, become unknown and are reconciled under their key, as after "
							 "a crash before the commit.  The commit of a claim always waits.",
							 &withdraw_synchronous_outcomes,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("withdraw");
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("withdraw must be loaded via shared_preload_libraries"),
				 errhint("Add withdraw to shared_preload_libraries in postgresql.conf and restart the server.")));

	if (IsBinaryUpgrade)
		return;

	define_settings();
	AccountsLogInit();
	WithdrawShmemInit();
	WithdrawWorkerRegister();
}
