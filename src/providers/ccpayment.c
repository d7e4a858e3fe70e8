/*-------------------------------------------------------------------------
 *
 * ccpayment.c
 *	  The ccpayment provider: withdrawals through the v1 API of the seed
 *	  (POST /ccpayment/v1/withdraw, status by /ccpayment/v1/bill/info) or,
 *	  with account option api_version 2, the v2 API the provider's SDKs use
 *	  (/ccpayment/v2/applyAppWithdrawToNetwork or ...ToCwallet, status by
 *	  /ccpayment/v2/getAppWithdrawRecord); and its signed webhooks.
 *
 * Both versions put Appid, Timestamp (seconds) and Sign in headers and sign
 * the exact body bytes sent: v1 Sign = hex SHA-256(appId + appSecret +
 * timestamp + body), v2 Sign = hex HMAC-SHA256(appSecret, appId +
 * timestamp + body).  A webhook is verified by the same rule (with the
 * account's webhook_secret when it has one) and a timestamp window before
 * anything in it is read.  A duplicate order id (11011) or a repeated
 * submit (11007) is settled by a status query of the same order id, never
 * by a new one.
 *
 *
 * Longer than most files because it speaks two API versions with their own
 * fields, paths, signatures and error tables; a provider is one file
 * (README, Adding a provider).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "../crypto.h"
#include "../jsonutil.h"
#include "provider.h"

#define CCPAYMENT_V1_CREATE "/ccpayment/v1/withdraw"
#define CCPAYMENT_V1_STATUS "/ccpayment/v1/bill/info"
#define CCPAYMENT_V2_NETWORK "/ccpayment/v2/applyAppWithdrawToNetwork"
#define CCPAYMENT_V2_CWALLET "/ccpayment/v2/applyAppWithdrawToCwallet"
#define CCPAYMENT_V2_STATUS "/ccpayment/v2/getAppWithdrawRecord"
#define CCPAYMENT_SUCCESS "10000"
#define CCPAYMENT_RATE_LIMIT_WAIT_MS 1000
#define CCPAYMENT_DEFAULT_WEBHOOK_WINDOW_S 300

static const char *const ccpayment_credential_keys[] = {
	"app_id", "app_secret", "webhook_secret", NULL
};
static const char *const ccpayment_option_keys[] = {"api_version", "webhook_window_s", NULL};
static const char *const v1_fields[] = {
	"merchant_order_id", "address", "token_id", "value", "memo", NULL
};
static const char *const v2_fields[] = {
	"orderId", "coinId", "chain", "address", "memo", "amount", "merchantPayNetworkFee",
	"networkFeeInquiryID", "notifyUrl", "cwalletUser", NULL
};

/*
 * v1's own codes: the seed (003) shows 10000 (success) and 224066
 * "Service error, please try again"; every other v1 code is unknown, and
 * never read as the v2 code that happens to share its number.
 */
static const ProviderCode ccpayment_v1_code_list[] = {
	{"224066", CODE_MAYBE, 0, "provider service error, please try again"},
};

