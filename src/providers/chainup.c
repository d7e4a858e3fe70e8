/*-------------------------------------------------------------------------
 *
 * chainup.c
 *	  The chainup provider (ChainUp Custody WaaS v2 billing API): creates
 *	  through /api/v2/billing/withdraw, status of up to 100 withdrawals per
 *	  call through withdrawList, the account's list by increasing id through
 *	  syncWithdrawList, and the platform's two callbacks: the second
 *	  confirmation it asks before paying and its notifications.
 *
 * Every exchange carries "app_id=...&data=..." (a form body for the
 * withdraw POST, the query string of the two lists' GETs) whose data is an
 * RSA envelope (envelope.c) of a JSON object with time (a long), charset
 * and version "v2" besides the call's fields: we seal with the merchant's
 * private key, the platform seals with its wallet key and we open with its
 * public key.  An answer that does not open is read as a plain JSON error
 * (the provider does that for requests it could not read), and only as an
 * error: its code and msg, never a success or a status.  A repeated request_id
 * (110088) is never answered with a new one: the withdrawal is settled by
 * looking its request_id up in withdrawList.
 *
 * The platform signs its envelopes block by block, with nothing over the
 * whole, and the seed documents no structure that binds the blocks.  What
 * binds them here: the block shape (envelope.c), one JSON document naming
 * no key twice (chainup_document), the ids each message must carry (the
 * request ids asked for, the stored withdrawal's), the notification's own
 * clock, and, for a failure reported by notification, a status poll whose
 * sealed answer decides.  An answer that is not sealed is believed only
 * when it reports an error.
 *
 *
 * Longer than most files, and one file all the same: a provider is one
 * file (README, Adding a provider), and ChainUp's three parts (sealed
 * exchanges, the list walked by id, the two callbacks) share the key cache,
 * the sealing and the binding rules above.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "../crypto.h"
#include "../envelope.h"
#include "../jsonutil.h"
#include "provider.h"

#define CHAINUP_CREATE_PATH "/api/v2/billing/withdraw"
#define CHAINUP_LIST_PATH "/api/v2/billing/withdrawList"
#define CHAINUP_SYNC_PATH "/api/v2/billing/syncWithdrawList"
#define CHAINUP_BATCH_MAX 100	/* request ids per withdrawList call */
#define CHAINUP_SYNC_PAGE 100	/* records per syncWithdrawList answer */
#define CHAINUP_DEFAULT_CONFIRM_WINDOW_MS (10 * 60 * 1000)
/* the documented notification retries span 170 minutes (1 s ... 128 min) */
#define CHAINUP_DEFAULT_NOTIFY_WINDOW_MS (3 * 3600 * 1000)

static const char *const chainup_credential_keys[] = {
	"app_id", "merchant_private_key", "platform_public_key", NULL
};
static const char *const chainup_option_keys[] = {"confirm_window_ms", "notify_window_ms", NULL};
static const char *const chainup_fields[] = {
	"request_id", "from_uid", "to_address", "memo", "amount", "symbol", NULL
};

/* the error codes of the provider's appendix (providers.md, 1.6) */
static const ProviderCode chainup_code_list[] = {
	{"100001", CODE_MAYBE, 0, "provider system error"},
	{"100004", CODE_TERMINAL, 0, "the provider refused a parameter"},
	{"100005", CODE_TERMINAL, 0, "the provider could not verify the request; check that the public half of merchant_private_key is the one uploaded to ChainUp"},
	{"100007", CODE_TERMINAL, 0, "this server's IP address is not on the account's ChainUp whitelist"},
	{"100015", CODE_TERMINAL, 0, "the app_id is not a ChainUp merchant; check the account's app_id"},
	{"100016", CODE_TERMINAL, 0, "the ChainUp merchant has expired"},
	{"110004", CODE_TERMINAL, 0, "the user is frozen"},
	{"110037", CODE_TERMINAL, 0, "the address is risky"},
	{"110055", CODE_TERMINAL, 0, "the address is wrong"},
	{"110065", CODE_TERMINAL, 0, "the user does not exist"},
	{"110078", CODE_TERMINAL, 0, "the amount is below the minimum"},
	{"110087", CODE_TERMINAL, 0, "the amount is above the maximum"},
	{"110088", CODE_DUPLICATE, 0, "repeated request_id"},
	{"110161", CODE_TERMINAL, 0, "the amount has too many decimals"},
	{"120202", CODE_TERMINAL, 0, "the coin is not supported"},
	{"120206", CODE_TERMINAL, 0, "the second confirmation failed: the application did not confirm this withdrawal through withdraw_confirm"},
	{"120402", CODE_TERMINAL, 0, "insufficient balance"},
	{"120403", CODE_TERMINAL, 0, "insufficient fee balance"},
	{"120404", CODE_TERMINAL, 0, "the amount does not cover the fee"},
	{"900006", CODE_TERMINAL, 0, "the user is at risk"},
	{"3040006", CODE_TERMINAL, 0, "cannot transfer to oneself"},
};
static const ProviderCodeTable chainup_codes = PROVIDER_CODE_TABLE("code", chainup_code_list);

