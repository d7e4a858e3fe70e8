/*-------------------------------------------------------------------------
 *
 * zoomex.c
 *	  The zoomex provider: internal transfers through the v1 private API
 *	  (POST /private/v1/asset/withdraw/inner-create), status through
 *	  GET /private/v1/asset/withdraw/query-record.
 *
 * Signing follows the provider's sample code: every body parameter but
 * sign (business fields plus api_key, timestamp, recv_window), sorted by
 * key in byte order, joined as k=v&..., HMAC-SHA256 in lowercase hex; the
 * signature goes both in the body and in X-BAPI-SIGN.  The provider has
 * no lookup by requestId, so an unknown outcome is settled by resending
 * the same requestId (the provider refuses a duplicate with 10014) and
 * then by finding the transfer in query-record by coin, amount and
 * address within the time it was sent.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "../crypto.h"
#include "../jsonutil.h"
#include "provider.h"

#define ZOOMEX_CREATE_PATH "/private/v1/asset/withdraw/inner-create"
#define ZOOMEX_QUERY_PATH "/private/v1/asset/withdraw/query-record"
#define ZOOMEX_DEFAULT_RECV_WINDOW 5000
#define ZOOMEX_DEFAULT_IP_BAN_WAIT_MS (10 * 60 * 1000)
#define ZOOMEX_RATE_LIMIT_WAIT_MS 1000

static const char *const zoomex_credential_keys[] = {"api_key", "api_secret", NULL};
static const char *const zoomex_option_keys[] = {"recv_window", "ip_ban_wait_ms", NULL};
static const char *const zoomex_fields[] = {
	"requestId", "coin", "addressType", "areaCode", "address", "amount", "remark", NULL
};

/* withdrawStatus enum of the provider's docs */
static const ProviderStatus zoomex_status_list[] = {
	{"Pending Review", STATE_REVIEW},
	{"Pending Transfer", STATE_PROCESSING},
	{"Transferred successfully", STATE_SUCCEEDED},
	{"Rejected", STATE_REJECTED},
	{"Cancelled", STATE_CANCELLED},
	{"Fail", STATE_FAILED},
};
static const ProviderStatusTable zoomex_statuses = PROVIDER_STATUS_TABLE(zoomex_status_list, false);

/* documented error codes (providers.md, section 0) */
static const ProviderCode zoomex_code_list[] = {
	{"10001", CODE_TERMINAL, 0, "the provider rejected a parameter"},
	{"10002", CODE_RETRY, 0, "the request time was outside the receive window; check the server clock"},
	{"10003", CODE_TERMINAL, 0, "the API key is invalid; check the account's api_key"},
	{"10004", CODE_TERMINAL, 0, "the signature was refused; check the account's api_secret"},
	{"10005", CODE_TERMINAL, 0, "the API key lacks the withdraw permission"},
	{"10006", CODE_RETRY, ZOOMEX_RATE_LIMIT_WAIT_MS, "rate limit reached"},
	{"10007", CODE_TERMINAL, 0, "authentication failed"},
	{"10009", CODE_TERMINAL, 0, "the server's IP address is banned by the provider"},
	{"10010", CODE_TERMINAL, 0, "the server's IP address is not bound to the API key"},
	{"10014", CODE_DUPLICATE, 0, "duplicate requestId"},
	{"10016", CODE_MAYBE, 0, "provider server error"},
	{"10018", CODE_RETRY, ZOOMEX_RATE_LIMIT_WAIT_MS, "IP rate limit reached"},
	{"110004", CODE_TERMINAL, 0, "insufficient balance"},
	{"110007", CODE_TERMINAL, 0, "insufficient balance"},
	{"110012", CODE_TERMINAL, 0, "insufficient balance"},
};
static const ProviderCodeTable zoomex_codes = PROVIDER_CODE_TABLE("retCode", zoomex_code_list);

/*
 * A requestId: "Custom ID, globally unique" is all the seed says, and
 * applications generate UUIDs with hyphens; letters, digits, '-' and '_'
 * within 64 characters (printable, no separator of the signed string).
 */