/* the v2 error table of providers.md, section 3.2 */
static const ProviderCode ccpayment_v2_code_list[] = {
	{"10001", CODE_MAYBE, 0, "the provider reports a failure"},
	{"11000", CODE_TERMINAL, 0, "the provider refused an argument"},
	{"11001", CODE_TERMINAL, 0, "the provider refused a header"},
	{"11002", CODE_MAYBE, 0, "provider internal error"},
	{"11003", CODE_TERMINAL, 0, "not found"},
	{"11004", CODE_RETRY, CCPAYMENT_RATE_LIMIT_WAIT_MS, "rate limit reached"},
	{"11005", CODE_TERMINAL, 0, "the signature was refused; check the account's app_id and app_secret, and api_version"},
	{"11006", CODE_TERMINAL, 0, "the request had expired; check the server clock (timestamps are valid 2 minutes)"},
	{"11007", CODE_DUPLICATE, 0, "repeated submit of the order"},
	{"11011", CODE_DUPLICATE, 0, "duplicate order id"},
	{"11013", CODE_TERMINAL, 0, "this version is not supported; check the account's api_version"},
	{"11014", CODE_TERMINAL, 0, "the provider blocked this IP address as malicious"},
	{"11018", CODE_RETRY, CCPAYMENT_RATE_LIMIT_WAIT_MS, "frequent operation"},
	{"12000", CODE_TERMINAL, 0, "the merchant is disabled"},
	{"12001", CODE_TERMINAL, 0, "the merchant does not exist; check the account's app_id"},
	{"12002", CODE_TERMINAL, 0, "this server's IP address is not on the merchant's whitelist"},
	{"12003", CODE_TERMINAL, 0, "the API is disabled for this merchant"},
	{"14000", CODE_TERMINAL, 0, "insufficient balance"},
	{"14001", CODE_TERMINAL, 0, "the fee is too low"},
	{"14002", CODE_TERMINAL, 0, "the address is inactive"},
	{"14003", CODE_TERMINAL, 0, "a memo is required"},
	{"14004", CODE_TERMINAL, 0, "withdrawals on this chain are disabled"},
	{"14005", CODE_TERMINAL, 0, "below the minimum"},
	{"14006", CODE_TERMINAL, 0, "above the maximum"},
	{"14007", CODE_TERMINAL, 0, "the address format is wrong"},
	{"14008", CODE_TERMINAL, 0, "cannot withdraw to oneself"},
	{"14011", CODE_TERMINAL, 0, "insufficient balance in the fee account"},
	{"14013", CODE_TERMINAL, 0, "too many decimals"},
	{"14017", CODE_TERMINAL, 0, "the address is blacklisted"},
	{"14018", CODE_TERMINAL, 0, "withdrawals are disabled"},
	{"14019", CODE_TERMINAL, 0, "the amount minus the fee is below the minimum"},
	{"14026", CODE_TERMINAL, 0, "the address is risky"},
};

static const ProviderCodeTable ccpayment_v1_codes = PROVIDER_CODE_TABLE("code", ccpayment_v1_code_list);
static const ProviderCodeTable ccpayment_v2_codes = PROVIDER_CODE_TABLE("code", ccpayment_v2_code_list);

/* record statuses of both versions and of the batch API */
static const ProviderStatus ccpayment_status_list[] = {
	{"Pending", STATE_PROCESSING}, {"Processing", STATE_PROCESSING}, {"Init", STATE_PROCESSING},
	{"Reviewing", STATE_REVIEW}, {"Rejected", STATE_REJECTED},
	{"Successful", STATE_SUCCEEDED}, {"Success", STATE_SUCCEEDED}, {"Completed", STATE_SUCCEEDED},
	{"Failed", STATE_FAILED},
};
static const ProviderStatusTable ccpayment_statuses = PROVIDER_STATUS_TABLE(ccpayment_status_list, false);

/* pay_status of a webhook */
static const ProviderStatus ccpayment_pay_status_list[] = {
	{"success", STATE_SUCCEEDED}, {"failed", STATE_FAILED},
};
static const ProviderStatusTable ccpayment_pay_statuses = PROVIDER_STATUS_TABLE(ccpayment_pay_status_list, false);

static int
api_version(Jsonb *options)
{
	return account_option_int(options, "api_version", 1, 1, 2);
}

static void
ccpayment_check_options(Jsonb *options)
{
	(void) api_version(options);
	(void) account_option_int(options, "webhook_window_s", CCPAYMENT_DEFAULT_WEBHOOK_WINDOW_S, 10, 86400);
}

static void
ccpayment_check_credentials(Jsonb *credentials)
{
	static const char *const required[] = {"app_id", "app_secret"};

	for (int i = 0; i < lengthof(required); i++)
		if (json_get_text(&credentials->root, required[i]) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
					 errmsg("ccpayment credentials lack \"%s\"", required[i])));
}

static char *
order_id_field(Jsonb *request, const char *field, int min_len)
{
	char	   *id = request_string(request, "ccpayment", field, false, 64);

	if (id == NULL)
		return random_hex(16);
	if ((int) strlen(id) < min_len ||
		strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(id))
		request_field_error("ccpayment", field,
							psprintf("must be %d to 64 letters, digits, '-' or '_'", min_len), NULL);
	return id;
}

/*
 * v1's memo is an Integer in the seed (003): a JSON integer, or a string
 * of digits (what applications holding tags as text pass), kept as the
 * digits and sent as a JSON number.  NULL when absent.
 */