/* withdraw status codes: 2, 4, 5, 6 are final; 7 and 8 wait for people */
static const ProviderStatus chainup_status_list[] = {
	{"0", STATE_PROCESSING},	/* risk-control review */
	{"1", STATE_PROCESSING},	/* paying */
	{"2", STATE_REJECTED},		/* audit rejected */
	{"3", STATE_PROCESSING},	/* coins sent (older docs) */
	{"4", STATE_FAILED},
	{"5", STATE_SUCCEEDED},
	{"6", STATE_CANCELLED},
	{"7", STATE_REVIEW},		/* pending KYT */
	{"8", STATE_REVIEW},		/* pending manual review */
};
static const ProviderStatusTable chainup_statuses = PROVIDER_STATUS_TABLE(chainup_status_list, false);

/*
 * A key of an account's credentials, parsed once per process: the worker
 * and callback functions seal and open many envelopes with the same few
 * keys, and parsing a PEM costs more than the RSA operation itself.  The
 * cache is keyed by the key text; EVP_PKEYs live as long as the process.
 */
typedef struct CachedKey
{
	char	   *text;
	bool		private_key;
	EVP_PKEY   *key;
} CachedKey;

#define KEY_CACHE_SIZE 16
static CachedKey key_cache[KEY_CACHE_SIZE];
static int	key_cache_next = 0;

static EVP_PKEY *
cached_key(const char *text, bool private_key, char **error)
{
	CachedKey  *slot;
	EVP_PKEY   *key;

	for (int i = 0; i < KEY_CACHE_SIZE; i++)
		if (key_cache[i].key != NULL && key_cache[i].private_key == private_key &&
			strcmp(key_cache[i].text, text) == 0)
			return key_cache[i].key;

	key = envelope_load_key(text, private_key, error);
	if (key == NULL)
		return NULL;
	slot = &key_cache[key_cache_next];
	key_cache_next = (key_cache_next + 1) % KEY_CACHE_SIZE;
	if (slot->key != NULL)
	{
		EVP_PKEY_free(slot->key);
		explicit_bzero(slot->text, strlen(slot->text));
		pfree(slot->text);
	}
	slot->text = MemoryContextStrdup(TopMemoryContext, text);
	slot->private_key = private_key;
	slot->key = key;
	return key;
}

/*
 * SQL: withdraw._envelope_seal(plaintext, private_key) and
 * withdraw._envelope_open(data, public_key): the provider's published
 * vectors, checked in pg_regress.  Owner only (they take key material).
 */
PG_FUNCTION_INFO_V1(withdraw_envelope_seal);
Datum
withdraw_envelope_seal(PG_FUNCTION_ARGS)
{
	text	   *plain = PG_GETARG_TEXT_PP(0);
	char	   *error = NULL;
	EVP_PKEY   *key = envelope_load_key(text_to_cstring(PG_GETARG_TEXT_PP(1)), true, &error);
	char	   *sealed;

	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid private key: %s", error)));
	sealed = envelope_seal(key, VARDATA_ANY(plain), VARSIZE_ANY_EXHDR(plain), &error);
	EVP_PKEY_free(key);
	if (sealed == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not seal the envelope: %s", error)));
	PG_RETURN_TEXT_P(cstring_to_text(sealed));
}

PG_FUNCTION_INFO_V1(withdraw_envelope_open);
Datum
withdraw_envelope_open(PG_FUNCTION_ARGS)
{
	text	   *data = PG_GETARG_TEXT_PP(0);
	char	   *error = NULL;
	EVP_PKEY   *key = envelope_load_key(text_to_cstring(PG_GETARG_TEXT_PP(1)), false, &error);
	char	   *plain;
	size_t		len;

	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid public key: %s", error)));
	plain = envelope_open(key, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data), &len, &error);
	EVP_PKEY_free(key);
	if (plain == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not open the envelope: %s", error)));
	/* text must be valid in the database encoding */
	pg_verifymbstr(plain, len, false);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(plain, len));
}

static bool
is_request_id(const char *s)
{
	int			len = strlen(s);

	if (len < 1 || len > 64)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == len;
}

/*
 * All three credentials are required, and both keys are read at account
 * creation so that a bad paste fails early.  errhidestmt: the statement
 * carries the keys.
 */
static void
chainup_check_credentials(Jsonb *credentials)
{
	for (const char *const *k = chainup_credential_keys; *k; k++)
	{
		char	   *text = json_get_text(&credentials->root, *k);
		bool		private_key = strcmp(*k, "merchant_private_key") == 0;
		char	   *error = NULL;
		EVP_PKEY   *key;

		if (text == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
					 errmsg("chainup credentials lack \"%s\"", *k)));
		if (strcmp(*k, "app_id") == 0)
			continue;
		key = envelope_load_key(text, private_key, &error);
		if (key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
					 errmsg("invalid chainup credential \"%s\": %s", *k, error),
					 errhint("Give the key as PEM or as the base64 DER text ChainUp's docs show.")));
		if (private_key && EVP_PKEY_get_size(key) < 245)
		{
			EVP_PKEY_free(key);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE), errhidestmt(true),
					 errmsg("invalid chainup credential \"%s\": the key must have at least 2048 bits",
							*k)));
		}
		EVP_PKEY_free(key);
	}
}

