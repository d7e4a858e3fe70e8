/*-------------------------------------------------------------------------
 *
 * accounts.c
 *	  withdraw_account_create/update/drop: the admin's SQL interface to
 *	  provider accounts.
 *
 * The statements that call these functions carry credentials, so every
 * error raised here hides the statement from the server log
 * (errhidestmt), and no message ever quotes a credential value.  Two
 * layers make sure no path can forget: the SQL-callable functions that
 * take credentials run their bodies under hiding_statement(), which
 * re-throws any error with the statement hidden, whatever raised it (an
 * option check, SPI, OpenSSL, an out-of-memory); and a log hook hides the
 * statement, the detail and the context of any message logged while the
 * statement's text (or the prepared statement it executes, or the error's
 * context) names a function or table that carries credentials,
 * which covers errors raised before such a function runs (a malformed
 * jsonb literal is parsed before the call, and its error context quotes
 * the literal) or after it returned.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "commands/prepare.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/jsonb.h"

#include "job.h"
#include "jsonutil.h"
#include "amount_limits.h"
#include "accounts.h"
#include "desk.h"
#include "http.h"
#include "secrets.h"
#include "providers/provider.h"
#include "withdraw.h"

PG_FUNCTION_INFO_V1(withdraw_account_create);
PG_FUNCTION_INFO_V1(withdraw_account_update);
PG_FUNCTION_INFO_V1(withdraw_account_drop);

/* options every account understands, whatever its provider */
static const char *const generic_option_keys[] = {
	"create_interval_ms", "polls_per_second", "poll_interval_ms", "request_timeout_ms",
	"max_attempts", "idempotency_window_ms", "reconcile_timeout_ms", "deadline_ms",
	"max_in_flight", "sync_interval_ms", "limits",
	"approval", "allowlist", "stuck_after_ms",	/* the payout desk (desk.c) */
	NULL
};

#define account_error(code, ...) \
	ereport(ERROR, (errcode(code), errhidestmt(true), __VA_ARGS__))

static bool
key_in(const char *key, const char *const *list)
{
	for (; list && *list; list++)
		if (strcmp(*list, key) == 0)
			return true;
	return false;
}

static char *
required_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		account_error(ERRCODE_NULL_VALUE_NOT_ALLOWED,
					  errmsg("argument \"%s\" must not be null", name));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static void
check_name(const char *name)
{
	int			len = strlen(name);
	bool		ok = len >= 1 && len <= 63 && name[0] >= 'a' && name[0] <= 'z';

	for (int i = 0; ok && i < len; i++)
		ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
			name[i] == '_';
	if (!ok)
		account_error(ERRCODE_INVALID_PARAMETER_VALUE,
					  errmsg("invalid account name \"%s\"", name),
					  errhint("Use 1 to 63 lower-case letters, digits or underscores, starting with a letter."));
}

static void
check_base_url(const char *url)
{
	bool		https = strncmp(url, "https://", 8) == 0;
	bool		http = strncmp(url, "http://", 7) == 0;

	if (!https && !http)
		account_error(ERRCODE_INVALID_PARAMETER_VALUE,
					  errmsg("base_url must start with https://"));
	if (http && !withdraw_allow_http)
		account_error(ERRCODE_INVALID_PARAMETER_VALUE,
					  errmsg("base_url must use https"),
					  errhint("Plain http is refused unless withdraw.allow_http is on, which is meant for local test providers only."));
	if (strlen(url) > 2048 || strpbrk(url, " \t\r\n?#") != NULL ||
		!isalnum((unsigned char) url[https ? 8 : 7]))
		account_error(ERRCODE_INVALID_PARAMETER_VALUE,
					  errmsg("base_url must be a URL with a host and without spaces, query or fragment"));
}

/*
 * Where an account may point (issue 14, network guard): the base_url's host
 * must be in withdraw.allowed_hosts (when set), and a base_url that moves an
 * account to another scheme, host or port must come with credentials in the
 * same call.  Sealed credentials were given for one provider's host: carried
 * to another, the next request would hand them to whoever runs it.  (A
 * change of path on the same host keeps them.)  old_url is NULL at
 * creation.  The same checks on scheme and host run again at every send
 * (http.c), so a narrowed setting also stops existing accounts.
 */
