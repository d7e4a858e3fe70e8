/*-------------------------------------------------------------------------
 *
 * jsonutil.c
 *	  jsonb access helpers shared by the SQL functions and the providers.
 *
 * Provider responses are untrusted bytes: json_parse_untrusted checks the
 * encoding, the nesting depth and the grammar with the non-throwing parser
 * before building a jsonb, so garbage from the network is an ordinary
 * result, not an ERROR.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/numeric.h"

#include "jsonutil.h"

/*
 * Deeper than any provider's answer nests.  pg_parse_json recurses once per
 * level and raises "stack depth limit exceeded" (an ERROR, not a result)
 * on a few tens of thousands of '[': such bodies are refused before it.
 */
#define JSON_UNTRUSTED_MAX_DEPTH 64

/* Whether the text opens more than JSON_UNTRUSTED_MAX_DEPTH levels (strings skipped). */
static bool
json_too_deep(const char *text, int len)
{
	int			depth = 0;
	bool		in_string = false;

	for (int i = 0; i < len; i++)
	{
		char		c = text[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > JSON_UNTRUSTED_MAX_DEPTH)
				return true;
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return false;
}

Jsonb *
json_parse_untrusted(const char *text, int len, char **error)
{
	JsonLexContext *lex;
	JsonParseErrorType rc;
	char	   *copy;
	MemoryContext oldcxt = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	*error = NULL;
	if (len == 0)
	{
		*error = pstrdup("empty body");
		return NULL;
	}
	if (!pg_verifymbstr(text, len, true) || memchr(text, '\0', len) != NULL)
	{
		*error = pstrdup("body is not valid UTF-8 text");
		return NULL;
	}
	if (json_too_deep(text, len))
	{
		*error = psprintf("body nests deeper than %d levels", JSON_UNTRUSTED_MAX_DEPTH);
		return NULL;
	}

	copy = pnstrdup(text, len);
	lex = makeJsonLexContextCstringLen(copy, len, PG_UTF8, true);
	rc = pg_parse_json(lex, &nullSemAction);
	if (rc != JSON_SUCCESS)
	{
		*error = psprintf("body is not JSON: %s", json_errdetail(rc, lex));
		return NULL;
	}

	/*
	 * The grammar is valid; jsonb can still refuse a few things (\u0000,
	 * numbers beyond numeric's range).  Those errors come from pure
	 * functions that hold no resources, so catching them is safe.
	 */
	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(copy)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		*error = psprintf("body is not acceptable JSON: %s", edata->message);
		FreeErrorData(edata);
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

bool
json_get(JsonbContainer *container, const char *key, JsonbValue *out)
{
	JsonbValue *v;

	if (container == NULL || !JsonContainerIsObject(container))
		return false;
	v = getKeyJsonValueFromContainer(container, key, strlen(key), out);
	return v != NULL;
}

char *
json_scalar_text(const JsonbValue *value)
{
	switch (value->type)
	{
		case jbvString:
			return pnstrdup(value->val.string.val, value->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(value->val.numeric)));
		case jbvBool:
			return pstrdup(value->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

char *
json_get_text(JsonbContainer *container, const char *key)
{
	JsonbValue	v;

	if (!json_get(container, key, &v))
		return NULL;
	return json_scalar_text(&v);
}

JsonbContainer *
json_get_container(JsonbContainer *container, const char *key)
{
	JsonbValue	v;

	if (!json_get(container, key, &v) || v.type != jbvBinary)
		return NULL;
	return v.val.binary.data;
}

const char *
json_type_name(const JsonbValue *value)
{
	switch (value->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsArray(value->val.binary.data) ? "array" : "object";
		default:
			return "value";
	}
}

void
json_append_raw(StringInfo buf, bool *first, const char *key, const char *raw)
{
	if (!*first)
		appendStringInfoChar(buf, ',');
	*first = false;
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
	appendStringInfoString(buf, raw);
}

void
json_append_string(StringInfo buf, bool *first, const char *key, const char *value)
{
	if (!*first)
		appendStringInfoChar(buf, ',');
	*first = false;
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
	escape_json(buf, value);
}