static void
chainup_check_options(Jsonb *options)
{
	(void) account_option_int(options, "confirm_window_ms", CHAINUP_DEFAULT_CONFIRM_WINDOW_MS,
							  1000, 24 * 3600 * 1000);
	(void) account_option_int(options, "notify_window_ms", CHAINUP_DEFAULT_NOTIFY_WINDOW_MS,
							  1000, 7 * 24 * 3600 * 1000);
}

static void
chainup_validate(Jsonb *request, Jsonb *options, Jsonb *rules, ValidatedRequest *out)
{
	const char *p = "chainup";
	JsonbValue	v;
	char	   *request_id;
	char	   *from_uid;
	char	   *to_address;
	char	   *memo;
	char	   *amount;
	char	   *symbol;
	StringInfoData json;
	bool		first = true;

	request_reject_unknown_fields(request, p, chainup_fields);

	request_id = request_string(request, p, "request_id", false, 0);
	if (request_id == NULL)
		request_id = random_hex(16);
	else if (!is_request_id(request_id))
		request_field_error(p, "request_id", "must be 1 to 64 letters, digits, '-' or '_'", NULL);

	/* the docs call from_uid a string, the SDKs send an integer: take both */
	if (json_get(&request->root, "from_uid", &v) && v.type == jbvNumeric)
	{
		int64		uid;

		request_int(request, p, "from_uid", true, &uid);
		if (uid <= 0)
			request_field_error(p, "from_uid", "must be a positive ChainUp user id", NULL);
		from_uid = psprintf(INT64_FORMAT, uid);
	}
	else
	{
		from_uid = request_string(request, p, "from_uid", true, 20);
		if (strspn(from_uid, "0123456789") != strlen(from_uid))
			request_field_error(p, "from_uid", "must be a ChainUp user id (digits)", NULL);
	}
	to_address = request_string(request, p, "to_address", true, 256);
	memo = request_string(request, p, "memo", false, 128);
	request_amount(request, p, "amount", &amount);
	symbol = request_string(request, p, "symbol", true, 32);

	/* memo chains take "address_memo" in to_address */
	if (memo != NULL)
		to_address = psprintf("%s_%s", to_address, memo);

	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	json_append_string(&json, &first, "request_id", request_id);
	json_append_string(&json, &first, "from_uid", from_uid);
	json_append_string(&json, &first, "to_address", to_address);
	json_append_string(&json, &first, "amount", amount);
	json_append_string(&json, &first, "symbol", symbol);
	appendStringInfoChar(&json, '}');

	out->idempotency_key = request_id;
	out->request_json = json.data;
	out->asset = symbol;
	out->amount = amount;
	out->destination = to_address;
}

/* ms since the epoch, as digits: the "time" of every envelope (a long, sent as a JSON number) */
static char *
now_ms_text(void)
{
	return psprintf(INT64_FORMAT, epoch_ms(GetCurrentTimestamp()));
}

/* Seals plaintext with the account's private key; ERROR when impossible. */
static char *
chainup_seal(WithdrawAccount *account, const char *plaintext)
{
	char	   *error = NULL;
	char	   *key_text = account_credential(account, "merchant_private_key");
	EVP_PKEY   *key = cached_key(key_text, true, &error);
	char	   *sealed;

	explicit_bzero(key_text, strlen(key_text));
	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chainup account \"%s\": merchant_private_key: %s", account->name, error)));
	sealed = envelope_seal(key, plaintext, strlen(plaintext), &error);
	if (sealed == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("chainup account \"%s\": could not seal the request: %s",
						account->name, error)));
	return sealed;
}

/* Opens an envelope of the platform; NULL with *error when it does not open. */
static char *
chainup_open(WithdrawAccount *account, const char *data, size_t len, char **error)
{
	EVP_PKEY   *key = cached_key(account_credential(account, "platform_public_key"),
										  false, error);
	size_t		plainlen;
	char	   *plain;

	if (key == NULL)
		return NULL;
	plain = envelope_open(key, data, len, &plainlen, error);
	if (plain != NULL && strlen(plain) != plainlen)
	{
		*error = pstrdup("the envelope holds a NUL byte");
		return NULL;
	}
	return plain;
}

/* Keys of the objects being read, innermost last, for duplicate_keys(). */
typedef struct KeyScan
{
	List	   *open;			/* one List of key names per open object */
	bool		duplicate;
} KeyScan;

static WITHDRAW_JSON_ACTION
keyscan_object_start(void *state)
{
	KeyScan    *scan = state;

	scan->open = lappend(scan->open, NIL);
	WITHDRAW_JSON_ACTION_DONE;
}

static WITHDRAW_JSON_ACTION
keyscan_field(void *state, char *fname, bool isnull)
{
	KeyScan    *scan = state;
	ListCell   *top = list_last_cell(scan->open);

	lfirst(top) = lappend((List *) lfirst(top), fname);
	WITHDRAW_JSON_ACTION_DONE;
}

static int
keyscan_cmp(const ListCell *a, const ListCell *b)
{
	return strcmp(lfirst(a), lfirst(b));
}