static void
check_destination(const char *url, const char *old_url, bool credentials_given)
{
	char	   *scheme;
	char	   *host;
	int			port;
	char	   *old_scheme = "?";
	char	   *old_host = "?";
	int			old_port = 0;

	if (!http_url_origin(url, &scheme, &host, &port))
		account_error(ERRCODE_INVALID_PARAMETER_VALUE,
					  errmsg("base_url cannot be parsed as a URL"));
	if (!http_host_allowed(host))
		account_error(ERRCODE_INSUFFICIENT_PRIVILEGE,
					  errmsg("base_url host \"%s\" is not in withdraw.allowed_hosts", host),
					  errhint("A superuser adds provider hosts to withdraw.allowed_hosts in postgresql.conf and reloads."));
	if (old_url == NULL || credentials_given)
		return;
	if (!http_url_origin(old_url, &old_scheme, &old_host, &old_port) ||
		strcmp(scheme, old_scheme) != 0 || strcmp(host, old_host) != 0 || port != old_port)
		account_error(ERRCODE_INSUFFICIENT_PRIVILEGE,
					  errmsg("base_url moves the account to another host: its credentials must be given again"),
					  errdetail("The stored credentials were given for %s://%s:%d; they are not sent to %s://%s:%d.",
								old_scheme, old_host, old_port, scheme, host, port),
					  errhint("Pass the credentials for the new host in the same call: withdraw_account_update(name, base_url => ..., credentials => ...)."));
}

/* Every required key present as a non-empty string, and nothing else. */
static void
check_credentials(const Provider *provider, Jsonb *credentials)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;

	if (!JB_ROOT_IS_OBJECT(credentials) || JB_ROOT_IS_SCALAR(credentials))
		account_error(ERRCODE_INVALID_PARAMETER_VALUE,
					  errmsg("credentials must be a JSON object"));
	for (const char *const *k = provider->credential_keys; *k; k++)
	{
		if (!json_get(&credentials->root, *k, &v))
		{
			if (provider->check_credentials)
				continue;		/* the provider says which keys are needed */
			account_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  errmsg("%s credentials lack \"%s\"", provider->name, *k));
		}
		if (v.type != jbvString || v.val.string.len == 0)
			account_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  errmsg("%s credential \"%s\" must be a non-empty string", provider->name, *k));
	}
	it = JsonbIteratorInit(&credentials->root);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
		{
			char	   *key = pnstrdup(v.val.string.val, v.val.string.len);

			if (!key_in(key, provider->credential_keys))
				account_error(ERRCODE_INVALID_PARAMETER_VALUE,
							  errmsg("%s credentials have an unknown key", provider->name),
							  errdetail("The unknown key is \"%s\".", key),
							  errdetail_log("The key is not shown in the server log: a secret pasted as a key would be."));
		}
	}
	if (provider->check_credentials)
		provider->check_credentials(credentials);
}

static void
check_options(const Provider *provider, Jsonb *options)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;
	AccountPolicy policy;

	if (!JB_ROOT_IS_OBJECT(options) || JB_ROOT_IS_SCALAR(options))
		account_error(ERRCODE_INVALID_PARAMETER_VALUE,
					  errmsg("options must be a JSON object"));
	it = JsonbIteratorInit(&options->root);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
		{
			char	   *key = pnstrdup(v.val.string.val, v.val.string.len);

			if (!key_in(key, generic_option_keys) && !key_in(key, provider->option_keys))
				account_error(ERRCODE_INVALID_PARAMETER_VALUE,
							  errmsg("unknown option \"%s\" for a %s account", key, provider->name),
							  errhint("See the README's list of account options."));
		}
	}
	account_policy(provider, options, &policy);
	amount_limits_check_option(options);
	desk_check_options(options);
	if (provider->check_options)
		provider->check_options(options);
}

static void run(const char *sql, int nargs, Oid *types, Datum *values, int expected);

