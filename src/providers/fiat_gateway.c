/*-------------------------------------------------------------------------
 *
 * fiat_gateway.c
 *	  The fiat_gateway provider (the "/applyfor" payout gateway): creates
 *	  through POST /applyfor, the channel form rules of POST
 *	  /channel/formRule (cached per pay_code and checked in withdraw_create),
 *	  and the gateway's signed notifications.
 *
 * Requests, answers and notifications are signed alike: every top-level
 * parameter but sign whose value is not empty, sorted by name in byte
 * order, joined k=v&... with raw values, then "&key=" + secret (account
 * option sign_mode "amp_key", the default) or the secret directly
 * ("concat"); MD5 in uppercase hex.  An answer's sign covers its scalar
 * members and those of its result object; an /applyfor answer whose sign
 * is missing or wrong is not believed (its outcome is unknown).  A
 * formRule answer may come unsigned, as the seed's own example does (it
 * moves no money); its sign is verified when present, and required with
 * the account option rules_require_sign.  The gateway has no
 * status query: a withdrawal it accepted is settled by its notification,
 * and a duplicate order number (10003) means it already has the order.
 *
 *
 * Longer than most files because the gateway's form rules (fetched,
 * cached, checked in withdraw_create) are part of its protocol; a provider
 * is one file (README, Adding a provider).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_collation.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "../crypto.h"
#include "../jsonutil.h"
#include "provider.h"

#define FIAT_CREATE_PATH "/applyfor"
#define FIAT_RULES_PATH "/channel/formRule"
#define FIAT_SUCCESS "10000"
#define FIAT_DEFAULT_NOTIFY_WINDOW_S 86400
#define FIAT_DEFAULT_DECIMALS 2
#define FIAT_DEFAULT_NOTIFY_DEADLINE_S (4 * 3600)
#define FIAT_MAX_NOTIFY_DEADLINE_S (7 * 24 * 3600)	/* in ms, within an int */

static const char *const fiat_credential_keys[] = {"uid", "secret_key", NULL};
static const char *const fiat_option_keys[] = {
	"sign_mode", "notify_url", "pay_codes", "rules_ttl_ms", "rules_userip", "notify_window_s",
	"rules_require_sign", "amount_decimals", "notify_deadline_s", NULL
};
/* the documented fields; a pay_code's form rules may add more */
static const char *const fiat_fields[] = {
	"orderid", "currency", "amount", "userip", "pay_code", "bank_id", "custom", "user_name",
	"bank_account", "bank_no", "bank_name", "bank_province", "bank_city", "bank_sub", "bank_ifsc",
	NULL
};

/*
 * A notification's status: the seed shows no notification, so its words
 * are an assumption, read in any case.
 */
static const ProviderStatus fiat_notify_status_list[] = {
	{"success", STATE_SUCCEEDED}, {"failed", STATE_FAILED}, {"processing", STATE_PROCESSING},
};
static const ProviderStatusTable fiat_notify_statuses = PROVIDER_STATUS_TABLE(fiat_notify_status_list, true);

/*
 * The gateway's refusals (seed 004): final, but for a duplicate order
 * number, which its notification settles; any other status may have
 * executed.
 */
static const ProviderCode fiat_code_list[] = {
	{"10001", CODE_TERMINAL, 0, "the gateway refused a parameter"},
	{"10002", CODE_TERMINAL, 0, "the gateway could not verify the signature; check the account's secret_key and sign_mode"},
	{"10003", CODE_DUPLICATE, 0, "duplicate order number: the gateway already has this order; its notification will settle it"},
	{"10004", CODE_TERMINAL, 0, "the amount format was refused"},
	{"10005", CODE_TERMINAL, 0, "the bank id does not exist"},
	{"10006", CODE_TERMINAL, 0, "insufficient balance"},
	{"10007", CODE_TERMINAL, 0, "withdrawal limit exceeded"},
};
static const ProviderCodeTable fiat_codes = PROVIDER_CODE_TABLE("status", fiat_code_list);