static WITHDRAW_JSON_ACTION
keyscan_object_end(void *state)
{
	KeyScan    *scan = state;
	List	   *keys = llast(scan->open);

	scan->open = list_delete_last(scan->open);
	list_sort(keys, keyscan_cmp);
	for (int i = 1; i < list_length(keys); i++)
		if (strcmp(list_nth(keys, i - 1), list_nth(keys, i)) == 0)
			scan->duplicate = true;
	list_free(keys);
	WITHDRAW_JSON_ACTION_DONE;
}

/*
 * Does this JSON (already known to be valid) name a key twice in one
 * object?  jsonb keeps the last silently; in a spliced envelope the
 * second copy is the one an attacker brought.
 */
static bool
duplicate_keys(const char *text, size_t len)
{
	KeyScan		scan = {NIL, false};
	JsonSemAction sem;
	char	   *copy = pnstrdup(text, len);
	JsonLexContext *lex = withdraw_json_lexer(copy, len, true);

	memset(&sem, 0, sizeof(sem));
	sem.semstate = &scan;
	sem.object_start = keyscan_object_start;
	sem.object_end = keyscan_object_end;
	sem.object_field_start = keyscan_field;
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		return true;			/* cannot happen: the text parsed before */
	return scan.duplicate;
}

/*
 * The opened plaintext of an envelope as one JSON object, or NULL with
 * *error: it must be one well-formed document, an object, naming no key
 * twice in any object.  With the block shape envelope_open checks and the
 * ids each caller matches, this is what binds the separately signed
 * blocks into one message.
 */
static Jsonb *
chainup_document(const char *plain, char **error)
{
	size_t		len = strlen(plain);
	Jsonb	   *doc = json_parse_untrusted(plain, len, error);

	if (doc == NULL)
		return NULL;
	if (!JB_ROOT_IS_OBJECT(doc) || JB_ROOT_IS_SCALAR(doc))
	{
		*error = pstrdup("the opened data is not a JSON object");
		return NULL;
	}
	if (duplicate_keys(plain, len))
	{
		*error = pstrdup("the opened data names a key twice: not one message");
		return NULL;
	}
	return doc;
}

/*
 * The members every request's data carries (seed 001: "time long
 * required", "charset String required ... UTF-8", "version String
 * required ... v2"), appended to an object under construction.
 */
static void
chainup_common_fields(StringInfo plain, bool *first)
{
	json_append_raw(plain, first, "time", now_ms_text());
	json_append_string(plain, first, "charset", "utf-8");
	json_append_string(plain, first, "version", "v2");
}

/*
 * app_id and the sealed plaintext: a form body for POST (withdraw), the
 * query string for GET (withdrawList and syncWithdrawList, documented as
 * GET).  The audit copy keeps the plaintext (it holds no secret) instead
 * of the envelope.
 */
static void
chainup_request(WithdrawAccount *account, const char *method, const char *path,
				const char *plaintext, HttpRequest *req)
{
	char	   *app_id = account_credential(account, "app_id");
	StringInfoData params;

	initStringInfo(&params);
	appendStringInfoString(&params, "app_id=");
	append_url_encoded(&params, app_id);
	appendStringInfoString(&params, "&data=");
	append_url_encoded(&params, chainup_seal(account, plaintext));
	if (strcmp(method, "GET") == 0)
		http_request_init(req, "GET", psprintf("%s?%s", join_url(account->base_url, path), params.data));
	else
	{
		http_request_init(req, "POST", join_url(account->base_url, path));
		http_request_header(req, "Content-Type", "application/x-www-form-urlencoded");
		appendBinaryStringInfo(&req->body, params.data, params.len);
	}
	req->audit = psprintf("app_id=%s&data=[sealed] %s", app_id, plaintext);
}

/*
 * Can an unsealed answer's code be an error?  Digits that are not all
 * zero: "0", "00", "-0" or "0.0" would say success, which only a sealed
 * answer may say.
 */
static bool
unsealed_error_code(const char *code)
{
	return code[0] != '\0' && strspn(code, "0123456789") == strlen(code) &&
		strspn(code, "0") != strlen(code);
}

/* {"code": code, "msg": msg} and nothing else, for an unsealed error. */
static JsonbContainer *
unsealed_error(const char *code, const char *msg)
{
	StringInfoData json;
	bool		first = true;
	char	   *error;
	Jsonb	   *doc;

	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	json_append_string(&json, &first, "code", code);
	if (msg != NULL)
		json_append_string(&json, &first, "msg", msg);
	appendStringInfoChar(&json, '}');
	doc = json_parse_untrusted(json.data, json.len, &error);
	if (doc == NULL)
		elog(ERROR, "could not rebuild an error answer: %s", error);
	return &doc->root;
}

/*
 * Reads an answer: {"data": envelope} opened with the platform's key, or
 * a plain {"code", "msg"} error.  Returns the decoded {code, msg, data}
 * object, or NULL with *why set; the attempt keeps the opened text.
 */