/* The pay_codes an account lists get their form rules fetched by the worker. */
static void
schedule_rules(const Provider *provider, Datum account_id, Jsonb *options)
{
	Oid			types[2] = {INT4OID, JSONBOID};
	Datum		values[2] = {account_id, JsonbPGetDatum(options)};

	if (provider->form_rules == NULL || options == NULL)
		return;
	run("INSERT INTO withdraw.form_rule AS r (account_id, rule_key, currency)"
		" SELECT $1, key, value FROM jsonb_each_text(coalesce($2->'pay_codes', '{}'))"
		" ON CONFLICT (account_id, rule_key) DO UPDATE SET currency = EXCLUDED.currency,"
		"  next_fetch_at = least(r.next_fetch_at, now())",
		2, types, values, SPI_OK_INSERT);
}

static void
run(const char *sql, int nargs, Oid *types, Datum *values, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc != expected)
		elog(ERROR, "account statement failed: %s", SPI_result_code_string(rc));
}

/* The account's id and provider, or an undefined_object error. */
static int32
find_account(const char *name, const Provider **provider)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	bool		isnull;

	run("SELECT id, provider FROM withdraw.account WHERE name = $1 FOR UPDATE",
		1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		account_error(ERRCODE_UNDEFINED_OBJECT,
					  errmsg("account \"%s\" does not exist", name));
	*provider = provider_lookup_or_error(SPI_getvalue(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 2));
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static Datum
account_create(PG_FUNCTION_ARGS)
{
	char	   *name = required_arg(fcinfo, 0, "name");
	char	   *provider_name = required_arg(fcinfo, 1, "provider");
	char	   *base_url = required_arg(fcinfo, 2, "base_url");
	Jsonb	   *credentials;
	Jsonb	   *options;
	const Provider *provider;
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, INT4OID};
	Datum		values[5];
	bool		isnull;

	if (PG_ARGISNULL(3))
		account_error(ERRCODE_NULL_VALUE_NOT_ALLOWED,
					  errmsg("argument \"credentials\" must not be null"));
	credentials = PG_GETARG_JSONB_P(3);
	options = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);

	check_name(name);
	provider = provider_lookup(provider_name);
	if (provider == NULL)
		account_error(ERRCODE_UNDEFINED_OBJECT,
					  errmsg("provider \"%s\" does not exist", provider_name),
					  errhint("Known providers: %s.", provider_names()));
	check_base_url(base_url);
	check_destination(base_url, NULL, true);
	check_credentials(provider, credentials);
	if (options)
		check_options(provider, options);

	SPI_connect();
	values[0] = CStringGetTextDatum(name);
	run("SELECT 1 FROM withdraw.account WHERE name = $1", 1, types, values, SPI_OK_SELECT);
	if (SPI_processed > 0)
		account_error(ERRCODE_DUPLICATE_OBJECT,
					  errmsg("account \"%s\" already exists", name),
					  errhint("Change it with withdraw_account_update."));

	values[1] = CStringGetTextDatum(provider_name);
	values[2] = CStringGetTextDatum(base_url);
	values[3] = JsonbPGetDatum(options ? options : DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))));
	run("INSERT INTO withdraw.account (name, provider, base_url, options)"
		" VALUES ($1, $2, $3, $4) RETURNING id", 4, types, values, SPI_OK_INSERT_RETURNING);
	values[4] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

	{
		Oid			stypes[4] = {INT4OID, BYTEAOID, TEXTOID, JSONBOID};
		Datum		svalues[4];
		char	   *key_id;

		svalues[3] = JsonbPGetDatum(credentials);
		svalues[0] = values[4];
		svalues[1] = PointerGetDatum(secrets_seal(DatumGetInt32(values[4]), credentials, &key_id));
		svalues[2] = CStringGetTextDatum(key_id);
		run("INSERT INTO withdraw.account_secret (account_id, sealed, key_id, credential_keys)"
			" VALUES ($1, $2, $3, ARRAY(SELECT jsonb_object_keys($4) ORDER BY 1))",
			4, stypes, svalues, SPI_OK_INSERT);
		/* a provider with a withdrawal list is synced on a schedule */
		if (provider->sync)
			run("INSERT INTO withdraw.sync_state (account_id) VALUES ($1)",
				1, stypes, svalues, SPI_OK_INSERT);
	}
	schedule_rules(provider, values[4], options);
	SPI_finish();
	PG_RETURN_VOID();
}

