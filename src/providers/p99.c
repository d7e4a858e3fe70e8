/*-------------------------------------------------------------------------
 *
 * p99.c
 *	  The p99 provider: its spot withdrawal list (GET /spot/withdrawals)
 *	  and single lookups (GET /spot/withdrawals/:id), mirrored into
 *	  withdraw.remote_withdrawals.
 *
 * p99 API keys can read withdrawals but not create them (creation is the
 * user's own EIP-712 signature, submitted on chain), so this provider has
 * no create.  Authentication is a JWT (Authorization: Bearer) or an HMAC
 * API key: the query string exactly as sent, timestamp in ms appended
 * last, signed with HMAC-SHA256 and followed by &signature=.  The list is
 * newest first; pages are walked with "end" set to the oldest requested_at
 * of the previous page (records of that second are fetched again and
 * de-duplicated by id).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "../crypto.h"
#include "../jsonutil.h"
#include "provider.h"

#define P99_LIST_PATH "/spot/withdrawals"
#define P99_PAGE_LIMIT 200

static const char *const p99_credential_keys[] = {"api_key", "api_secret", "jwt", NULL};

/* signed: funds frozen, waiting for the user's on-chain submit */
static const ProviderStatus p99_status_list[] = {
	{"signed", STATE_PROCESSING},
	{"confirmed", STATE_SUCCEEDED},
	{"expired", STATE_EXPIRED},
};
static const ProviderStatusTable p99_statuses = PROVIDER_STATUS_TABLE(p99_status_list, false);

static bool
has_credential(Jsonb *credentials, const char *key)
{
	char	   *value = json_get_text(&credentials->root, key);

	return value != NULL && value[0] != '\0';
}

/* Either a JWT, or an API key with its secret; never both. */
static void
p99_check_credentials(Jsonb *credentials)
{
	bool		jwt = has_credential(credentials, "jwt");
	bool		key = has_credential(credentials, "api_key");
	bool		secret = has_credential(credentials, "api_secret");

	if (jwt && (key || secret))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errhidestmt(true),
				 errmsg("p99 credentials must hold either \"jwt\" or \"api_key\" and \"api_secret\", not both")));
	if (!jwt && !(key && secret))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errhidestmt(true),
				 errmsg("p99 credentials lack \"jwt\", or \"api_key\" and \"api_secret\"")));
}

/* lowercase hex HMAC-SHA256 of the query string exactly as sent */
static char *
p99_signature(const char *secret, const char *query)
{
	return hmac_sha256_hex(secret, strlen(secret), query, strlen(query));
}

/*
 * SQL: withdraw._p99_signature(secret, query) — the signature the worker
 * computes, for the documented vector in pg_regress.
 */
PG_FUNCTION_INFO_V1(withdraw_p99_signature);
Datum
withdraw_p99_signature(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(p99_signature(text_to_cstring(PG_GETARG_TEXT_PP(0)),
												   text_to_cstring(PG_GETARG_TEXT_PP(1)))));
}

/* Authenticates a GET of path?query: JWT header, or signed query. */
static void
p99_request(WithdrawAccount *account, const char *path, StringInfo query, HttpRequest *req)
{
	char	   *url;

	if (has_credential(account->credentials, "jwt"))
	{
		http_request_init(req, "GET", NULL);
		http_request_header(req, "Authorization",
							psprintf("Bearer %s", account_credential(account, "jwt")));
		req->audit = pstrdup(query->data);
	}
	else
	{
		char	   *secret = account_credential(account, "api_secret");
		char	   *sign;

		appendStringInfo(query, "%stimestamp=" INT64_FORMAT, query->len > 0 ? "&" : "",
						 epoch_ms(GetCurrentTimestamp()));
		sign = p99_signature(secret, query->data);
		explicit_bzero(secret, strlen(secret));
		http_request_init(req, "GET", NULL);
		http_request_header(req, "X-MBX-APIKEY", account_credential(account, "api_key"));
		req->audit = psprintf("%s&signature=[redacted]", query->data);
		appendStringInfo(query, "&signature=%s", sign);
	}
	url = join_url(account->base_url, path);
	req->url = query->len > 0 ? psprintf("%s?%s", url, query->data) : url;
}

static void
append_param(StringInfo query, const char *key, const char *value)
{
	if (query->len > 0)
		appendStringInfoChar(query, '&');
	appendStringInfo(query, "%s=", key);
	append_url_encoded(query, value);
}

static char *
unix_seconds(TimestampTz t)
{
	return psprintf(INT64_FORMAT, epoch_ms(t) / 1000);
}

static void
p99_build_sync(WithdrawAccount *account, SyncCursor *cursor, HttpRequest *req)
{
	StringInfoData query;

	initStringInfo(&query);
	if (cursor->since != 0)
		append_param(&query, "start", unix_seconds(cursor->since));
	if (cursor->position != NULL)
		append_param(&query, "end", cursor->position);
	else if (cursor->until != 0)
		append_param(&query, "end", unix_seconds(cursor->until));
	append_param(&query, "limit", psprintf("%d", P99_PAGE_LIMIT));
	if (cursor->status)
	{
		/* the seed's status ENUM has three values: refuse others before sending */
		if (!provider_status_known(&p99_statuses, cursor->status))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("withdraw_sync filter \"status\" must be signed, confirmed or expired, not \"%s\"",
							cursor->status),
					 errhint("These are the statuses p99 documents for its withdrawal list; omit the filter for all.")));
		append_param(&query, "status", cursor->status);
	}
	if (cursor->token)
		append_param(&query, "token", cursor->token);
	p99_request(account, P99_LIST_PATH, &query, req);
}