static JsonbContainer *
chainup_answer(WithdrawAccount *account, HttpResponse *res, char **code, char **msg, char **why)
{
	char	   *error = NULL;
	Jsonb	   *outer = provider_answer_json(res, why);
	char	   *data;
	char	   *plain;
	Jsonb	   *inner;

	if (outer == NULL)
		return NULL;
	data = json_get_text(&outer->root, "data");
	plain = data ? chainup_open(account, data, strlen(data), &error) : NULL;
	if (plain == NULL)
	{
		/*
		 * A plain error object: the platform could not read our request.
		 * Only an error is believed unsealed, and only its code and msg:
		 * a success, whatever its spelling, or anything in its data (a
		 * status, a list) is an unknown outcome.
		 */
		*code = json_get_text(&outer->root, "code");
		*msg = json_get_text(&outer->root, "msg");
		if (*code == NULL || !unsealed_error_code(*code))
		{
			*why = psprintf("HTTP %ld, answer does not open with platform_public_key: %s",
							res->status, data ? error : "no data field");
			return NULL;
		}
		return unsealed_error(*code, *msg);
	}
	res->audit = plain;
	inner = chainup_document(plain, &error);
	if (inner == NULL)
	{
		*why = psprintf("opened answer refused: %s", error);
		return NULL;
	}
	*code = json_get_text(&inner->root, "code");
	*msg = json_get_text(&inner->root, "msg");
	if (*code == NULL)
	{
		*why = pstrdup("opened answer without a code");
		return NULL;
	}
	return &inner->root;
}

static void
chainup_build_create(WithdrawalJob *job, HttpRequest *req)
{
	JsonbContainer *r = &job->request->root;
	StringInfoData plain;
	bool		first = true;

	initStringInfo(&plain);
	appendStringInfoChar(&plain, '{');
	json_append_string(&plain, &first, "request_id", json_get_text(r, "request_id"));
	json_append_string(&plain, &first, "from_uid", json_get_text(r, "from_uid"));
	json_append_string(&plain, &first, "to_address", json_get_text(r, "to_address"));
	json_append_string(&plain, &first, "amount", json_get_text(r, "amount"));
	json_append_string(&plain, &first, "symbol", json_get_text(r, "symbol"));
	chainup_common_fields(&plain, &first);
	appendStringInfoChar(&plain, '}');
	chainup_request(job->account, "POST", CHAINUP_CREATE_PATH, plain.data, req);
}

static void
chainup_parse_create(WithdrawalJob *job, HttpResponse *res, Outcome *out)
{
	char	   *code = NULL;
	char	   *msg = NULL;
	char	   *why = NULL;
	JsonbContainer *answer = chainup_answer(job->account, res, &code, &msg, &why);

	if (answer == NULL)
	{
		out->kind = OUTCOME_UNKNOWN;
		out->message = why;
		return;
	}
	out->provider_status = psprintf("code %s", code);
	if (strcmp(code, "0") == 0)
	{
		JsonbContainer *data = json_get_container(answer, "data");
		char	   *id = data ? json_get_text(data, "id") : NULL;

		if (id == NULL || id[0] == '\0')
		{
			out->kind = OUTCOME_RECONCILE;
			out->message = pstrdup("accepted without an id");
			return;
		}
		out->kind = OUTCOME_SUBMITTED;
		out->provider_id = id;
		out->provider_status = psprintf("status %s", json_get_text(data, "status") ?: "0");
		return;
	}
	provider_refusal(&chainup_codes, code, msg, out);
}

/* txid, confirmations and both fees of a record, as a JSON object */
static char *
record_details(JsonbContainer *record)
{
	static const char *const keys[][2] = {
		{"txid", "txid"},
		{"confirmations", "confirmations"},
		{"withdraw_fee", "fee"},
		{"withdraw_fee_symbol", "fee_asset"},
		{"real_fee", "real_fee"},
		{"fee_symbol", "real_fee_asset"},
	};

	return details_json(record, keys, lengthof(keys));
}

static void
chainup_build_status_batch(WithdrawAccount *account, WithdrawalJob **jobs, int n,
						   HttpRequest *req)
{
	StringInfoData ids;
	StringInfoData plain;
	bool		first = true;

	initStringInfo(&ids);
	for (int i = 0; i < n; i++)
		appendStringInfo(&ids, "%s%s", i > 0 ? "," : "", jobs[i]->idempotency_key);
	initStringInfo(&plain);
	appendStringInfoChar(&plain, '{');
	json_append_string(&plain, &first, "ids", ids.data);
	chainup_common_fields(&plain, &first);
	appendStringInfoChar(&plain, '}');
	chainup_request(account, "GET", CHAINUP_LIST_PATH, plain.data, req);
}

/* The outcome of one record of withdrawList for the job it belongs to. */
static void
record_outcome(JsonbContainer *record, Outcome *out)
{
	char	   *status = json_get_text(record, "status");

	out->provider_id = json_get_text(record, "id");
	out->provider_status = psprintf("status %s", status ? status : "(none)");
	out->details = record_details(record);
	out->record_amount = json_get_text(record, "amount");
	out->record_destination = json_get_text(record, "address_to");
	out->state = provider_state(&chainup_statuses, status);
	if (out->state == STATE_NONE)
	{
		out->kind = OUTCOME_NO_CHANGE;
		out->message = psprintf("unrecognized status \"%s\"", status ? status : "(none)");
		return;
	}
	out->kind = OUTCOME_STATE;
}

/*
 * Why a withdrawList answer does not answer what was asked: a record whose
 * request_id was not in the question, or one listed twice.  NULL when
 * every record is one of ours, once.
 */