static char *
v1_memo(Jsonb *request)
{
	JsonbValue	v;
	char	   *text;

	if (!json_get(&request->root, "memo", &v) || v.type == jbvNull)
		return NULL;
	if (v.type != jbvNumeric && v.type != jbvString)
		request_field_error("ccpayment", "memo", psprintf("must be an integer, not %s", json_type_name(&v)),
							NULL);
	text = json_scalar_text(&v);
	if (text[0] == '\0' || strlen(text) > 19 || strspn(text, "0123456789") != strlen(text))
		request_field_error("ccpayment", "memo", "must be a non-negative integer (v1 documents memo as an Integer)",
							"Use api_version 2 for memos that are not numbers.");
	return text;
}

static void
validate_v1(Jsonb *request, ValidatedRequest *out)
{
	const char *p = "ccpayment";
	char	   *order_id;
	char	   *address;
	char	   *token_id;
	char	   *value;
	char	   *memo;
	StringInfoData json;
	bool		first = true;

	request_reject_unknown_fields(request, p, v1_fields);
	order_id = order_id_field(request, "merchant_order_id", 1);
	address = request_string(request, p, "address", true, 256);
	token_id = request_string(request, p, "token_id", true, 64);
	request_amount(request, p, "value", &value);
	memo = v1_memo(request);

	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	json_append_string(&json, &first, "merchant_order_id", order_id);
	json_append_string(&json, &first, "address", address);
	json_append_string(&json, &first, "token_id", token_id);
	json_append_string(&json, &first, "value", value);
	if (memo)
		json_append_raw(&json, &first, "memo", memo);	/* an Integer, as the seed says */
	appendStringInfoChar(&json, '}');
	out->idempotency_key = order_id;
	out->request_json = json.data;
	out->asset = token_id;
	out->amount = value;
	out->destination = address;
}

static void
validate_v2(Jsonb *request, ValidatedRequest *out)
{
	const char *p = "ccpayment";
	JsonbValue	v;
	char	   *order_id;
	int64		coin_id;
	char	   *amount;
	char	   *cwallet_user;
	StringInfoData json;
	bool		first = true;

	request_reject_unknown_fields(request, p, v2_fields);
	order_id = order_id_field(request, "orderId", 3);
	request_int(request, p, "coinId", true, &coin_id);
	if (coin_id <= 0)
		request_field_error(p, "coinId", "must be a positive coin id", NULL);
	request_amount(request, p, "amount", &amount);
	cwallet_user = request_string(request, p, "cwalletUser", false, 128);

	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	json_append_string(&json, &first, "orderId", order_id);
	json_append_raw(&json, &first, "coinId", psprintf(INT64_FORMAT, coin_id));
	if (cwallet_user != NULL)
	{
		/* to a Cwallet user: no chain, address or network options */
		static const char *const network_only[] = {
			"chain", "address", "memo", "merchantPayNetworkFee", "networkFeeInquiryID", "notifyUrl"
		};

		for (int i = 0; i < lengthof(network_only); i++)
			if (json_get(&request->root, network_only[i], &v))
				request_field_error(p, network_only[i], "does not go with cwalletUser",
									"A withdrawal goes either to a Cwallet user (cwalletUser) or to an address on a chain (chain, address).");
		json_append_string(&json, &first, "cwalletUser", cwallet_user);
		out->destination = cwallet_user;
	}
	else
	{
		char	   *chain = request_string(request, p, "chain", true, 32);
		char	   *address = request_string(request, p, "address", true, 256);
		char	   *memo = request_string(request, p, "memo", false, 128);
		char	   *inquiry = request_string(request, p, "networkFeeInquiryID", false, 128);
		char	   *notify_url = request_string(request, p, "notifyUrl", false, 150);

		json_append_string(&json, &first, "chain", chain);
		json_append_string(&json, &first, "address", address);
		if (memo)
			json_append_string(&json, &first, "memo", memo);
		if (json_get(&request->root, "merchantPayNetworkFee", &v))
		{
			if (v.type != jbvBool)
				request_field_error(p, "merchantPayNetworkFee",
									psprintf("must be true or false, not %s", json_type_name(&v)), NULL);
			json_append_raw(&json, &first, "merchantPayNetworkFee", v.val.boolean ? "true" : "false");
		}
		if (inquiry)
			json_append_string(&json, &first, "networkFeeInquiryID", inquiry);
		if (notify_url)
		{
			if (strncmp(notify_url, "https://", 8) != 0 && strncmp(notify_url, "http://", 7) != 0)
				request_field_error(p, "notifyUrl", "must be an http(s) URL", NULL);
			json_append_string(&json, &first, "notifyUrl", notify_url);
		}
		out->destination = address;
	}
	json_append_string(&json, &first, "amount", amount);
	appendStringInfoChar(&json, '}');
	out->idempotency_key = order_id;
	out->request_json = json.data;
	out->asset = psprintf(INT64_FORMAT, coin_id);
	out->amount = amount;
}