static void
p99_build_lookup(WithdrawAccount *account, const char *provider_id, HttpRequest *req)
{
	StringInfoData query;

	/* the id becomes part of the path: letters, digits and dashes only */
	if (provider_id[0] == '\0' || strlen(provider_id) > 64 ||
		strspn(provider_id, "0123456789abcdefABCDEF-") != strlen(provider_id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid p99 withdrawal id \"%s\"", provider_id),
				 errhint("p99 withdrawal ids are UUIDs, as in withdraw.remote_withdrawals.provider_id.")));
	initStringInfo(&query);
	p99_request(account, psprintf("%s/%s", P99_LIST_PATH, provider_id), &query, req);
}

/* One record of the list; NULL when it has no id. */
static RemoteRecord *
p99_record(JsonbContainer *object)
{
	RemoteRecord *r = palloc0(sizeof(RemoteRecord));

	r->provider_id = json_get_text(object, "id");
	if (r->provider_id == NULL || r->provider_id[0] == '\0')
		return NULL;
	r->asset = json_get_text(object, "token");
	r->amount = json_get_text(object, "amount");
	r->fee = json_get_text(object, "fee");
	r->fee_asset = r->asset;
	r->status = json_get_text(object, "status");
	r->state = provider_state(&p99_statuses, r->status);
	if (r->state == STATE_NONE)
		r->state = STATE_REVIEW;	/* a status we do not know goes to a person */
	r->txid = json_get_text(object, "tx_hash");
	r->block_number = json_get_text(object, "block_number");
	r->chain_id = json_get_text(object, "chain_id");
	r->nonce = json_get_text(object, "nonce");
	r->deadline = timestamp_from_digits(json_get_text(object, "deadline"), 1000);
	r->requested_at = timestamp_from_digits(json_get_text(object, "requested_at"), 1000);
	r->confirmed_at = timestamp_from_digits(json_get_text(object, "confirmed_at"), 1000);
	r->raw = JsonbToCString(NULL, object, 256);
	return r;
}

/* Errors common to both calls; true when res is a 200 with JSON in *body. */
static bool
p99_answer(HttpResponse *res, SyncResult *out, Jsonb **body)
{
	char	   *error;

	if (res->transport_failed)
	{
		out->error = pstrdup(res->error ? res->error : "no answer");
		return false;
	}
	if (res->status == 401)
	{
		out->auth_failed = true;
		out->error = pstrdup("p99 refused the credentials (HTTP 401): check the account's api_key and api_secret, or its jwt, and the server clock");
		return false;
	}
	if (res->status == 404)
		out->not_found = true;
	if (res->status != 200)
	{
		Jsonb	   *err = json_parse_untrusted(res->body.data, res->body.len, &error);
		char	   *message = err ? json_get_text(&err->root, "error") : NULL;

		out->error = psprintf("p99 answered HTTP %ld%s%s", res->status,
							  message ? ": " : "", message ? message : "");
		return false;
	}
	*body = json_parse_untrusted(res->body.data, res->body.len, &error);
	if (*body == NULL)
	{
		out->error = psprintf("p99 answer unreadable: %s", error);
		return false;
	}
	return true;
}

static void
p99_parse_sync(WithdrawAccount *account, SyncCursor *cursor, HttpResponse *res, SyncResult *out)
{
	Jsonb	   *body;
	int			n;
	TimestampTz oldest = 0;

	if (!p99_answer(res, out, &body))
		return;
	if (!JB_ROOT_IS_ARRAY(body) || JB_ROOT_IS_SCALAR(body))
	{
		out->error = pstrdup("p99 list answer is not a JSON array");
		return;
	}
	n = JsonContainerSize(&body->root);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&body->root, i);
		RemoteRecord *r;

		if (elem == NULL || elem->type != jbvBinary)
			continue;
		r = p99_record(elem->val.binary.data);
		if (r == NULL)
			continue;
		out->records = lappend(out->records, r);
		if (oldest == 0 || (r->requested_at != 0 && r->requested_at < oldest))
			oldest = r->requested_at;
	}

	/* a full page: the next one ends at its oldest second */
	out->more = (n >= P99_PAGE_LIMIT && oldest != 0 &&
				 (cursor->since == 0 || oldest > cursor->since));
	if (out->more)
	{
		char	   *end = unix_seconds(oldest);

		/*
		 * A whole page within one second cannot be split by "end": step past
		 * that second (records beyond the page limit in it are not listed).
		 */
		if (cursor->position != NULL && strcmp(cursor->position, end) == 0)
			end = unix_seconds(oldest - USECS_PER_SEC);
		cursor->position = end;
	}
}

static void
p99_parse_lookup(WithdrawAccount *account, HttpResponse *res, SyncResult *out)
{
	Jsonb	   *body;
	RemoteRecord *r;

	if (!p99_answer(res, out, &body))
		return;
	if (!JB_ROOT_IS_OBJECT(body) || JB_ROOT_IS_SCALAR(body) || (r = p99_record(&body->root)) == NULL)
	{
		out->error = pstrdup("p99 lookup answer is not a withdrawal record");
		return;
	}
	out->records = list_make1(r);
}

static const ProviderSync p99_sync = {
	.build = p99_build_sync,
	.parse = p99_parse_sync,
	.build_lookup = p99_build_lookup,
	.parse_lookup = p99_parse_lookup,
};

PROVIDER_DEFINE(p99) = {
	.name = "p99",
	.credential_keys = p99_credential_keys,
	.check_credentials = p99_check_credentials,
	.validate = NULL,
	.cannot_create_hint = "p99 API keys can read withdrawals but not create them: a p99 withdrawal is the user's own on-chain submit of a signature only a JWT session can request. Mirror them with withdraw_sync instead.",
	.sync = &p99_sync,
};