static char *
foreign_record(JsonbContainer *records, WithdrawalJob **jobs, int n)
{
	int			count = JsonContainerSize(records);
	List	   *seen = NIL;
	ListCell   *lc;

	for (int i = 0; i < count; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(records, i);
		char	   *rid = (elem != NULL && elem->type == jbvBinary) ?
			json_get_text(elem->val.binary.data, "request_id") : NULL;
		bool		asked = false;

		if (rid == NULL)
			return pstrdup("status answer with a record without a request_id");
		for (int j = 0; j < n && !asked; j++)
			asked = strcmp(rid, jobs[j]->idempotency_key) == 0;
		if (!asked)
			return psprintf("status answer lists request_id \"%s\", which was not asked for", rid);
		foreach(lc, seen)
			if (strcmp(lfirst(lc), rid) == 0)
				return psprintf("status answer lists request_id \"%s\" twice", rid);
		seen = lappend(seen, rid);
	}
	return NULL;
}

static void
chainup_parse_status_batch(WithdrawalJob **jobs, int n, HttpResponse *res, Outcome *outs)
{
	char	   *code = NULL;
	char	   *msg = NULL;
	char	   *why = NULL;
	JsonbContainer *answer = chainup_answer(jobs[0]->account, res, &code, &msg, &why);
	JsonbContainer *records = NULL;

	for (int i = 0; i < n; i++)
		outs[i].kind = OUTCOME_NO_CHANGE;
	if (answer != NULL && strcmp(code, "0") != 0)
		why = psprintf("status query refused, %s", provider_code_message(&chainup_codes, code, msg));
	else if (answer != NULL)
	{
		records = json_get_container(answer, "data");
		if (records == NULL || !JsonContainerIsArray(records))
			why = pstrdup("status answer without a list of records");
	}
	if (why == NULL)
		why = foreign_record(records, jobs, n);
	if (why != NULL)
	{
		for (int i = 0; i < n; i++)
			outs[i].message = why;
		return;
	}

	for (int i = 0; i < n; i++)
	{
		JsonbContainer *record = list_entry_of(records, NULL, "request_id", jobs[i]->idempotency_key);

		if (record == NULL)
			outs[i].message = pstrdup("withdrawal not listed by the provider yet");
		else
			record_outcome(record, &outs[i]);
	}
}

static void
chainup_build_status(WithdrawalJob *job, HttpRequest *req)
{
	chainup_build_status_batch(job->account, &job, 1, req);
}

static void
chainup_parse_status(WithdrawalJob *job, HttpResponse *res, Outcome *out)
{
	chainup_parse_status_batch(&job, 1, res, out);
}

static void
chainup_build_sync(WithdrawAccount *account, SyncCursor *cursor, HttpRequest *req)
{
	StringInfoData plain;
	bool		first = true;

	initStringInfo(&plain);
	appendStringInfoChar(&plain, '{');
	/* max_id is a String in the seed: sent as one */
	json_append_string(&plain, &first, "max_id", cursor->position ? cursor->position : "0");
	chainup_common_fields(&plain, &first);
	appendStringInfoChar(&plain, '}');
	chainup_request(account, "GET", CHAINUP_SYNC_PATH, plain.data, req);
}

static RemoteRecord *
chainup_record(JsonbContainer *object)
{
	RemoteRecord *r = palloc0(sizeof(RemoteRecord));

	r->provider_id = json_get_text(object, "id");
	if (r->provider_id == NULL || strspn(r->provider_id, "0123456789") != strlen(r->provider_id) ||
		r->provider_id[0] == '\0' || strlen(r->provider_id) > 18)
		return NULL;
	r->request_id = json_get_text(object, "request_id");
	r->asset = json_get_text(object, "symbol");
	r->amount = json_get_text(object, "amount");
	r->fee = json_get_text(object, "withdraw_fee");
	r->fee_asset = json_get_text(object, "withdraw_fee_symbol");
	r->real_fee = json_get_text(object, "real_fee");
	r->real_fee_asset = json_get_text(object, "fee_symbol");
	r->status = json_get_text(object, "status");
	r->state = provider_state(&chainup_statuses, r->status);
	if (r->state == STATE_NONE)
		r->state = STATE_REVIEW;	/* a status we do not know goes to a person */
	r->txid = json_get_text(object, "txid");
	r->confirmations = json_get_text(object, "confirmations");
	r->requested_at = timestamp_from_digits(json_get_text(object, "created_at"), 1);
	if (r->state == STATE_SUCCEEDED)
		r->confirmed_at = timestamp_from_digits(json_get_text(object, "updated_at"), 1);
	r->raw = JsonbToCString(NULL, object, 256);
	return r;
}