static bool
concat_mode(Jsonb *options)
{
	char	   *mode = json_get_text(&options->root, "sign_mode");

	return mode != NULL && strcmp(mode, "concat") == 0;
}

/* A boolean option; false when absent.  check_options has checked its type. */
static bool
option_bool(Jsonb *options, const char *key)
{
	JsonbValue	v;

	return json_get(&options->root, key, &v) && v.type == jbvBool && v.val.boolean;
}

static bool
pay_codes_are_strings(JsonbContainer *codes)
{
	JsonbIterator *it = JsonbIteratorInit(codes);
	JsonbValue	v;
	JsonbIteratorToken token;

	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (token == WJB_VALUE && (v.type != jbvString || v.val.string.len == 0 || v.val.string.len > 8))
			return false;
	return true;
}

/* amount_decimals: an object of pay_code to an integer 0 ... 8 */
static bool
decimals_are_valid(JsonbContainer *per_code)
{
	JsonbIterator *it = JsonbIteratorInit(per_code);
	JsonbValue	v;
	JsonbIteratorToken token;

	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *text;

		if (token != WJB_VALUE)
			continue;
		if (v.type != jbvNumeric)
			return false;
		text = json_scalar_text(&v);
		if (strlen(text) != 1 || text[0] < '0' || text[0] > '8')
			return false;
	}
	return true;
}

/* account_create/update: the statement carries credentials, so errors hide it */
static void
fiat_check_options(Jsonb *options)
{
	char	   *mode = json_get_text(&options->root, "sign_mode");
	char	   *url = json_get_text(&options->root, "notify_url");
	JsonbValue	codes;

	if (mode != NULL && strcmp(mode, "amp_key") != 0 && strcmp(mode, "concat") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
				 errmsg("option \"sign_mode\" must be \"amp_key\" or \"concat\", not \"%s\"", mode),
				 errhint("amp_key signs stringA + \"&key=\" + secret; concat signs stringA + secret.")));
	if (url != NULL && strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
				 errmsg("option \"notify_url\" must be an http(s) URL")));
	if (json_get(&options->root, "pay_codes", &codes) &&
		(codes.type != jbvBinary || !JsonContainerIsObject(codes.val.binary.data) ||
		 !pay_codes_are_strings(codes.val.binary.data)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
				 errmsg("option \"pay_codes\" must be an object of pay_code to currency"),
				 errhint("For example {\"1004\": \"KRW\", \"812\": \"INR\"}.")));
	if (json_get(&options->root, "amount_decimals", &codes) &&
		(codes.type != jbvBinary || !JsonContainerIsObject(codes.val.binary.data) ||
		 !decimals_are_valid(codes.val.binary.data)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
				 errmsg("option \"amount_decimals\" must be an object of pay_code to an integer from 0 to 8"),
				 errhint("For example {\"1004\": 0} for a channel whose amounts have no decimals; other pay_codes keep two.")));
	if (json_get(&options->root, "rules_require_sign", &codes) && codes.type != jbvBool)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
				 errmsg("option \"rules_require_sign\" must be true or false")));
	(void) account_option_int(options, "rules_ttl_ms", 3600 * 1000, 1000, INT_MAX);
	(void) account_option_int(options, "notify_window_s", FIAT_DEFAULT_NOTIFY_WINDOW_S, 10, INT_MAX);
	(void) account_option_int(options, "notify_deadline_s", FIAT_DEFAULT_NOTIFY_DEADLINE_S, 1,
							  FIAT_MAX_NOTIFY_DEADLINE_S);
}

/*
 * The decimals a pay_code's amounts carry: the seed's /applyfor table says
 * "accepts two decimal places", its notes "pay attention to decimal places
 * based on different channels".  Two, unless the account option
 * amount_decimals ({"pay_code": n}) says otherwise for this pay_code.
 */
