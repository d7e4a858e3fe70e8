/*-------------------------------------------------------------------------
 *
 * jsonutil.h
 *	  Small helpers over PostgreSQL's jsonb for reading requests and
 *	  provider responses, and for writing JSON with proper escaping.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_JSONUTIL_H
#define WITHDRAW_JSONUTIL_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

/* Parses bytes from the network; returns NULL and sets *error on bad input. */
extern Jsonb *json_parse_untrusted(const char *text, int len, char **error);

/* Finds key in an object container; false when absent or not an object. */
extern bool json_get(JsonbContainer *container, const char *key, JsonbValue *out);

/* A field as text: strings as is, numbers and booleans printed; else NULL. */
extern char *json_get_text(JsonbContainer *container, const char *key);

/* The container of a nested object or array field, or NULL. */
extern JsonbContainer *json_get_container(JsonbContainer *container, const char *key);

/* Text form of a scalar JsonbValue (string, numeric, bool), else NULL. */
extern char *json_scalar_text(const JsonbValue *value);

/* Appends "key":"value" (value escaped) to an object under construction. */
extern void json_append_string(StringInfo buf, bool *first, const char *key, const char *value);

/* Appends "key":raw where raw is already valid JSON (a number, say). */
extern void json_append_raw(StringInfo buf, bool *first, const char *key, const char *raw);

/* Human-readable name of a JsonbValue type, for error messages. */
extern const char *json_type_name(const JsonbValue *value);

#endif							/* WITHDRAW_JSONUTIL_H */