static void
chainup_parse_sync(WithdrawAccount *account, SyncCursor *cursor, HttpResponse *res,
				   SyncResult *out)
{
	char	   *code = NULL;
	char	   *msg = NULL;
	char	   *why = NULL;
	JsonbContainer *answer;
	JsonbContainer *records;
	int64		max_id = cursor->position ? strtoi64(cursor->position, NULL, 10) : 0;
	int			n;

	if (res->transport_failed)
	{
		out->error = pstrdup(res->error ? res->error : "no answer");
		return;
	}
	answer = chainup_answer(account, res, &code, &msg, &why);
	if (answer == NULL)
	{
		out->error = why;
		return;
	}
	if (strcmp(code, "0") != 0)
	{
		out->auth_failed = (strcmp(code, "100005") == 0 || strcmp(code, "100007") == 0 ||
							strcmp(code, "100015") == 0);
		out->error = psprintf("chainup refused the list: %s", provider_code_message(&chainup_codes, code, msg));
		return;
	}
	records = json_get_container(answer, "data");
	if (records == NULL || !JsonContainerIsArray(records))
	{
		out->error = pstrdup("chainup list answer without a list of records");
		return;
	}
	n = JsonContainerSize(records);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(records, i);
		RemoteRecord *r;

		if (elem == NULL || elem->type != jbvBinary ||
			(r = chainup_record(elem->val.binary.data)) == NULL)
			continue;
		out->records = lappend(out->records, r);
		max_id = Max(max_id, strtoi64(r->provider_id, NULL, 10));
	}
	cursor->position = psprintf(INT64_FORMAT, max_id);
	out->more = (n >= CHAINUP_SYNC_PAGE);
}

/* One value of an application/x-www-form-urlencoded body, decoded. */
static char *
form_value(const char *body, int len, const char *key)
{
	int			keylen = strlen(key);
	int			i = 0;

	while (i < len)
	{
		int			end = i;

		while (end < len && body[end] != '&')
			end++;
		if (end - i > keylen && strncmp(body + i, key, keylen) == 0 && body[i + keylen] == '=')
		{
			StringInfoData value;

			initStringInfo(&value);
			for (int j = i + keylen + 1; j < end; j++)
			{
				char		c = body[j];

				if (c == '+')
					c = ' ';
				else if (c == '%' && j + 2 < end && isxdigit((unsigned char) body[j + 1]) &&
						 isxdigit((unsigned char) body[j + 2]))
				{
					char		hex[3] = {body[j + 1], body[j + 2], '\0'};

					c = (char) strtol(hex, NULL, 16);
					j += 2;
				}
				if (c == '\0')
					return NULL;
				appendStringInfoChar(&value, c);
			}
			return value.data;
		}
		i = end + 1;
	}
	return NULL;
}

/*
 * A callback's clock.  The seed calls it "Current timestamp" (a long)
 * without a unit; its examples use milliseconds, but a 10-digit value of
 * seconds read as milliseconds would be 1970.  Read by magnitude: below
 * 10^11 (the year 5138 in seconds, 1973 in milliseconds) it is seconds.
 */
static TimestampTz
chainup_time(const char *text)
{
	if (text == NULL || strlen(text) > 15 || strspn(text, "0123456789") != strlen(text))
		return 0;
	return timestamp_from_digits(text, strlen(text) <= 11 && strtoi64(text, NULL, 10) < INT64CONST(100000000000) ? 1000 : 1);
}

/*
 * The platform's callbacks: a form app_id=...&data=... whose envelope
 * must open with the platform's public key; nothing in it is believed
 * before that.  A check_sum makes it a second-confirmation request.
 *
 * A withdrawal notification carries its own clock (notify_time, ms) and
 * is checked against the account's notify_window_ms by withdraw_callback;
 * its ids are matched against the stored withdrawal (chainup_mismatch).
 * A final state other than success (failed, rejected, cancelled) is not
 * applied on the notification's word: blocks of authentic envelopes can
 * be spliced, and a forged "failed" would make the application pay
 * again.  It only makes the withdrawal due for a status poll, whose
 * sealed withdrawList answer decides.
 */
static bool
chainup_read_callback(WithdrawAccount *account, const char *body, int len, Jsonb *headers,
					  CallbackNotice *out, char **error)
{
	char	   *app_id = form_value(body, len, "app_id");
	char	   *data = form_value(body, len, "data");
	char	   *plain;
	Jsonb	   *content;
	JsonbContainer *c;
	char	   *side;
	char	   *time_text;

	if (data == NULL)
	{
		*error = pstrdup("the body has no data field");
		return false;
	}
	plain = chainup_open(account, data, strlen(data), error);
	if (plain == NULL)
		return false;
	content = chainup_document(plain, error);
	if (content == NULL)
		return false;
	/* the envelope is authentic; an app_id beside it must still be ours */
	if (app_id != NULL && strcmp(app_id, account_credential(account, "app_id")) != 0)
	{
		*error = pstrdup("the app_id is not this account's");
		return false;
	}
	c = &content->root;
	out->content = content;
	out->idempotency_key = json_get_text(c, "request_id");
	out->provider_id = json_get_text(c, "id");
	out->amount = json_get_text(c, "amount");
	time_text = json_get_text(c, "notify_time");
	if (time_text == NULL)
		time_text = json_get_text(c, "time");
	out->sent_at = chainup_time(time_text);

	side = json_get_text(c, "side");
	if (json_get_text(c, "check_sum") != NULL)
		out->kind = CALLBACK_CONFIRM;
	else if (side != NULL && strcmp(side, "deposit") == 0)
		out->kind = CALLBACK_DEPOSIT;
	else if (side != NULL && strcmp(side, "withdraw") == 0)
	{
		char	   *status = json_get_text(c, "status");

		out->kind = CALLBACK_WITHDRAWAL;
		out->provider_status = psprintf("status %s", status ? status : "(none)");
		out->state = provider_state(&chainup_statuses, status);
		out->details = record_details(c);
		out->window_ms = account_option_int(account->options, "notify_window_ms",
											CHAINUP_DEFAULT_NOTIFY_WINDOW_MS, 1000,
											7 * 24 * 3600 * 1000);
		out->confirm_by_poll = out->state == STATE_FAILED || out->state == STATE_REJECTED ||
			out->state == STATE_CANCELLED;
	}
	else
	{
		*error = psprintf("the notification's side is \"%s\", neither withdraw nor deposit",
						  side ? side : "(none)");
		return false;
	}
	return true;
}

