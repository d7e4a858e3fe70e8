/*-------------------------------------------------------------------------
 *
 * common.c
 *	  Helpers every provider needs in the worker: credentials and options
 *	  of an account, URLs, headers, decimals, times and the sorted
 *	  key=value lists several providers sign; and what providers share as
 *	  data: code tables (provider_refusal: a refusal code's class becomes
 *	  an outcome here only), status tables, and the readers of an answer
 *	  or a callback body as a JSON object.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/int.h"

#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/numeric.h"

#include "../jsonutil.h"
#include "provider.h"

/* A credential of the account; its absence is a configuration error. */
char *
account_credential(WithdrawAccount *account, const char *key)
{
	char	   *value = json_get_text(&account->credentials->root, key);

	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("account \"%s\" has no credential \"%s\"", account->name, key),
				 errhint("Set it with withdraw_account_update.")));
	return value;
}

/* An integer option with a default; out-of-range values are refused. */
int
account_option_int(Jsonb *options, const char *key, int default_value,
				   int min_value, int max_value)
{
	JsonbValue	v;
	char	   *text;
	int64		result = 0;

	if (options == NULL || !json_get(&options->root, key, &v) || v.type == jbvNull)
		return default_value;
	text = v.type == jbvNumeric ? json_scalar_text(&v) : "";
	if (text[0] == '\0' || strspn(text, "-0123456789") != strlen(text))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errhidestmt(true),
				 errmsg("account option \"%s\" must be an integer", key)));
	if (strlen(text) <= 12)
		result = strtoi64(text, NULL, 10);
	if (strlen(text) > 12 || result < min_value || result > max_value)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errhidestmt(true),
				 errmsg("account option \"%s\" must be between %d and %d", key,
						min_value, max_value)));
	return (int) result;
}

char *
join_url(const char *base_url, const char *path)
{
	size_t		len = strlen(base_url);

	while (len > 0 && base_url[len - 1] == '/')
		len--;
	return psprintf("%.*s%s", (int) len, base_url, path);
}

void
http_request_init(HttpRequest *req, const char *method, char *url)
{
	memset(req, 0, sizeof(HttpRequest));
	req->method = method;
	req->url = url;
	req->headers = NIL;
	initStringInfo(&req->body);
}

void
http_request_header(HttpRequest *req, const char *name, const char *value)
{
	/* a value cannot smuggle another header line */
	if (strpbrk(value, "\r\n") != NULL)
		elog(ERROR, "header %s contains a line break", name);
	req->headers = lappend(req->headers, psprintf("%s: %s", name, value));
}

/* digits, optionally a point and more digits, and not zero */
bool
is_positive_decimal(const char *s)
{
	const char *p = s;
	bool		nonzero = false;
	int			digits = 0;

	if (s == NULL || *s == '\0' || strlen(s) > 64)
		return false;
	while (isdigit((unsigned char) *p))
	{
		nonzero |= (*p != '0');
		p++;
		digits++;
	}
	if (digits == 0)
		return false;
	if (*p == '.')
	{
		p++;
		if (!isdigit((unsigned char) *p))
			return false;
		while (isdigit((unsigned char) *p))
		{
			nonzero |= (*p != '0');
			p++;
		}
	}
	return *p == '\0' && nonzero;
}

/* digits with an optional fraction, zero allowed (fees) */
bool
is_decimal(const char *s)
{
	return s != NULL && (is_positive_decimal(s) ||
						 (strspn(s, "0.") == strlen(s) && isdigit((unsigned char) s[0]) &&
						  s[strlen(s) - 1] != '.' && strchr(s, '.') == strrchr(s, '.')));
}

/*
 * Unix seconds as a timestamp; 0 when the time is outside what a
 * timestamptz can hold (the arithmetic is checked: a 19-digit bound given
 * to withdraw_sync overflowed int64 here).  Callers that take a time from
 * a person say so when they get 0 for a value other than 946684800.
 */