static int
amount_decimals_of(Jsonb *options, const char *pay_code)
{
	JsonbContainer *per_code = json_get_container(&options->root, "amount_decimals");
	char	   *n = (per_code && pay_code) ? json_get_text(per_code, pay_code) : NULL;

	return n ? atoi(n) : FIAT_DEFAULT_DECIMALS;
}

/* amount: positive, with exactly `decimals` decimals (none: no point) */
static bool
has_decimals(const char *amount, int decimals)
{
	const char *dot = strchr(amount, '.');

	if (!is_positive_decimal(amount))
		return false;
	return decimals == 0 ? dot == NULL : (dot != NULL && strlen(dot + 1) == decimals);
}

static char *
fiat_rules_key(Jsonb *request)
{
	JsonbValue	v;

	if (!json_get(&request->root, "pay_code", &v) || (v.type != jbvString && v.type != jbvNumeric))
		return NULL;
	return json_scalar_text(&v);
}

/* A field's value as text; NULL when absent, null or empty. */
static char *
field_text(Jsonb *request, const char *name)
{
	JsonbValue	v;
	char	   *text;

	if (!json_get(&request->root, name, &v) || v.type == jbvNull)
		return NULL;
	if (v.type != jbvString && v.type != jbvNumeric)
		request_field_error("fiat_gateway", name,
							psprintf("must be a string, not %s", json_type_name(&v)), NULL);
	text = json_scalar_text(&v);
	return text[0] ? text : NULL;
}

static void
rule_error(const char *field, const char *rule, const char *problem)
{
	request_field_error("fiat_gateway", field, problem,
						psprintf("The pay_code's form rule says %s (withdraw.form_rules).", rule));
}

static bool
all_digits(const char *s)
{
	return s[0] != '\0' && strspn(s, "0123456789") == strlen(s);
}

/* One validation_rules entry ("integer", "max:50", "in:A,B", "regex:...") on a value. */
static void
check_rule(const char *field, const char *rule, const char *value, bool is_string)
{
	int			len = pg_mbstrlen(value);

	if (strcmp(rule, "required") == 0)
		return;
	else if (strcmp(rule, "string") == 0)
	{
		if (!is_string)
			rule_error(field, rule, "must be a string");
	}
	else if (strcmp(rule, "integer") == 0 || strcmp(rule, "digits") == 0)
	{
		if (!all_digits(value))
			rule_error(field, rule, psprintf("must be %s", rule[0] == 'i' ? "an integer" : "digits only"));
	}
	else if (strncmp(rule, "max:", 4) == 0 && len > atoi(rule + 4))
		rule_error(field, rule, psprintf("must be at most %d characters", atoi(rule + 4)));
	else if (strncmp(rule, "min:", 4) == 0 && len < atoi(rule + 4))
		rule_error(field, rule, psprintf("must be at least %d characters", atoi(rule + 4)));
	else if (strncmp(rule, "size:", 5) == 0 && len != atoi(rule + 5))
		rule_error(field, rule, psprintf("must be exactly %d characters", atoi(rule + 5)));
	else if (strncmp(rule, "in:", 3) == 0)
	{
		char	   *list = pstrdup(rule + 3);
		bool		found = false;

		for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","))
			found |= strcmp(tok, value) == 0;
		if (!found)
			rule_error(field, rule, psprintf("must be one of %s", rule + 3));
	}
	else if (strncmp(rule, "regex:", 6) == 0)
	{
		/* the gateway's pattern, anchored, with PostgreSQL's regex engine */
		bool		match = DatumGetBool(DirectFunctionCall2Coll(textregexeq, C_COLLATION_OID,
																 CStringGetTextDatum(value),
																 CStringGetTextDatum(psprintf("^(?:%s)$", rule + 6))));

		if (!match)
			rule_error(field, rule, "does not have the required format");
	}
}

