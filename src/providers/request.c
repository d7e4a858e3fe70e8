/*-------------------------------------------------------------------------
 *
 * request.c
 *	  Validation of the jsonb a user passes to withdraw_create, shared by
 *	  the providers so that every bad field gets the same kind of error:
 *	  SQLSTATE 22023, the provider and the field named, a hint where one
 *	  helps.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

#include "../jsonutil.h"
#include "provider.h"

void
request_field_error(const char *provider, const char *field, const char *problem,
					const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s request field \"%s\" %s", provider, field, problem),
			 hint ? errhint("%s", hint) : 0));
	pg_unreachable();
}

static void
require_object(Jsonb *request, const char *provider)
{
	if (!JB_ROOT_IS_OBJECT(request) || JB_ROOT_IS_SCALAR(request))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s request must be a JSON object", provider),
				 errhint("Pass the provider's fields as an object, for example '{\"amount\": \"1.5\"}'::jsonb.")));
}

void
request_reject_unknown_fields(Jsonb *request, const char *provider,
							  const char *const *allowed)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;

	require_object(request, provider);
	it = JsonbIteratorInit(&request->root);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		known = false;
		char	   *key;

		if (token != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				known = true;
		if (!known)
		{
			StringInfoData names;

			initStringInfo(&names);
			for (const char *const *a = allowed; *a; a++)
				appendStringInfo(&names, "%s%s", a == allowed ? "" : ", ", *a);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s request has unknown field \"%s\"", provider, key),
					 errdetail("Known fields: %s.", names.data)));
		}
	}
}

/* Finds a field; a JSON null counts as absent, and absent as an error if required. */
static bool
request_field(Jsonb *request, const char *provider, const char *field, bool required,
			  JsonbValue *v)
{
	if (json_get(&request->root, field, v) && v->type != jbvNull)
		return true;
	if (required)
		request_field_error(provider, field, "is required", NULL);
	return false;
}

/* A string field: NULL when absent and not required. */
char *
request_string(Jsonb *request, const char *provider, const char *field,
			   bool required, int max_chars)
{
	JsonbValue	v;
	char	   *s;

	if (!request_field(request, provider, field, required, &v))
		return NULL;
	if (v.type != jbvString)
		request_field_error(provider, field,
							psprintf("must be a string, not %s", json_type_name(&v)),
							NULL);
	s = pnstrdup(v.val.string.val, v.val.string.len);
	if (s[0] == '\0')
		request_field_error(provider, field, "must not be empty", NULL);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			request_field_error(provider, field, "must not contain control characters", NULL);
	if (max_chars > 0 && pg_mbstrlen(s) > max_chars)
		request_field_error(provider, field,
							psprintf("must be at most %d characters", max_chars), NULL);
	return s;
}

/* An integer field: false when absent and not required. */
bool
request_int(Jsonb *request, const char *provider, const char *field,
			bool required, int64 *value)
{
	JsonbValue	v;
	char	   *text;

	if (!request_field(request, provider, field, required, &v))
		return false;
	if (v.type != jbvNumeric)
		request_field_error(provider, field,
							psprintf("must be an integer, not %s", json_type_name(&v)),
							NULL);
	text = json_scalar_text(&v);
	for (const char *p = (text[0] == '-' ? text + 1 : text); *p; p++)
		if (!isdigit((unsigned char) *p) || p - text > 18)
			request_field_error(provider, field, "must be an integer", NULL);
	*value = strtoi64(text, NULL, 10);
	return true;
}

/* An amount: a positive decimal string, never a JSON number. */
void
request_amount(Jsonb *request, const char *provider, const char *field, char **amount)
{
	JsonbValue	v;

	if (json_get(&request->root, field, &v) && v.type == jbvNumeric)
		request_field_error(provider, field, "must be a decimal string, not a number",
							"Pass amounts as strings, for example \"12.50\", so that no digit is lost.");
	*amount = request_string(request, provider, field, true, 64);
	if (!is_positive_decimal(*amount))
		request_field_error(provider, field,
							psprintf("must be a positive decimal number, not \"%s\"", *amount),
							"Use digits with an optional decimal point, for example \"12.50\".");
}

typedef void (*FieldCallback) (const char *key, JsonbValue *value, void *arg);

/* Calls back for every top-level scalar field of the normalized request. */
static void
request_each_field(Jsonb *request, FieldCallback callback, void *arg)
{
	JsonbIterator *it = JsonbIteratorInit(&request->root);
	JsonbValue	v;
	JsonbIteratorToken token;
	char	   *key = NULL;

	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (token == WJB_VALUE && key != NULL)
		{
			if (v.type != jbvNull && v.type != jbvBinary)
				callback(key, &v, arg);
			key = NULL;
		}
	}
}

static void
add_param(const char *key, JsonbValue *value, void *arg)
{
	params_add((ParamList *) arg, key, json_scalar_text(value));
}

/* Every top-level field of the normalized request, as text, into params. */
void
request_to_params(Jsonb *request, ParamList *params)
{
	request_each_field(request, add_param, params);
}

typedef struct JsonFields
{
	StringInfo	buf;
	bool	   *first;
} JsonFields;

static void
add_json_field(const char *key, JsonbValue *value, void *arg)
{
	JsonFields *f = (JsonFields *) arg;

	if (value->type == jbvString)
		json_append_string(f->buf, f->first, key, json_scalar_text(value));
	else
		json_append_raw(f->buf, f->first, key, json_scalar_text(value));
}

/* Every top-level field as JSON members, numbers kept as numbers. */
void
request_to_json_fields(Jsonb *request, StringInfo buf, bool *first)
{
	JsonFields	f = {buf, first};

	request_each_field(request, add_json_field, &f);
}