TimestampTz
timestamp_from_unix(int64 seconds)
{
	int64		shifted;
	int64		usecs;

	if (pg_sub_s64_overflow(seconds, (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY,
							&shifted) ||
		pg_mul_s64_overflow(shifted, USECS_PER_SEC, &usecs) ||
		!IS_VALID_TIMESTAMP(usecs))
		return 0;
	return (TimestampTz) usecs;
}

/* numeric equality of two decimal strings ("1.50" equals "1.5") */
bool
decimal_equal(const char *a, const char *b)
{
	Datum		na,
				nb;

	if (!is_positive_decimal(a) || !is_positive_decimal(b))
		return false;
	na = DirectFunctionCall3(numeric_in, CStringGetDatum(a), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	nb = DirectFunctionCall3(numeric_in, CStringGetDatum(b), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	return DatumGetBool(DirectFunctionCall2(numeric_eq, na, nb));
}

int64
epoch_ms(TimestampTz t)
{
	return t / 1000 + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
}

void
params_init(ParamList *list)
{
	list->count = 0;
	list->capacity = 16;
	list->keys = palloc(sizeof(char *) * list->capacity);
	list->values = palloc(sizeof(char *) * list->capacity);
}

void
params_add(ParamList *list, const char *key, const char *value)
{
	if (list->count == list->capacity)
	{
		list->capacity *= 2;
		list->keys = repalloc(list->keys, sizeof(char *) * list->capacity);
		list->values = repalloc(list->values, sizeof(char *) * list->capacity);
	}
	list->keys[list->count] = pstrdup(key);
	list->values[list->count] = pstrdup(value);
	list->count++;
}

/* byte order of keys, as the providers' reference code sorts */
void
params_sort(ParamList *list)
{
	for (int i = 1; i < list->count; i++)
	{
		char	   *k = list->keys[i];
		char	   *v = list->values[i];
		int			j = i - 1;

		while (j >= 0 && strcmp(list->keys[j], k) > 0)
		{
			list->keys[j + 1] = list->keys[j];
			list->values[j + 1] = list->values[j];
			j--;
		}
		list->keys[j + 1] = k;
		list->values[j + 1] = v;
	}
}

void
append_url_encoded(StringInfo buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			appendStringInfoChar(buf, (char) *p);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[*p >> 4]);
			appendStringInfoChar(buf, hex[*p & 0x0F]);
		}
	}
}

/* "k1=v1&k2=v2", raw (the string to sign) or percent-encoded (the wire) */
char *
params_join(const ParamList *list, bool url_encode)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < list->count; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, '&');
		if (url_encode)
		{
			append_url_encoded(&buf, list->keys[i]);
			appendStringInfoChar(&buf, '=');
			append_url_encoded(&buf, list->values[i]);
		}
		else
			appendStringInfo(&buf, "%s=%s", list->keys[i], list->values[i]);
	}
	return buf.data;
}

/*
 * The members keys[i][0] of an object that are non-empty scalars, renamed
 * keys[i][1], as a JSON object text: what a provider reports beyond the
 * state (txid, fees, confirmations) for withdraw.withdrawals.details.
 */
char *
details_json(JsonbContainer *c, const char *const (*keys)[2], int nkeys)
{
	StringInfoData json;
	bool		first = true;

	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	for (int i = 0; i < nkeys; i++)
	{
		char	   *value = json_get_text(c, keys[i][0]);

		if (value != NULL && value[0] != '\0')
			json_append_string(&json, &first, keys[i][1], value);
	}
	appendStringInfoChar(&json, '}');
	return json.data;
}

/*
 * The entry of a batched status answer's list that is about one
 * withdrawal: the object whose key_field (read in its member "inner", when
 * given) is key; NULL when the list does not have it.
 */
JsonbContainer *
list_entry_of(JsonbContainer *list, const char *inner, const char *key_field, const char *key)
{
	for (int i = 0; list != NULL && JsonContainerIsArray(list) && i < JsonContainerSize(list); i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(list, i);
		JsonbContainer *record;
		char	   *value;

		if (elem == NULL || elem->type != jbvBinary)
			continue;
		record = inner ? json_get_container(elem->val.binary.data, inner) : elem->val.binary.data;
		value = record ? json_get_text(record, key_field) : NULL;
		if (value != NULL && strcmp(value, key) == 0)
			return elem->val.binary.data;
	}
	return NULL;
}

/*
 * A provider's time given as digits of Unix time in units of unit_ms
 * (1000 for seconds, 1 for milliseconds); 0 when the text is not such, or
 * names a time PostgreSQL cannot store (the fuzzer found 15 digits of
 * seconds overflowing int64).
 */
TimestampTz
timestamp_from_digits(const char *text, int unit_ms)
{
	int64		usecs;
	TimestampTz result;

	if (text == NULL || text[0] == '\0' || strlen(text) > 15 ||
		strspn(text, "0123456789") != strlen(text))
		return 0;
	if (pg_mul_s64_overflow(strtoi64(text, NULL, 10), (int64) unit_ms * 1000, &usecs) ||
		pg_add_s64_overflow(timestamp_from_unix(0), usecs, &result) ||
		!IS_VALID_TIMESTAMP(result))
		return 0;
	return result;
}