static void
ccpayment_validate(Jsonb *request, Jsonb *options, Jsonb *rules, ValidatedRequest *out)
{
	if (api_version(options) == 2)
		validate_v2(request, out);
	else
		validate_v1(request, out);
}

/* The Sign of (timestamp, body) under the account's rule. */
static char *
ccpayment_sign(int version, const char *app_id, const char *secret, const char *timestamp,
			   const char *body, int bodylen)
{
	StringInfoData msg;
	char	   *sign;

	initStringInfo(&msg);
	appendStringInfoString(&msg, app_id);
	if (version == 1)
		appendStringInfoString(&msg, secret);
	appendStringInfoString(&msg, timestamp);
	appendBinaryStringInfo(&msg, body, bodylen);
	sign = version == 1 ? sha256_hex(msg.data, msg.len)
		: hmac_sha256_hex(secret, strlen(secret), msg.data, msg.len);
	explicit_bzero(msg.data, msg.len);
	return sign;
}

/*
 * SQL: withdraw._ccpayment_signature(version, app_id, app_secret,
 * timestamp, body) — the Sign, for the computed examples in pg_regress.
 */
PG_FUNCTION_INFO_V1(withdraw_ccpayment_signature);
Datum
withdraw_ccpayment_signature(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(4);

	PG_RETURN_TEXT_P(cstring_to_text(ccpayment_sign(PG_GETARG_INT32(0),
													text_to_cstring(PG_GETARG_TEXT_PP(1)),
													text_to_cstring(PG_GETARG_TEXT_PP(2)),
													text_to_cstring(PG_GETARG_TEXT_PP(3)),
													VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body))));
}

/* A signed POST of body to path; the audit copy is the body (it holds no secret). */
static void
ccpayment_request(WithdrawAccount *account, const char *path, const char *body, HttpRequest *req)
{
	char	   *app_id = account_credential(account, "app_id");
	char	   *secret = account_credential(account, "app_secret");
	char	   *timestamp = psprintf(INT64_FORMAT, epoch_ms(GetCurrentTimestamp()) / 1000);

	http_request_init(req, "POST", join_url(account->base_url, path));
	appendStringInfoString(&req->body, body);
	http_request_header(req, "Content-Type", "application/json");
	http_request_header(req, "Appid", app_id);
	http_request_header(req, "Timestamp", timestamp);
	http_request_header(req, "Sign", ccpayment_sign(api_version(account->options), app_id, secret,
													timestamp, req->body.data, req->body.len));
	explicit_bzero(secret, strlen(secret));
	req->audit = pstrdup(body);
}

static char *
request_body(Jsonb *request)
{
	StringInfoData body;
	bool		first = true;

	initStringInfo(&body);
	appendStringInfoChar(&body, '{');
	request_to_json_fields(request, &body, &first);
	appendStringInfoChar(&body, '}');
	return body.data;
}

static void
ccpayment_build_create(WithdrawalJob *job, HttpRequest *req)
{
	const char *path = CCPAYMENT_V1_CREATE;

	if (api_version(job->account->options) == 2)
		path = json_get_text(&job->request->root, "cwalletUser") ? CCPAYMENT_V2_CWALLET
			: CCPAYMENT_V2_NETWORK;
	ccpayment_request(job->account, path, request_body(job->request), req);
}

/*
 * The {code, msg, data} answer, with *code as digits ("010000" reads as
 * "10000"); NULL (and *why) when there is none.
 */