/* A select field's value must be one of its options ("bankID" or "value"). */
static void
check_options_of(const char *field, JsonbContainer *options, const char *value)
{
	StringInfoData allowed;

	initStringInfo(&allowed);
	for (int i = 0; i < JsonContainerSize(options); i++)
	{
		JsonbValue *opt = getIthJsonbValueFromContainer(options, i);
		char	   *v;

		if (opt == NULL || opt->type != jbvBinary)
			continue;
		v = json_get_text(opt->val.binary.data, strcmp(field, "bank_id") == 0 ? "bankID" : "value");
		if (v == NULL)
			continue;
		if (strcmp(v, value) == 0)
			return;
		appendStringInfo(&allowed, "%s%s", allowed.len ? ", " : "", v);
	}
	rule_error(field, "select", psprintf("must be one of the options: %s", allowed.data));
}

/*
 * The request against the pay_code's form rules: required fields, max_length,
 * select options, validation_rules.  Returns the names of the dynamic
 * fields the rules add.
 */
static List *
check_form_rules(Jsonb *request, Jsonb *rules)
{
	JsonbContainer *fields = json_get_container(&rules->root, "form_fields");
	List	   *names = NIL;

	if (fields == NULL || !JsonContainerIsArray(fields))
		return NIL;
	for (int i = 0; i < JsonContainerSize(fields); i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(fields, i);
		JsonbContainer *f;
		char	   *name;
		char	   *value;
		char	   *required;
		char	   *max_length;
		char	   *type;
		JsonbContainer *options;
		JsonbContainer *checks;
		JsonbValue	v;

		if (elem == NULL || elem->type != jbvBinary)
			continue;
		f = elem->val.binary.data;
		name = json_get_text(f, "name");
		if (name == NULL)
			continue;
		names = lappend(names, name);
		value = field_text(request, name);
		required = json_get_text(f, "required");
		if (value == NULL)
		{
			if (required != NULL && strcmp(required, "true") == 0)
				rule_error(name, "required", "is required for this pay_code");
			continue;
		}
		max_length = json_get_text(f, "max_length");
		if (max_length != NULL && all_digits(max_length) && pg_mbstrlen(value) > atoi(max_length))
			rule_error(name, psprintf("max_length %s", max_length),
					   psprintf("must be at most %s characters", max_length));
		type = json_get_text(f, "type");
		options = json_get_container(f, "options");
		if (type != NULL && strcmp(type, "select") == 0 && options != NULL && JsonContainerIsArray(options))
			check_options_of(name, options, value);
		checks = json_get_container(f, "validation_rules");
		(void) json_get(&request->root, name, &v);
		for (int j = 0; checks != NULL && JsonContainerIsArray(checks) && j < JsonContainerSize(checks); j++)
		{
			JsonbValue *rule = getIthJsonbValueFromContainer(checks, j);

			if (rule != NULL && rule->type == jbvString)
				check_rule(name, pnstrdup(rule->val.string.val, rule->val.string.len), value,
						   v.type == jbvString);
		}
	}
	return names;
}