/*
 * Is a callback's timestamp (Unix seconds, as text) within window_s of our
 * clock?  false with *error otherwise: stale, replayed, or not a time.
 */
bool
timestamp_within(const char *seconds, int window_s, const char *what, char **error)
{
	TimestampTz t = timestamp_from_digits(seconds, 1000);
	int64		age;

	if (t == 0 || strlen(seconds) > 12)
	{
		*error = psprintf("the %s is not Unix seconds", what);
		return false;
	}
	age = (GetCurrentTimestamp() - t) / USECS_PER_SEC;
	if (age > window_s || age < -window_s)
	{
		*error = psprintf("the %s is more than %d s away from our clock: stale or replayed",
						  what, window_s);
		return false;
	}
	return true;
}

/* The index of a provider's status word in its table, or -1. */
static int
status_index(const ProviderStatusTable *table, const char *status)
{
	for (int i = 0; status != NULL && i < table->count; i++)
		if (table->ignore_case ? pg_strcasecmp(table->statuses[i].status, status) == 0
			: strcmp(table->statuses[i].status, status) == 0)
			return i;
	return -1;
}

/* The state a provider's status word names; STATE_NONE when the table lacks it. */
WithdrawState
provider_state(const ProviderStatusTable *table, const char *status)
{
	int			i = status_index(table, status);

	return i < 0 ? STATE_NONE : table->statuses[i].state;
}

/* Is status one of the table's words? */
bool
provider_status_known(const ProviderStatusTable *table, const char *status)
{
	return status_index(table, status) >= 0;
}

/* The table's entry for a code; NULL when the table lacks it. */
const ProviderCode *
provider_code(const ProviderCodeTable *table, const char *code)
{
	for (int i = 0; code != NULL && i < table->count; i++)
		if (strcmp(table->codes[i].code, code) == 0)
			return &table->codes[i];
	return NULL;
}

/* "label code: msg — explanation", the explanation when the table has one */
char *
provider_code_message(const ProviderCodeTable *table, const char *code, const char *msg)
{
	const ProviderCode *known = provider_code(table, code);

	return psprintf("%s %s: %s%s%s", table->label, code, msg ? msg : "",
					known ? " — " : "", known ? known->explanation : "");
}

/*
 * The outcome of a create the provider refused with code: the one place
 * where a code's class becomes an outcome.  A code the table lacks may
 * have executed: the same key is sent again.
 */
void
provider_refusal(const ProviderCodeTable *table, const char *code, const char *msg, Outcome *out)
{
	const ProviderCode *known = provider_code(table, code);

	out->message = provider_code_message(table, code, msg);
	switch (known ? known->class : CODE_MAYBE)
	{
		case CODE_MAYBE:
			out->kind = OUTCOME_UNKNOWN;
			break;
		case CODE_RETRY:
			out->kind = OUTCOME_NOT_DELIVERED;
			out->retry_after_ms = known->retry_after_ms;
			break;
		case CODE_DUPLICATE:
			out->kind = OUTCOME_RECONCILE;
			out->duplicate = true;
			break;
		case CODE_TERMINAL:
			out->kind = OUTCOME_REJECTED;
			break;
	}
}

/*
 * A provider's answer as a JSON object, or NULL with *why naming the HTTP
 * status: what every answer reader checks first.
 */
Jsonb *
provider_answer_json(HttpResponse *res, char **why)
{
	char	   *error = NULL;
	Jsonb	   *body = json_parse_untrusted(res->body.data, res->body.len, &error);

	if (body == NULL || !JB_ROOT_IS_OBJECT(body) || JB_ROOT_IS_SCALAR(body))
	{
		*why = psprintf("HTTP %ld, answer is not a JSON object%s%s", res->status,
						body ? "" : ": ", body ? "" : error);
		return NULL;
	}
	return body;
}

/* A callback's body as a JSON object, or NULL with *error saying why. */
Jsonb *
provider_body_json(const char *body, int len, char **error)
{
	Jsonb	   *content = json_parse_untrusted(body, len, error);

	if (content != NULL && (!JB_ROOT_IS_OBJECT(content) || JB_ROOT_IS_SCALAR(content)))
	{
		*error = pstrdup("the body is not a JSON object");
		return NULL;
	}
	return content;
}