static Jsonb *
ccpayment_answer(HttpResponse *res, char **code, char **msg, char **why)
{
	Jsonb	   *body = provider_answer_json(res, why);
	char	   *code_text;

	if (body == NULL)
		return NULL;
	code_text = json_get_text(&body->root, "code");
	if (code_text == NULL || code_text[0] == '\0' || strlen(code_text) > 9 ||
		strspn(code_text, "0123456789") != strlen(code_text))
	{
		*why = psprintf("HTTP %ld, answer without a code", res->status);
		return NULL;
	}
	*code = psprintf("%d", atoi(code_text));
	*msg = json_get_text(&body->root, "msg");
	return body;
}

/* the code table of the account's API version */
static const ProviderCodeTable *
codes_of(int version)
{
	return version == 1 ? &ccpayment_v1_codes : &ccpayment_v2_codes;
}

static void
ccpayment_parse_create(WithdrawalJob *job, HttpResponse *res, Outcome *out)
{
	char	   *code;
	char	   *msg = NULL;
	char	   *why = NULL;
	Jsonb	   *body = ccpayment_answer(res, &code, &msg, &why);
	JsonbContainer *data;

	if (body == NULL)
	{
		out->kind = OUTCOME_UNKNOWN;
		out->message = why;
		return;
	}
	out->provider_status = psprintf("code %s", code);
	if (strcmp(code, CCPAYMENT_SUCCESS) == 0)
	{
		char	   *id;

		data = json_get_container(&body->root, "data");
		id = data ? json_get_text(data, api_version(job->account->options) == 2 ? "recordId" : "order_id")
			: NULL;
		if (id == NULL || id[0] == '\0')
		{
			out->kind = OUTCOME_RECONCILE;
			out->message = pstrdup("accepted without an order id");
			return;
		}
		out->kind = OUTCOME_SUBMITTED;
		out->provider_id = id;
		if (data != NULL)
		{
			static const char *const keys[][2] = {{"network_fee", "fee"}};

			out->details = details_json(data, keys, lengthof(keys));
		}
		return;
	}
	provider_refusal(codes_of(api_version(job->account->options)), code, msg, out);
}

/*
 * v1's bill/info takes up to 100 merchant order ids, so v1 polls are
 * batched; v2's getAppWithdrawRecord takes one.
 */
static bool
ccpayment_batches_status(Jsonb *options)
{
	return api_version(options) == 1;
}

static void
ccpayment_build_status_batch(WithdrawAccount *account, WithdrawalJob **jobs, int n,
							 HttpRequest *req)
{
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"merchant_order_ids\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&body, ',');
		escape_json(&body, jobs[i]->idempotency_key);
	}
	appendStringInfoString(&body, "]}");
	ccpayment_request(account, CCPAYMENT_V1_STATUS, body.data, req);
}

static void
ccpayment_build_status(WithdrawalJob *job, HttpRequest *req)
{
	StringInfoData body;
	bool		first = true;

	if (api_version(job->account->options) == 1)
	{
		ccpayment_build_status_batch(job->account, &job, 1, req);
		return;
	}
	initStringInfo(&body);
	appendStringInfoChar(&body, '{');
	json_append_string(&body, &first, "orderId", job->idempotency_key);
	appendStringInfoChar(&body, '}');
	ccpayment_request(job->account, CCPAYMENT_V2_STATUS, body.data, req);
}

/* two JSON objects of details as one */
static char *
merge_details(const char *a, const char *b)
{
	Jsonb	   *merged = DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
															 DirectFunctionCall1(jsonb_in, CStringGetDatum(a)),
															 DirectFunctionCall1(jsonb_in, CStringGetDatum(b))));

	return JsonbToCString(NULL, &merged->root, 64);
}

/*
 * The data of a status answer in *data (NULL when it has none); false,
 * with every outcome saying why, when the answer is not one or the query
 * was refused.
 */