static void
fiat_validate(Jsonb *request, Jsonb *options, Jsonb *rules, ValidatedRequest *out)
{
	const char *p = "fiat_gateway";
	List	   *dynamic;
	char	   *orderid;
	char	   *amount;
	int			decimals;
	StringInfoData json;
	bool		first = true;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;

	if (json_get_text(&options->root, "notify_url") == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("fiat_gateway accounts need the option \"notify_url\""),
				 errhint("Set it to the URL where your web handler passes notifications to withdraw_callback.")));
	if (rules == NULL)
		request_field_error(p, "pay_code", "is required", NULL);
	dynamic = check_form_rules(request, rules);

	/* documented fields and the pay_code's own, nothing else */
	it = JsonbIteratorInit(&request->root);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
		{
			char	   *key = pnstrdup(v.val.string.val, v.val.string.len);
			bool		known = false;
			ListCell   *lc;

			for (const char *const *f = fiat_fields; *f; f++)
				known |= strcmp(*f, key) == 0;
			foreach(lc, dynamic)
				known |= strcmp(lfirst(lc), key) == 0;
			if (!known)
				request_field_error(p, key, "is not a field of the gateway or of this pay_code's form rules",
									"See withdraw.form_rules for the pay_code's fields.");
		}
	}

	orderid = field_text(request, "orderid");
	if (orderid == NULL)
		orderid = random_hex(16);
	else if (strlen(orderid) > 64 ||
			 strspn(orderid, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(orderid))
		request_field_error(p, "orderid", "must be 1 to 64 letters, digits, '-' or '_'", NULL);
	if (json_get(&request->root, "amount", &v) && v.type == jbvNumeric)
		request_field_error(p, "amount", "must be a decimal string, not a number",
							"Pass amounts as strings with two decimals, for example \"100.00\".");
	amount = request_string(request, p, "amount", true, 32);
	decimals = amount_decimals_of(options, fiat_rules_key(request));
	if (!has_decimals(amount, decimals))
		request_field_error(p, "amount", psprintf("must be a positive amount with exactly %d decimals for this pay_code, not \"%s\"", decimals, amount),
							"The gateway accepts two decimal places unless the account option amount_decimals sets the pay_code's own, for example \"100.00\".");
	(void) request_string(request, p, "currency", true, 8);
	(void) request_string(request, p, "userip", true, 45);
	if (field_text(request, "bank_id") != NULL && !all_digits(field_text(request, "bank_id")))
		request_field_error(p, "bank_id", "must be an integer", NULL);

	/* every field as a string, exactly the text that will be signed */
	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	json_append_string(&json, &first, "orderid", orderid);
	it = JsonbIteratorInit(&request->root);
	{
		char	   *key = NULL;

		while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (token == WJB_KEY)
				key = pnstrdup(v.val.string.val, v.val.string.len);
			else if (token == WJB_VALUE && key != NULL && strcmp(key, "orderid") != 0)
			{
				char	   *text = field_text(request, key);

				if (text != NULL)
					json_append_string(&json, &first, key, text);
			}
		}
	}
	appendStringInfoChar(&json, '}');

	out->idempotency_key = orderid;
	out->request_json = json.data;
	out->asset = field_text(request, "currency");
	out->amount = amount;
	out->destination = field_text(request, "bank_no");
}

/* The MD5 sign of params (sign and empty values left out) by the account's mode. */
static char *
fiat_sign(ParamList *params, const char *secret, bool concat)
{
	ParamList	signed_params;
	char	   *string_a;
	char	   *text;
	char	   *sign;

	params_init(&signed_params);
	for (int i = 0; i < params->count; i++)
		if (strcmp(params->keys[i], "sign") != 0 && params->values[i] != NULL &&
			params->values[i][0] != '\0')
			params_add(&signed_params, params->keys[i], params->values[i]);
	params_sort(&signed_params);
	string_a = params_join(&signed_params, false);
	text = psprintf(concat ? "%s%s" : "%s&key=%s", string_a, secret);
	sign = md5_upper_hex(text, strlen(text));
	explicit_bzero(text, strlen(text));
	return sign;
}

/*
 * SQL: withdraw._fiat_gateway_signature(params, secret, sign_mode) — the
 * sign of a parameter object, for the documented vectors in pg_regress.
 */
PG_FUNCTION_INFO_V1(withdraw_fiat_gateway_signature);
Datum
withdraw_fiat_gateway_signature(PG_FUNCTION_ARGS)
{
	ParamList	params;

	params_init(&params);
	request_to_params(PG_GETARG_JSONB_P(0), &params);
	PG_RETURN_TEXT_P(cstring_to_text(fiat_sign(&params, text_to_cstring(PG_GETARG_TEXT_PP(1)),
											   strcmp(text_to_cstring(PG_GETARG_TEXT_PP(2)), "concat") == 0)));
}

/*
 * A signed JSON POST: params plus uid and timestamp, every value a string;
 * the audit copy has the sign redacted.
 */