static Datum
account_update(PG_FUNCTION_ARGS)
{
	char	   *name = required_arg(fcinfo, 0, "name");
	const Provider *provider;
	int32		id;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];

	SPI_connect();
	id = find_account(name, &provider);
	values[0] = Int32GetDatum(id);

	if (!PG_ARGISNULL(1))
	{
		char	   *base_url = text_to_cstring(PG_GETARG_TEXT_PP(1));

		check_base_url(base_url);
		run("SELECT base_url FROM withdraw.account WHERE id = $1", 1, types, values, SPI_OK_SELECT);
		check_destination(base_url, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
						  !PG_ARGISNULL(2));
		values[1] = CStringGetTextDatum(base_url);
		run("UPDATE withdraw.account SET base_url = $2, updated_at = now() WHERE id = $1",
			2, types, values, SPI_OK_UPDATE);
	}
	if (!PG_ARGISNULL(2))
	{
		Jsonb	   *credentials = PG_GETARG_JSONB_P(2);

		Oid			stypes[4] = {INT4OID, BYTEAOID, TEXTOID, JSONBOID};
		Datum		svalues[4];
		char	   *key_id;

		check_credentials(provider, credentials);
		svalues[3] = JsonbPGetDatum(credentials);
		svalues[0] = values[0];
		svalues[1] = PointerGetDatum(secrets_seal(id, credentials, &key_id));
		svalues[2] = CStringGetTextDatum(key_id);
		run("UPDATE withdraw.account_secret SET credentials = NULL, sealed = $2, key_id = $3,"
			" credential_keys = ARRAY(SELECT jsonb_object_keys($4) ORDER BY 1)"
			" WHERE account_id = $1", 4, stypes, svalues, SPI_OK_UPDATE);
		run("UPDATE withdraw.account SET updated_at = now() WHERE id = $1",
			1, types, values, SPI_OK_UPDATE);
	}
	if (!PG_ARGISNULL(3))
	{
		Jsonb	   *options = PG_GETARG_JSONB_P(3);

		check_options(provider, options);
		types[1] = JSONBOID;
		values[1] = JsonbPGetDatum(options);
		run("UPDATE withdraw.account SET options = $2, updated_at = now() WHERE id = $1",
			2, types, values, SPI_OK_UPDATE);
		schedule_rules(provider, values[0], options);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
withdraw_account_drop(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const Provider *provider;
	Oid			types[1] = {INT4OID};
	Datum		values[1];

	SPI_connect();
	values[0] = Int32GetDatum(find_account(name, &provider));
	run("SELECT 1 FROM withdraw.withdrawal WHERE account_id = $1 LIMIT 1",
		1, types, values, SPI_OK_SELECT);
	if (SPI_processed > 0)
		account_error(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
					  errmsg("account \"%s\" has withdrawals and cannot be dropped", name),
					  errdetail("Its withdrawals and their history refer to it."),
					  errhint("Keep the account, or change its credentials with withdraw_account_update."));
	run("DELETE FROM withdraw.account WHERE id = $1", 1, types, values, SPI_OK_DELETE);
	SPI_finish();
	PG_RETURN_VOID();
}


/*
 * Runs an account function's body; any error it raises is re-thrown with
 * the statement hidden from the server log, since the statement holds
 * credentials.  Only for functions that re-throw: nothing here is undone
 * but the error state, and the transaction aborts as usual.
 */
static Datum
hiding_statement(PGFunction body, FunctionCallInfo fcinfo)
{
	MemoryContext caller_context = CurrentMemoryContext;
	volatile Datum result = (Datum) 0;

	PG_TRY();
	{
		result = body(fcinfo);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller_context);
		edata = CopyErrorData();
		FlushErrorState();
		edata->hide_stmt = true;
		ReThrowError(edata);
	}
	PG_END_TRY();
	return result;
}

Datum
withdraw_account_create(PG_FUNCTION_ARGS)
{
	return hiding_statement(account_create, fcinfo);
}

Datum
withdraw_account_update(PG_FUNCTION_ARGS)
{
	return hiding_statement(account_update, fcinfo);
}

/*
 * Names whose presence in a statement's text means the statement may carry
 * credentials: the account functions, the test-vector functions that take
 * a secret, and the table of secrets itself (matched case-insensitively,
 * so quoting or a schema prefix does not hide them).
 */