static bool
status_data(int version, HttpResponse *res, int n, Outcome *outs, JsonbContainer **data)
{
	char	   *code = NULL;
	char	   *msg = NULL;
	char	   *why = NULL;
	Jsonb	   *body = ccpayment_answer(res, &code, &msg, &why);

	for (int i = 0; i < n; i++)
		outs[i].kind = OUTCOME_NO_CHANGE;
	if (body != NULL && strcmp(code, CCPAYMENT_SUCCESS) != 0)
		why = psprintf("status query refused, %s", provider_code_message(codes_of(version), code, msg));
	if (why == NULL)
	{
		*data = json_get_container(&body->root, "data");
		return true;
	}
	for (int i = 0; i < n; i++)
	{
		outs[i].message = why;
		if (body != NULL && strcmp(code, "11004") == 0)
			outs[i].retry_after_ms = CCPAYMENT_RATE_LIMIT_WAIT_MS;
	}
	return false;
}

/* An outcome from a record's status; record_* are already set. */
static void
record_state(JsonbContainer *record, Outcome *out)
{
	char	   *status = json_get_text(record, "status");

	out->provider_status = status;
	out->state = provider_state(&ccpayment_statuses, status);
	if (out->state == STATE_NONE)
	{
		out->message = psprintf("unrecognized status \"%s\"", status ? status : "(none)");
		return;
	}
	out->kind = OUTCOME_STATE;
}

/*
 * v1: bill/info lists {order_detail, trade_list} for the ids it knows, in
 * any order; each job gets the entry whose merchant_order_id is its key.
 */
static void
ccpayment_parse_status_batch(WithdrawalJob **jobs, int n, HttpResponse *res, Outcome *outs)
{
	static const char *const keys[][2] = {{"txid", "txid"}, {"network_fee", "fee"},
	{"network_fee_crypto", "fee_asset"}};
	JsonbContainer *data;

	if (!status_data(api_version(jobs[0]->account->options), res, n, outs, &data))
		return;
	if (data == NULL || !JsonContainerIsArray(data))
	{
		for (int i = 0; i < n; i++)
			outs[i].message = pstrdup("status answer without a list of orders");
		return;
	}
	for (int i = 0; i < n; i++)
	{
		JsonbContainer *entry = list_entry_of(data, "order_detail", "merchant_order_id",
											  jobs[i]->idempotency_key);
		JsonbContainer *record = json_get_container(entry, "order_detail");
		JsonbContainer *trades = json_get_container(entry, "trade_list");
		JsonbValue *trade = trades && JsonContainerIsArray(trades) && JsonContainerSize(trades) > 0
			? getIthJsonbValueFromContainer(trades, 0) : NULL;

		if (entry == NULL)
		{
			outs[i].message = pstrdup("withdrawal not listed by the provider yet");
			continue;
		}
		outs[i].provider_id = json_get_text(record, "order_id");
		if (trade != NULL && trade->type == jbvBinary)
			outs[i].details = details_json(trade->val.binary.data, keys, lengthof(keys));
		outs[i].record_amount = json_get_text(record, "order_amount");	/* v1 shows no address */
		record_state(record, &outs[i]);
	}
}

static void
ccpayment_parse_status(WithdrawalJob *job, HttpResponse *res, Outcome *out)
{
	static const char *const keys[][2] = {{"txId", "txid"}};
	static const char *const fee_keys[][2] = {{"amount", "fee"}, {"coinSymbol", "fee_asset"}};
	JsonbContainer *data;
	JsonbContainer *record;
	JsonbContainer *fee;

	if (api_version(job->account->options) == 1)
	{
		ccpayment_parse_status_batch(&job, 1, res, out);
		return;
	}
	if (!status_data(api_version(job->account->options), res, 1, out, &data))
		return;
	record = json_get_container(data, "record");
	if (record == NULL)
	{
		out->message = pstrdup("withdrawal not listed by the provider yet");
		return;
	}
	out->provider_id = json_get_text(record, "recordId");
	out->details = details_json(record, keys, lengthof(keys));
	fee = json_get_container(record, "fee");
	if (fee != NULL)
		out->details = merge_details(out->details, details_json(fee, fee_keys, lengthof(fee_keys)));
	out->record_amount = json_get_text(record, "amount");
	out->record_destination = json_get_text(record, json_get_text(&job->request->root, "cwalletUser")
											? "cwalletUser" : "toAddress");
	record_state(record, out);
}