static void
fiat_request(WithdrawAccount *account, const char *path, ParamList *params, HttpRequest *req)
{
	char	   *secret = account_credential(account, "secret_key");
	char	   *sign;
	bool		first = true;

	params_add(params, "uid", account_credential(account, "uid"));
	params_add(params, "timestamp", psprintf(INT64_FORMAT, epoch_ms(GetCurrentTimestamp()) / 1000));
	sign = fiat_sign(params, secret, concat_mode(account->options));
	explicit_bzero(secret, strlen(secret));

	http_request_init(req, "POST", join_url(account->base_url, path));
	http_request_header(req, "Content-Type", "application/json");
	appendStringInfoChar(&req->body, '{');
	for (int i = 0; i < params->count; i++)
	{
		/* bank_id is an int in the seed; its digits are what was signed */
		if (strcmp(params->keys[i], "bank_id") == 0 && all_digits(params->values[i]) &&
			strlen(params->values[i]) <= 18)
			json_append_raw(&req->body, &first, params->keys[i], params->values[i]);
		else
			json_append_string(&req->body, &first, params->keys[i], params->values[i]);
	}
	req->audit = psprintf("%s,\"sign\":\"[redacted]\"}", req->body.data);
	json_append_string(&req->body, &first, "sign", sign);
	appendStringInfoChar(&req->body, '}');
}

static void
fiat_build_create(WithdrawalJob *job, HttpRequest *req)
{
	ParamList	params;

	params_init(&params);
	request_to_params(job->request, &params);
	params_add(&params, "notify_url", json_get_text(&job->account->options->root, "notify_url"));
	fiat_request(job->account, FIAT_CREATE_PATH, &params, req);
}

/*
 * An answer's result as an object: the seed's result is an object, but
 * "Returns JSON string when status code is Success" allows a string
 * holding the object.  NULL when it is neither.
 */