static bool
is_request_id(const char *s, int max_len)
{
	int			len = strlen(s);

	if (len < 1 || len > max_len)
		return false;
	for (int i = 0; i < len; i++)
		if (!isalnum((unsigned char) s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

static void
zoomex_check_options(Jsonb *options)
{
	(void) account_option_int(options, "recv_window", ZOOMEX_DEFAULT_RECV_WINDOW, 1, 3600 * 1000);
	(void) account_option_int(options, "ip_ban_wait_ms", ZOOMEX_DEFAULT_IP_BAN_WAIT_MS, 0, 24 * 3600 * 1000);
}

static void
zoomex_validate(Jsonb *request, Jsonb *options, Jsonb *rules, ValidatedRequest *out)
{
	const char *p = "zoomex";
	char	   *request_id;
	char	   *coin;
	char	   *address;
	char	   *remark;
	char	   *amount;
	int64		address_type;
	int64		area_code;
	bool		has_area_code;
	StringInfoData json;
	bool		first = true;

	request_reject_unknown_fields(request, p, zoomex_fields);

	request_id = request_string(request, p, "requestId", false, 0);
	if (request_id == NULL)
		request_id = random_hex(16);
	else if (!is_request_id(request_id, 64))
		request_field_error(p, "requestId", "must be 1 to 64 letters, digits, '-' or '_'",
							"The provider documents it only as a custom, globally unique ID; UUIDs with or without hyphens are accepted.");

	coin = request_string(request, p, "coin", true, 32);
	request_int(request, p, "addressType", true, &address_type);
	if (address_type < 1 || address_type > 3)
		request_field_error(p, "addressType", "must be 1 (email), 2 (phone) or 3 (UID)", NULL);
	has_area_code = request_int(request, p, "areaCode", false, &area_code);
	if (address_type == 2 && !has_area_code)
		request_field_error(p, "areaCode", "is required when addressType is 2 (phone)", NULL);
	if (has_area_code && (area_code < 1 || area_code > 9999))
		request_field_error(p, "areaCode", "must be a country calling code between 1 and 9999", NULL);
	address = request_string(request, p, "address", true, 256);
	request_amount(request, p, "amount", &amount);
	remark = request_string(request, p, "remark", false, 50);

	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	json_append_string(&json, &first, "requestId", request_id);
	json_append_string(&json, &first, "coin", coin);
	json_append_raw(&json, &first, "addressType", psprintf(INT64_FORMAT, address_type));
	if (has_area_code)
		json_append_raw(&json, &first, "areaCode", psprintf(INT64_FORMAT, area_code));
	json_append_string(&json, &first, "address", address);
	json_append_string(&json, &first, "amount", amount);
	if (remark != NULL)
		json_append_string(&json, &first, "remark", remark);
	appendStringInfoChar(&json, '}');

	out->idempotency_key = request_id;
	out->request_json = json.data;
	out->asset = coin;
	out->amount = amount;
	out->destination = address;
}

/*
 * The v1 signature over every parameter: sorted by key, k=v&..., raw
 * values, HMAC-SHA256 in lowercase hex.  Sorts params in place.
 */
static char *
zoomex_signature(const char *api_secret, ParamList *params, char **to_sign)
{
	params_sort(params);
	*to_sign = params_join(params, false);
	return hmac_sha256_hex(api_secret, strlen(api_secret), *to_sign, strlen(*to_sign));
}

/*
 * SQL: withdraw._zoomex_signature(api_secret, params) — the string to sign
 * and the signature, for the documented test vectors in pg_regress.
 */
PG_FUNCTION_INFO_V1(withdraw_zoomex_signature);
Datum
withdraw_zoomex_signature(PG_FUNCTION_ARGS)
{
	char	   *secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *object = PG_GETARG_JSONB_P(1);
	ParamList	params;
	char	   *to_sign;
	char	   *sign;
	Datum		elems[2];

	params_init(&params);
	request_to_params(object, &params);
	sign = zoomex_signature(secret, &params, &to_sign);
	elems[0] = CStringGetTextDatum(to_sign);
	elems[1] = CStringGetTextDatum(sign);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, 2, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Adds api_key, timestamp and recv_window to params, signs them and sets
 * the X-BAPI-* headers; returns the signature.
 */
static char *
zoomex_sign(WithdrawalJob *job, ParamList *params, HttpRequest *req)
{
	char	   *api_key = account_credential(job->account, "api_key");
	char	   *api_secret = account_credential(job->account, "api_secret");
	char	   *timestamp = psprintf(INT64_FORMAT, epoch_ms(GetCurrentTimestamp()));
	char	   *recv_window = psprintf("%d",
									   account_option_int(job->account->options, "recv_window",
														  ZOOMEX_DEFAULT_RECV_WINDOW, 1, 3600 * 1000));
	char	   *to_sign;
	char	   *sign;

	params_add(params, "api_key", api_key);
	params_add(params, "timestamp", timestamp);
	params_add(params, "recv_window", recv_window);
	sign = zoomex_signature(api_secret, params, &to_sign);
	explicit_bzero(api_secret, strlen(api_secret));

	http_request_header(req, "X-BAPI-API-KEY", api_key);
	http_request_header(req, "X-BAPI-SIGN", sign);
	http_request_header(req, "X-BAPI-TIMESTAMP", timestamp);
	http_request_header(req, "X-BAPI-RECV-WINDOW", recv_window);
	return sign;
}

static void
zoomex_build_create(WithdrawalJob *job, HttpRequest *req)
{
	ParamList	params;
	char	   *sign;
	StringInfoData audit;
	bool		first = true;

	http_request_init(req, "POST", join_url(job->account->base_url, ZOOMEX_CREATE_PATH));
	params_init(&params);
	request_to_params(job->request, &params);
	sign = zoomex_sign(job, &params, req);
	http_request_header(req, "Content-Type", "application/json");

	/* the body: the request's fields, then the authentication fields */
	appendStringInfoChar(&req->body, '{');
	request_to_json_fields(job->request, &req->body, &first);
	initStringInfo(&audit);
	appendBinaryStringInfo(&audit, req->body.data, req->body.len);
	for (int i = 0; i < params.count; i++)
	{
		const char *key = params.keys[i];
		bool		audit_first = false;

		if (strcmp(key, "api_key") == 0)
		{
			json_append_string(&req->body, &first, key, params.values[i]);
			json_append_string(&audit, &audit_first, key, "[redacted]");
		}
		else if (strcmp(key, "timestamp") == 0 || strcmp(key, "recv_window") == 0)
		{
			json_append_raw(&req->body, &first, key, params.values[i]);
			json_append_raw(&audit, &audit_first, key, params.values[i]);
		}
	}
	json_append_string(&req->body, &first, "sign", sign);
	appendStringInfoString(&audit, ",\"sign\":\"[redacted]\"}");
	appendStringInfoChar(&req->body, '}');
	req->audit = audit.data;
}

/*
 * A return code is an integer: an optional '-' and 1 to 9 digits.  Empty,
 * "-" or "1-2" would read as 0 (success) through atoi.
 */
static bool
well_formed_code(const char *text)
{
	const char *digits = text;

	if (text == NULL)
		return false;
	if (*digits == '-')
		digits++;
	return digits[0] != '\0' && strlen(digits) <= 9 &&
		strspn(digits, "0123456789") == strlen(digits);
}

/*
 * Reads an answer, in either spelling (retCode/retMsg or the legacy
 * ret_code/ret_msg); returns the parsed body, with *code its return code
 * as digits ("010014" reads as "10014"), or NULL with out set to an
 * unknown outcome.
 */
static Jsonb *
zoomex_answer(HttpResponse *res, Outcome *out, char **code, char **message)
{
	char	   *why = NULL;
	Jsonb	   *body = provider_answer_json(res, &why);
	char	   *code_text;

	if (body == NULL)
	{
		out->kind = OUTCOME_UNKNOWN;
		out->message = why;
		return NULL;
	}
	code_text = json_get_text(&body->root, "retCode");
	if (code_text == NULL)
		code_text = json_get_text(&body->root, "ret_code");
	*message = json_get_text(&body->root, "retMsg");
	if (*message == NULL)
		*message = json_get_text(&body->root, "ret_msg");
	if (*message == NULL)
		*message = "";
	if (!well_formed_code(code_text))
	{
		out->kind = OUTCOME_UNKNOWN;
		out->message = psprintf("HTTP %ld, answer without a return code", res->status);
		return NULL;
	}
	*code = psprintf("%d", atoi(code_text));
	out->provider_status = psprintf("retCode %s", *code);
	return body;
}

/* HTTP-level refusals, whose body is not read. */
static bool
zoomex_http_refusal(WithdrawalJob *job, HttpResponse *res, Outcome *out)
{
	if (res->status == 403)
	{
		out->kind = OUTCOME_NOT_DELIVERED;
		out->retry_after_ms = account_option_int(job->account->options, "ip_ban_wait_ms",
												 ZOOMEX_DEFAULT_IP_BAN_WAIT_MS, 0, 24 * 3600 * 1000);
		out->message = pstrdup("HTTP 403: the provider limits this IP address; waiting before the next request");
		return true;
	}
	if (res->status == 401)
	{
		out->kind = OUTCOME_REJECTED;
		out->message = pstrdup("HTTP 401: the provider refused the API key; check the account's api_key and api_secret");
		return true;
	}
	return false;
}

static void
zoomex_parse_create(WithdrawalJob *job, HttpResponse *res, Outcome *out)
{
	Jsonb	   *body;
	char	   *code;
	char	   *message;

	if (zoomex_http_refusal(job, res, out))
		return;
	body = zoomex_answer(res, out, &code, &message);
	if (body == NULL)
		return;

	if (strcmp(code, "0") == 0)
	{
		char	   *withdraw_id = json_get_text(json_get_container(&body->root, "result"),
											   "withdraw_id");

		if (withdraw_id == NULL || withdraw_id[0] == '\0')
		{
			/* executed, but we were not told its id: find it */
			out->kind = OUTCOME_RECONCILE;
			out->message = pstrdup("accepted without a withdraw_id");
			return;
		}
		out->kind = OUTCOME_SUBMITTED;
		out->provider_id = withdraw_id;
		out->provider_status = pstrdup("accepted");
		return;
	}

	provider_refusal(&zoomex_codes, code, message, out);
}

static void
zoomex_build_status(WithdrawalJob *job, HttpRequest *req)
{
	ParamList	params;
	char	   *sign;
	char	   *query;
	char	   *audit;

	params_init(&params);
	params_add(&params, "withdrawType", "1");
	if (job->provider_id != NULL)
		params_add(&params, "withdrawId", job->provider_id);
	else
	{
		/* reconcile: list internal transfers of this coin since it was sent */
		int64		sent_s = epoch_ms(job->first_sent_at ? job->first_sent_at : job->created_at) / 1000;

		params_add(&params, "coin", json_get_text(&job->request->root, "coin"));
		params_add(&params, "startTime", psprintf(INT64_FORMAT, sent_s - 60));
		params_add(&params, "endTime", psprintf(INT64_FORMAT, epoch_ms(GetCurrentTimestamp()) / 1000 + 60));
		params_add(&params, "pageSize", "50");
		if (job->reconcile_cursor != NULL)
			params_add(&params, "cursor", job->reconcile_cursor);
	}
	http_request_init(req, "GET", NULL);
	sign = zoomex_sign(job, &params, req);
	query = params_join(&params, true);
	req->url = psprintf("%s?%s&sign=%s",
						join_url(job->account->base_url, ZOOMEX_QUERY_PATH), query, sign);

	/* the audit copy names no key and no signature */
	for (int i = 0; i < params.count; i++)
		if (strcmp(params.keys[i], "api_key") == 0)
			params.values[i] = "[redacted]";
	audit = params_join(&params, false);
	req->audit = psprintf("%s&sign=[redacted]", audit);
}

static bool
zoomex_row_matches(WithdrawalJob *job, JsonbContainer *row)
{
	char	   *coin = json_get_text(row, "coin");
	char	   *amount = json_get_text(row, "amount");
	char	   *to_address = json_get_text(row, "to_address");

	return coin && amount && to_address &&
		strcmp(coin, json_get_text(&job->request->root, "coin")) == 0 &&
		strcmp(to_address, json_get_text(&job->request->root, "address")) == 0 &&
		decimal_equal(amount, job->amount);
}

static void
zoomex_parse_status(WithdrawalJob *job, HttpResponse *res, Outcome *out)
{
	Jsonb	   *body;
	char	   *code;
	char	   *message;
	JsonbContainer *rows;
	JsonbContainer *found = NULL;
	int			matches = 0;
	char	   *status;

	out->kind = OUTCOME_NO_CHANGE;
	if (zoomex_http_refusal(job, res, out))
	{
		out->kind = OUTCOME_NO_CHANGE;
		return;
	}
	body = zoomex_answer(res, out, &code, &message);
	if (body == NULL)
	{
		out->kind = OUTCOME_NO_CHANGE;
		return;
	}
	out->provider_status = NULL;
	if (strcmp(code, "0") != 0)
	{
		const ProviderCode *known = provider_code(&zoomex_codes, code);

		out->message = psprintf("status query refused, retCode %s: %s", code, message);
		if (known && known->class == CODE_RETRY)
			out->retry_after_ms = known->retry_after_ms;
		return;
	}

	rows = json_get_container(json_get_container(&body->root, "result"), "rows");
	if (rows == NULL || !JsonContainerIsArray(rows))
	{
		out->message = pstrdup("status answer without result.rows");
		return;
	}
	for (int i = 0; i < JsonContainerSize(rows); i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(rows, i);
		JsonbContainer *row;

		if (elem == NULL || elem->type != jbvBinary)
			continue;
		row = elem->val.binary.data;
		if (job->provider_id != NULL)
		{
			char	   *id = json_get_text(row, "withdraw_id");

			if (id != NULL && strcmp(id, job->provider_id) == 0)
			{
				found = row;
				matches = 1;
				break;
			}
		}
		else if (zoomex_row_matches(job, row))
		{
			found = row;
			matches++;
		}
	}

	if (matches == 0)
	{
		char	   *cursor = json_get_text(json_get_container(&body->root, "result"), "cursor");

		out->message = pstrdup(job->provider_id ? "withdrawal not listed by the provider yet"
							   : "no matching transfer listed by the provider yet");
		/* a reconcile search pages through the whole window */
		if (job->provider_id == NULL && cursor != NULL && cursor[0] != '\0')
			out->next_cursor = cursor;
		return;
	}
	if (matches > 1)
	{
		out->kind = OUTCOME_STATE;
		out->state = STATE_REVIEW;
		out->message = psprintf("%d transfers of the same coin, amount and address match; a person must decide",
								matches);
		return;
	}

	status = json_get_text(found, "status");
	out->provider_id = json_get_text(found, "withdraw_id");
	out->record_amount = json_get_text(found, "amount");
	out->provider_status = status;
	out->state = provider_state(&zoomex_statuses, status);
	if (out->state == STATE_NONE)
	{
		out->message = psprintf("unrecognized status \"%s\"", status ? status : "(none)");
		return;
	}
	out->kind = OUTCOME_STATE;
}

PROVIDER_DEFINE(zoomex) = {
	.name = "zoomex",
	.credential_keys = zoomex_credential_keys,
	.option_keys = zoomex_option_keys,
	.default_create_interval_ms = 1000,
	.default_polls_per_second = 5,
	.check_options = zoomex_check_options,
	.validate = zoomex_validate,
	.build_create = zoomex_build_create,
	.parse_create = zoomex_parse_create,
	.build_status = zoomex_build_status,
	.parse_status = zoomex_parse_status,
};