/* A header of the callback, whatever its case. */
static char *
header(Jsonb *headers, const char *name)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;
	bool		match = false;

	if (headers == NULL || !JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		return NULL;
	it = JsonbIteratorInit(&headers->root);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
			match = v.val.string.len == strlen(name) &&
				pg_strncasecmp(v.val.string.val, name, v.val.string.len) == 0;
		else if (token == WJB_VALUE && match && v.type == jbvString)
			return pnstrdup(v.val.string.val, v.val.string.len);
	}
	return NULL;
}

/*
 * A webhook: Appid must be the account's, Sign must verify over the raw
 * body with the account's rule, Timestamp must be within the window;
 * only then is the body read.
 */
static bool
ccpayment_read_callback(WithdrawAccount *account, const char *body, int len, Jsonb *headers,
						CallbackNotice *out, char **error)
{
	static const char *const keys[][2] = {
		{"txid", "txid"}, {"network_fee", "fee"}, {"network_fee_crypto", "fee_asset"},
		{"net_receivable", "net_receivable"}, {"chain", "chain"},
	};
	char	   *app_id = header(headers, "Appid");
	char	   *timestamp = header(headers, "Timestamp");
	char	   *sign = header(headers, "Sign");
	char	   *secret;
	char	   *expected;
	int			window = account_option_int(account->options, "webhook_window_s",
											CCPAYMENT_DEFAULT_WEBHOOK_WINDOW_S, 10, 86400);
	Jsonb	   *content;
	char	   *pay_status;

	if (app_id == NULL || timestamp == NULL || sign == NULL)
	{
		*error = pstrdup("the Appid, Timestamp and Sign headers are required");
		return false;
	}
	if (strcmp(app_id, account_credential(account, "app_id")) != 0)
	{
		*error = pstrdup("the Appid header is not this account's app_id");
		return false;
	}
	if (timestamp_from_digits(timestamp, 1000) == 0)
	{
		*error = pstrdup("the Timestamp header is not Unix seconds");
		return false;
	}
	secret = json_get_text(&account->credentials->root, "webhook_secret");
	if (secret == NULL)
		secret = account_credential(account, "app_secret");
	expected = ccpayment_sign(api_version(account->options), app_id, secret, timestamp, body, len);
	explicit_bzero(secret, strlen(secret));
	if (!signature_equal(expected, sign))
	{
		*error = pstrdup("the Sign header does not verify over the body");
		return false;
	}
	if (!timestamp_within(timestamp, window, "Timestamp", error))
		return false;

	content = provider_body_json(body, len, error);
	if (content == NULL)
		return false;
	out->content = content;
	out->kind = CALLBACK_WITHDRAWAL;
	out->idempotency_key = json_get_text(&content->root, "merchant_order_id");
	if (out->idempotency_key == NULL)
		out->idempotency_key = json_get_text(&content->root, "orderId");
	out->provider_id = json_get_text(&content->root,
									 api_version(account->options) == 2 ? "recordId" : "order_id");
	out->amount = json_get_text(&content->root, "withdraw_amount");
	pay_status = json_get_text(&content->root, "pay_status");
	out->provider_status = pay_status ? psprintf("pay_status %s", pay_status) : NULL;
	out->state = provider_state(&ccpayment_pay_statuses, pay_status);
	out->details = details_json(&content->root, keys, lengthof(keys));
	out->sent_at = timestamp_from_digits(timestamp, 1000);
	return true;
}

static const ProviderStatusBatch ccpayment_status_batch = {
	.max = 100,
	.batches = ccpayment_batches_status,
	.build = ccpayment_build_status_batch,
	.parse = ccpayment_parse_status_batch,
};

static const ProviderCallbacks ccpayment_callbacks = {
	.read = ccpayment_read_callback,
	.ack = "success",
	.refusal = NULL,
};

PROVIDER_DEFINE(ccpayment) = {
	.name = "ccpayment",
	.credential_keys = ccpayment_credential_keys,
	.option_keys = ccpayment_option_keys,
	.default_polls_per_second = 20,
	.check_options = ccpayment_check_options,
	.check_credentials = ccpayment_check_credentials,
	.validate = ccpayment_validate,
	.build_create = ccpayment_build_create,
	.parse_create = ccpayment_parse_create,
	.build_status = ccpayment_build_status,
	.parse_status = ccpayment_parse_status,
	.status_batch = &ccpayment_status_batch,
	.callbacks = &ccpayment_callbacks,
};