static Jsonb *
answer_result(Jsonb *body)
{
	JsonbValue	v;
	char	   *error;
	Jsonb	   *parsed;

	if (!json_get(&body->root, "result", &v))
		return NULL;
	if (v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
		return JsonbValueToJsonb(&v);
	if (v.type != jbvString)
		return NULL;
	parsed = json_parse_untrusted(v.val.string.val, v.val.string.len, &error);
	if (parsed == NULL || !JB_ROOT_IS_OBJECT(parsed) || JB_ROOT_IS_SCALAR(parsed))
		return NULL;
	return parsed;
}

/*
 * What an answer's sign covers, by the requests' rule (scalars as text;
 * fiat_sign leaves out sign and empty values): its top-level scalar
 * members but result, and the scalar members of result.  A result given
 * as a JSON string is signed as its members too (an assumption: the seed
 * does not say; see the caller for the other reading).
 */
static void
answer_params(Jsonb *body, ParamList *params, bool result_as_text)
{
	Jsonb	   *result = answer_result(body);
	JsonbValue	v;

	params_init(params);
	request_to_params(body, params);
	if (!result_as_text && json_get(&body->root, "result", &v) && v.type == jbvString)
	{
		/* leave the text out: its members stand for it */
		ParamList	without;

		params_init(&without);
		for (int i = 0; i < params->count; i++)
			if (strcmp(params->keys[i], "result") != 0)
				params_add(&without, params->keys[i], params->values[i]);
		*params = without;
	}
	if (result != NULL && !result_as_text)
		request_to_params(result, params);
}

/*
 * Reads an answer and checks its sign.  Returns it, or NULL with *why.
 * An answer without a sign is believed only when !require_sign (the
 * formRule answer: the seed's own example carries none, and it moves no
 * money); a sign that is present must always verify.
 */
static Jsonb *
fiat_answer(WithdrawAccount *account, HttpResponse *res, bool require_sign, char **status,
			char **msg, char **why)
{
	Jsonb	   *body = provider_answer_json(res, why);
	ParamList	params;
	char	   *secret;
	char	   *expected;
	bool		ok;

	if (body == NULL)
		return NULL;
	*status = json_get_text(&body->root, "status");
	*msg = json_get_text(&body->root, "msg");
	if (*status == NULL)
	{
		*why = psprintf("HTTP %ld, answer without a status", res->status);
		return NULL;
	}
	if (!require_sign && json_get_text(&body->root, "sign") == NULL)
		return body;
	answer_params(body, &params, false);
	secret = account_credential(account, "secret_key");
	expected = fiat_sign(&params, secret, concat_mode(account->options));
	ok = signature_equal(expected, json_get_text(&body->root, "sign"));
	if (!ok && json_get_text(&body->root, "result") != NULL && answer_result(body) != NULL)
	{
		/* a result string may also be signed as the text it is */
		answer_params(body, &params, true);
		expected = fiat_sign(&params, secret, concat_mode(account->options));
		ok = signature_equal(expected, json_get_text(&body->root, "sign"));
	}
	explicit_bzero(secret, strlen(secret));
	if (!ok)
	{
		*why = psprintf("answer (status %s) %s: not believed", *status,
						json_get_text(&body->root, "sign") ? "has a wrong sign" : "is not signed");
		return NULL;
	}
	return body;
}

static void
fiat_parse_create(WithdrawalJob *job, HttpResponse *res, Outcome *out)
{
	char	   *status = NULL;
	char	   *msg = NULL;
	char	   *why = NULL;
	Jsonb	   *body = fiat_answer(job->account, res, true, &status, &msg, &why);

	if (body == NULL)
	{
		out->kind = OUTCOME_UNKNOWN;
		out->message = why;
		return;
	}
	out->provider_status = psprintf("status %s", status);
	if (strcmp(status, FIAT_SUCCESS) == 0)
	{
		Jsonb	   *result = answer_result(body);
		char	   *id = result ? json_get_text(&result->root, "transactionid") : NULL;

		out->kind = OUTCOME_SUBMITTED;
		out->provider_id = id && id[0] ? id : NULL;
		return;
	}
	provider_refusal(&fiat_codes, status, msg, out);
}

static void
fiat_build_rules(WithdrawAccount *account, const char *key, const char *currency, HttpRequest *req)
{
	ParamList	params;
	char	   *userip = json_get_text(&account->options->root, "rules_userip");

	params_init(&params);
	params_add(&params, "pay_code", key);
	if (currency != NULL)
		params_add(&params, "currency", currency);
	params_add(&params, "userip", userip ? userip : "127.0.0.1");
	fiat_request(account, FIAT_RULES_PATH, &params, req);
}

static char *
fiat_parse_rules(WithdrawAccount *account, const char *key, HttpResponse *res, char **error)
{
	char	   *status = NULL;
	char	   *msg = NULL;
	Jsonb	   *body;
	JsonbContainer *data;

	if (res->transport_failed)
	{
		*error = pstrdup(res->error ? res->error : "no answer");
		return NULL;
	}
	body = fiat_answer(account, res, option_bool(account->options, "rules_require_sign"),
					   &status, &msg, error);
	if (body == NULL)
		return NULL;
	if (strcmp(status, FIAT_SUCCESS) != 0)
	{
		*error = psprintf("the gateway refused the form rules of pay_code %s: status %s: %s",
						  key, status, msg ? msg : "");
		return NULL;
	}
	data = answer_result(body) ? json_get_container(&answer_result(body)->root, "data") : NULL;
	if (data == NULL || json_get_container(data, "form_fields") == NULL)
	{
		*error = psprintf("the form rules of pay_code %s have no form_fields", key);
		return NULL;
	}
	return JsonbToCString(NULL, data, 512);
}

/*
 * A notification: its sign must verify (constant time) and its uid be the
 * account's before anything is read; a timestamp, when given, must be
 * within notify_window_s.
 */
static bool
fiat_read_callback(WithdrawAccount *account, const char *body, int len, Jsonb *headers,
				   CallbackNotice *out, char **error)
{
	static const char *const keys[][2] = {{"transactionid", "transactionid"}};
	Jsonb	   *content = provider_body_json(body, len, error);
	ParamList	params;
	char	   *secret;
	char	   *expected;
	char	   *uid;
	char	   *timestamp;
	char	   *status;
	int			window = account_option_int(account->options, "notify_window_s",
											FIAT_DEFAULT_NOTIFY_WINDOW_S, 10, INT_MAX);

	if (content == NULL)
		return false;
	params_init(&params);
	request_to_params(content, &params);
	secret = account_credential(account, "secret_key");
	expected = fiat_sign(&params, secret, concat_mode(account->options));
	explicit_bzero(secret, strlen(secret));
	if (!signature_equal(expected, json_get_text(&content->root, "sign")))
	{
		*error = pstrdup(json_get_text(&content->root, "sign") ? "the sign does not verify"
						 : "the notification is not signed");
		return false;
	}
	uid = json_get_text(&content->root, "uid");
	if (uid == NULL || strcmp(uid, account_credential(account, "uid")) != 0)
	{
		*error = pstrdup("the uid is not this account's");
		return false;
	}
	timestamp = json_get_text(&content->root, "timestamp");
	if (timestamp != NULL)
	{
		if (!timestamp_within(timestamp, window, "timestamp", error))
			return false;
		out->sent_at = timestamp_from_digits(timestamp, 1000);
	}
	out->content = content;
	out->kind = CALLBACK_WITHDRAWAL;
	out->idempotency_key = json_get_text(&content->root, "orderid");
	out->provider_id = json_get_text(&content->root, "transactionid");
	out->amount = json_get_text(&content->root, "amount");
	if (out->amount == NULL)
	{
		*error = pstrdup("the notification has no amount");
		return false;
	}
	status = json_get_text(&content->root, "status");
	out->provider_status = status ? psprintf("notify %s", status) : NULL;
	out->state = provider_state(&fiat_notify_statuses, status);
	out->details = details_json(&content->root, keys, lengthof(keys));
	return true;
}

/*
 * The gateway has no status query: a withdrawal it accepted waits for its
 * notification, notify_deadline_s at most (default four hours), and is
 * then due for a "poll" that is this outcome instead of an exchange: it
 * goes to review with the reason, where people look for stuck ones.
 */
static int
fiat_notice_deadline_ms(Jsonb *options)
{
	return account_option_int(options, "notify_deadline_s", FIAT_DEFAULT_NOTIFY_DEADLINE_S, 1,
							  FIAT_MAX_NOTIFY_DEADLINE_S) * 1000;
}

static void
fiat_overdue(WithdrawalJob *job, Outcome *out)
{
	int			deadline_s = fiat_notice_deadline_ms(job->account->options) / 1000;

	out->kind = OUTCOME_STATE;
	out->state = STATE_REVIEW;
	out->provider_status = pstrdup("no notification");
	out->message = psprintf("no final notification from the gateway within %d s of its acceptance (account option notify_deadline_s), and it has no status query: check order %s at the gateway",
							deadline_s, job->idempotency_key);
}

static const ProviderFormRules fiat_form_rules = {
	.key = fiat_rules_key,
	.build = fiat_build_rules,
	.parse = fiat_parse_rules,
};

static const ProviderCallbacks fiat_callbacks = {
	.read = fiat_read_callback,
	.ack = "success",
	.refusal = NULL,
};

static const ProviderNotices fiat_notices = {
	.deadline_ms = fiat_notice_deadline_ms,
	.overdue = fiat_overdue,
};

PROVIDER_DEFINE(fiat_gateway) = {
	.name = "fiat_gateway",
	.credential_keys = fiat_credential_keys,
	.option_keys = fiat_option_keys,
	.check_options = fiat_check_options,
	.validate = fiat_validate,
	.build_create = fiat_build_create,
	.parse_create = fiat_parse_create,
	.form_rules = &fiat_form_rules,
	.callbacks = &fiat_callbacks,
	.notices = &fiat_notices,
};