static const char *const credential_marks[] = {
	"withdraw_account_create", "withdraw_account_update", "_zoomex_signature",
	"_p99_signature", "_ccpayment_signature", "_fiat_gateway_signature",
	"_envelope_seal",
	/* from here on: statements' text only, not errors' contexts (see below) */
	"account_secret", "_credentials", NULL
};
#define CALL_MARKS 7

static emit_log_hook_type prev_emit_log_hook = NULL;

static bool
names_marks(const char *text, int nmarks)
{
	for (const char *p = text; *p; p++)
		for (int m = 0; m < nmarks && credential_marks[m]; m++)
			if (pg_strncasecmp(p, credential_marks[m], strlen(credential_marks[m])) == 0)
				return true;
	return false;
}

static bool
names_credentials(const char *text)
{
	return names_marks(text, lengthof(credential_marks));
}

/*
 * An error's context or internal query quotes SQL text: the calls of
 * functions that take credentials, with their literals, when a PL/pgSQL
 * body holds them; but also the extension's own queries of
 * withdraw.account_secret, which hold parameters, not values, and whose
 * errors keep their context.
 */
static bool
quotes_credential_call(const char *text)
{
	return names_marks(text, CALL_MARKS);
}

static bool
identifier_char(char c)
{
	return isalnum((unsigned char) c) || c == '_' || IS_HIGHBIT_SET(c);
}

/*
 * Does the query EXECUTE a prepared statement whose text names
 * credentials?  EXECUTE's own text holds the arguments (a malformed jsonb
 * literal among them) but not the call.  Looks each "EXECUTE name" up
 * without raising (this runs inside the log hook).
 */
static bool
executes_credentials(const char *query)
{
	for (const char *p = query; *p; p++)
	{
		char		name[NAMEDATALEN];
		int			len = 0;
		const char *q;
		PreparedStatement *ps;

		if (pg_strncasecmp(p, "execute", 7) != 0 || (p > query && identifier_char(p[-1])) ||
			!isspace((unsigned char) p[7]))
			continue;
		for (q = p + 7; isspace((unsigned char) *q); q++)
			;
		if (*q == '"')
			for (q++; *q && *q != '"' && len < NAMEDATALEN - 1; q++)
				name[len++] = *q;
		else
			for (; identifier_char(*q) && len < NAMEDATALEN - 1; q++)
				name[len++] = pg_tolower((unsigned char) *q);
		name[len] = '\0';
		if (len == 0)
			continue;
		ps = FetchPreparedStatement(name, false);
		if (ps != NULL && ps->plansource->query_string != NULL &&
			names_credentials(ps->plansource->query_string))
			return true;
	}
	return false;
}

/*
 * emit_log_hook: a message logged while the statement names credentials —
 * or whose context or internal query does, as when a PL/pgSQL function's
 * body holds the call and its text is quoted in the context — goes to the
 * server log without the statement, its detail or its context (jsonb's
 * input errors quote the text they could not read in both).  The client
 * still gets the detail.  Runs in ErrorContext and must not raise.
 */
static void
hide_credential_statements(ErrorData *edata)
{
	if (edata->output_to_server &&
		((debug_query_string != NULL &&
		  (names_credentials(debug_query_string) || executes_credentials(debug_query_string))) ||
		 (edata->context != NULL && quotes_credential_call(edata->context)) ||
		 (edata->internalquery != NULL && quotes_credential_call(edata->internalquery))))
	{
		edata->hide_stmt = true;
		if (edata->detail != NULL || edata->detail_log != NULL)
		{
			if (edata->detail_log != NULL)
				pfree(edata->detail_log);
			edata->detail_log = MemoryContextStrdup(ErrorContext,
													"(hidden from the log: the statement carries credentials)");
		}
		if (edata->context != NULL)
		{
			pfree(edata->context);
			edata->context = NULL;
		}
		if (edata->internalquery != NULL)
		{
			pfree(edata->internalquery);
			edata->internalquery = NULL;
			edata->internalpos = 0;
		}
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* _PG_init: install the log hook in every process. */
void
AccountsLogInit(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = hide_credential_statements;
}