/*
 * Does the platform's message describe the request we stored?  A second
 * confirmation names from_uid, to_address, amount and symbol; a
 * withdrawal notification names request_id, id, uid, symbol, amount and
 * address_to (all required by the docs), which must be the withdrawal's
 * own, so that a document pieced together from two envelopes names one
 * withdrawal (the platform's field order puts address_to after the 234th
 * byte when the request_id is long, so a spliced tail shows there).
 */
static char *
chainup_confirm_mismatch(Jsonb *request, CallbackNotice *notice)
{
	static const char *const confirm_fields[][2] = {
		{"from_uid", "from_uid"}, {"to_address", "to_address"}, {"amount", "amount"},
		{"symbol", "symbol"}
	};
	static const char *const notice_fields[][2] = {
		{"request_id", "request_id"}, {"uid", "from_uid"}, {"symbol", "symbol"},
		{"amount", "amount"}, {"address_to", "to_address"}
	};
	bool		is_notice = notice->kind == CALLBACK_WITHDRAWAL;
	const char *const (*fields)[2] = is_notice ? notice_fields : confirm_fields;
	int			nfields = is_notice ? lengthof(notice_fields) : lengthof(confirm_fields);
	const char *what = is_notice ? "notification" : "confirmation";

	if (is_notice && (notice->provider_id == NULL || notice->provider_id[0] == '\0'))
		return pstrdup("the notification has no id");
	if (is_notice && json_get_text(&notice->content->root, "status") == NULL)
		return pstrdup("the notification has no status");
	for (int i = 0; i < nfields; i++)
	{
		char	   *ours = json_get_text(&request->root, fields[i][1]);
		char	   *theirs = json_get_text(&notice->content->root, fields[i][0]);
		bool		same;

		if (theirs == NULL)
			return psprintf("the %s has no %s", what, fields[i][0]);
		if (ours == NULL)
			same = false;
		else if (strcmp(fields[i][1], "amount") == 0)
			same = decimal_equal(ours, theirs);
		else if (is_notice && (strcmp(fields[i][1], "symbol") == 0 ||
							   strcmp(fields[i][1], "to_address") == 0))
			same = pg_strcasecmp(ours, theirs) == 0;	/* as the platform may spell them */
		else
			same = strcmp(ours, theirs) == 0;
		if (!same)
			return psprintf("%s differs: the %s says \"%s\", the withdrawal \"%s\"",
							fields[i][0], what, theirs, ours ? ours : "");
	}
	return NULL;
}

/* {"data": envelope of {"check_sum": echo, "time": now}} confirms; a refusal echoes nothing. */
static char *
chainup_confirm_reply(WithdrawAccount *account, CallbackNotice *notice, bool accept)
{
	StringInfoData plain;
	bool		first = true;

	if (!accept)
		return pstrdup("FAILURE");
	initStringInfo(&plain);
	appendStringInfoChar(&plain, '{');
	json_append_string(&plain, &first, "check_sum",
					   json_get_text(&notice->content->root, "check_sum"));
	json_append_string(&plain, &first, "time", now_ms_text());
	appendStringInfoChar(&plain, '}');
	return psprintf("{\"data\":\"%s\"}", chainup_seal(account, plain.data));
}

static const ProviderSync chainup_sync = {
	.build = chainup_build_sync,
	.parse = chainup_parse_sync,
	.by_id = true,
};

static const ProviderStatusBatch chainup_status_batch = {
	.max = CHAINUP_BATCH_MAX,
	.build = chainup_build_status_batch,
	.parse = chainup_parse_status_batch,
};

static const ProviderCallbacks chainup_callbacks = {
	.read = chainup_read_callback,
	.ack = "SUCCESS",
	.refusal = "FAILURE",
	.confirm_mismatch = chainup_confirm_mismatch,
	.confirm_reply = chainup_confirm_reply,
};

PROVIDER_DEFINE(chainup) = {
	.name = "chainup",
	.credential_keys = chainup_credential_keys,
	.option_keys = chainup_option_keys,
	.check_credentials = chainup_check_credentials,
	.check_options = chainup_check_options,
	.validate = chainup_validate,
	.build_create = chainup_build_create,
	.parse_create = chainup_parse_create,
	.build_status = chainup_build_status,
	.parse_status = chainup_parse_status,
	.sync = &chainup_sync,
	.status_batch = &chainup_status_batch,
	.callbacks = &chainup_callbacks,
};
