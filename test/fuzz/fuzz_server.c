/*-------------------------------------------------------------------------
 *
 * fuzz_server.c
 *	  libFuzzer targets for the parsers that need the server: one per
 *	  provider (its answers and its callbacks) and fiat_gateway's form rules.
 *
 * Those parsers read jsonb, numeric and regex, which exist only inside a
 * backend, so libFuzzer runs inside one: this test-only module is loaded
 * into a single-user postgres (no postmaster, no other sessions) and
 * withdraw_fuzz() hands control to LLVMFuzzerRunDriver.  The provider code
 * is compiled into the module with coverage and ASan/UBSan; the server is
 * not, and runs with the ASan runtime preloaded.  See run.sh.
 *
 * The property every target checks: bytes from the network never raise an
 * ERROR out of a parser.  The worker calls parse_create/parse_status
 * outside any PG_TRY, so an ERROR there would stop it; a crash, a sanitizer
 * report or such an ERROR aborts, and libFuzzer keeps the input (with
 * WITHDRAW_FUZZ_ERRORS=count the ERRORs are counted instead, to measure a
 * long run; see note_error).  Form-rule
 * validation is the one place where an ERROR is the answer (a request that
 * breaks a rule); there only an internal error (XX000) is a finding.
 *
 * To get past authentication the harness signs or seals what the fuzzer
 * made, as the provider would, when the input's flag byte asks for it; the
 * other inputs exercise the refusals.  It includes ccpayment.c and
 * fiat_gateway.c to reach their static signing functions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdint.h>
#include <time.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "../../src/envelope.h"
#include "../../src/providers/ccpayment.c"
#include "../../src/providers/fiat_gateway.c"

PG_MODULE_MAGIC;

extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*callback) (const uint8_t *data, size_t size));

/* An input: a selector byte, a flag byte, then the bytes of the body. */
typedef struct FuzzInput
{
	uint8		selector;
	uint8		flags;
	const char *body;
	int			len;
} FuzzInput;

#define FLAG_AUTHENTIC	0x01	/* sign or seal the body as the provider would */
#define FLAG_KNOWN_ID	0x02	/* the job already has a provider id */
#define FLAG_ALT		0x04	/* the provider's other account variant */

/*
 * chainup seals with one RSA private-key operation per 245 bytes: longer
 * inputs go unsealed (they still reach the outer parsers; the opening of
 * long envelopes is fuzz_envelope's), else they would take seconds each.
 */
#define SEAL_MAX		16384

/* the providers, in the order of fuzz_providers[] (a selector byte picks one) */
enum
{
	ZOOMEX, P99, CHAINUP, CCPAYMENT, FIAT_GATEWAY, NPROVIDERS
};

/* a provider's parsers, in the order a selector byte picks them (seeds.py) */
enum
{
	PARSE_CREATE, PARSE_STATUS, PARSE_BATCH, PARSE_SYNC, PARSE_LOOKUP, PARSE_CALLBACK, NPARSERS
};

static const char *const provider_targets[NPROVIDERS] = {
	"zoomex", "p99", "chainup", "ccpayment", "fiat_gateway",
};

static MemoryContext fuzz_cxt;
static void (*fuzz_target) (FuzzInput *in);
static const char *fuzz_target_name;
static int	fuzz_provider;		/* a provider's target: which */

/*
 * What an ERROR out of a parser does: abort (the default, a finding that
 * fails the run) or, with WITHDRAW_FUZZ_ERRORS=count, a line on stderr and
 * the first input of each distinct message kept beside the crashes, and
 * the run goes on (to count them in a long run).
 */
static bool count_errors;
static const char *artifact_prefix = "./";
static List *error_messages;	/* distinct ones seen, in TopMemoryContext */
static int	errors_seen;

/* the accounts, two variants per provider (ccpayment v1/v2, fiat modes) */
static WithdrawAccount *accounts[NPROVIDERS][2];
static EVP_PKEY *wallet_key;	/* chainup's platform side, sealing */

/* the providers' objects (their files define them: PROVIDER_DEFINE) */
extern const Provider zoomex_provider;
extern const Provider p99_provider;
extern const Provider chainup_provider;
extern const Provider ccpayment_provider;
extern const Provider fiat_gateway_provider;

static const Provider *const fuzz_providers[NPROVIDERS] = {
	&zoomex_provider, &p99_provider, &chainup_provider, &ccpayment_provider,
	&fiat_gateway_provider,
};

static Jsonb *
jsonb_of(const char *text)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}

static char *
pem_of(EVP_PKEY *key, bool private_key)
{
	BIO		   *bio = BIO_new(BIO_s_mem());
	char	   *data;
	long		len;
	char	   *pem;

	if (private_key)
		PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
	else
		PEM_write_bio_PUBKEY(bio, key);
	len = BIO_get_mem_data(bio, &data);
	pem = pnstrdup(data, len);
	BIO_free(bio);
	return pem;
}

static WithdrawAccount *
make_account(const Provider *provider, const char *options, const char *credentials)
{
	WithdrawAccount *a = palloc0(sizeof(WithdrawAccount));

	a->id = 1;
	a->name = "fuzz";
	a->provider = provider;
	a->base_url = "http://127.0.0.1:9";
	a->options = jsonb_of(options);
	a->credentials = jsonb_of(credentials);
	return a;
}

/* the accounts but chainup's, whose keys are generated */
static const struct
{
	int			provider;
	int			variant;
	const char *options;
	const char *credentials;
}			plain_accounts[] =
{
	{ZOOMEX, 0, "{}", "{\"api_key\": \"fz-key\", \"api_secret\": \"fz-secret\"}"},
	{P99, 0, "{}", "{\"api_key\": \"fz-key\", \"api_secret\": \"fz-secret\", \"jwt\": \"fz.jwt.x\"}"},
	{CCPAYMENT, 0, "{\"api_version\": 1}", "{\"app_id\": \"fz-app\", \"app_secret\": \"fz-secret\"}"},
	{CCPAYMENT, 1, "{\"api_version\": 2}", "{\"app_id\": \"fz-app\", \"app_secret\": \"fz-secret\"}"},
	{FIAT_GATEWAY, 0, "{\"notify_url\": \"https://app.example/notify\"}",
	"{\"uid\": \"fz-uid\", \"secret_key\": \"fz-secret\"}"},
	{FIAT_GATEWAY, 1, "{\"sign_mode\": \"concat\", \"notify_url\": \"https://app.example/notify\"}",
	"{\"uid\": \"fz-uid\", \"secret_key\": \"fz-secret\"}"},
};

/* Accounts with made-up credentials; chainup's keys are generated. */
static void
make_accounts(void)
{
	EVP_PKEY   *merchant = EVP_RSA_gen(2048);
	StringInfoData chainup;

	wallet_key = EVP_RSA_gen(2048);
	if (merchant == NULL || wallet_key == NULL)
		elog(ERROR, "could not generate RSA keys");
	initStringInfo(&chainup);
	appendStringInfoString(&chainup, "{\"app_id\": \"fz-app\"");
	json_append_string(&chainup, &(bool){false}, "merchant_private_key", pem_of(merchant, true));
	json_append_string(&chainup, &(bool){false}, "platform_public_key", pem_of(wallet_key, false));
	appendStringInfoChar(&chainup, '}');

	for (int i = 0; i < lengthof(plain_accounts); i++)
	{
		int			p = plain_accounts[i].provider;

		accounts[p][plain_accounts[i].variant] =
			make_account(fuzz_providers[p], plain_accounts[i].options, plain_accounts[i].credentials);
	}
	accounts[CHAINUP][0] = accounts[CHAINUP][1] = make_account(fuzz_providers[CHAINUP], "{}", chainup.data);
	accounts[ZOOMEX][1] = accounts[ZOOMEX][0];
	accounts[P99][1] = accounts[P99][0];
}

/* The input's bytes, NUL-terminated (they may hold NULs of their own). */
static char *
copy_bytes(const char *data, int len)
{
	char	   *copy = palloc(len + 1);

	memcpy(copy, data, len);
	copy[len] = '\0';
	return copy;
}

static WithdrawAccount *
account_of(int provider, uint8 flags)
{
	return accounts[provider][(flags & FLAG_ALT) ? 1 : 0];
}

/*
 * The body as the provider would send it when the input asks to be
 * authentic: chainup's sealed in an envelope under the platform key,
 * fiat_gateway's with a valid sign inserted (a JSON object only).
 */
static char *
authentic_answer(int provider, FuzzInput *in, int *len)
{
	char	   *error = NULL;

	*len = in->len;
	if (!(in->flags & FLAG_AUTHENTIC))
		return copy_bytes(in->body, in->len);
	if (provider == CHAINUP && in->len <= SEAL_MAX)
	{
		char	   *sealed = envelope_seal(wallet_key, in->body, in->len, &error);
		char	   *body = psprintf("{\"code\": \"0\", \"data\": \"%s\"}", sealed ? sealed : "");

		*len = strlen(body);
		return body;
	}
	if (provider == FIAT_GATEWAY)
	{
		Jsonb	   *parsed = json_parse_untrusted(in->body, in->len, &error);
		ParamList	params;
		const char *open;
		char	   *sign;
		char	   *body;

		open = memchr(in->body, '{', in->len);
		if (parsed == NULL || !JB_ROOT_IS_OBJECT(parsed) || JB_ROOT_IS_SCALAR(parsed) || open == NULL)
			return copy_bytes(in->body, in->len);
		answer_params(parsed, &params, false);
		sign = fiat_sign(&params, "fz-secret", (in->flags & FLAG_ALT) != 0);
		/* a sign member first: a later "sign" in the input still wins */
		body = psprintf("%.*s{\"sign\": \"%s\", %.*s", (int) (open - in->body), in->body, sign,
						(int) (in->len - (open - in->body) - 1), open + 1);
		*len = strlen(body);
		return body;
	}
	return copy_bytes(in->body, in->len);
}

/* A withdrawal of this account in the state a poll or create sees. */
static WithdrawalJob *
make_job(WithdrawAccount *account, int n, uint8 flags)
{
	WithdrawalJob *job = palloc0(sizeof(WithdrawalJob));

	job->id = n + 1;
	job->account = account;
	job->idempotency_key = psprintf("fz-%d", n + 1);
	job->request = jsonb_of("{\"amount\": \"1.50\", \"address\": \"fz-address\"}");
	job->amount = "1.50";
	job->destination = "fz-address";
	job->provider_id = (flags & FLAG_KNOWN_ID) ? psprintf("%d", 1000 + n) : NULL;
	job->created_at = GetCurrentTimestamp();
	job->first_sent_at = job->created_at;
	return job;
}

/*
 * A provider's target ("zoomex", "p99", "chainup", "ccpayment",
 * "fiat_gateway"): the selector picks one of its parsers, the body is what
 * the network gave it.
 *
 * Answers (create, status, batched status, list page, lookup): the body is
 * the HTTP answer, with a status from the flags.
 */
static void
parse_answer(int provider, int parser, FuzzInput *in)
{
	static const long statuses[] = {200, 200, 200, 401, 400, 404, 429, 500};
	WithdrawAccount *account = account_of(provider, in->flags);
	const Provider *p = account->provider;
	HttpResponse res;
	Outcome		out;
	SyncCursor	cursor;
	SyncResult	sync;
	int			len;
	char	   *body = authentic_answer(provider, in, &len);

	memset(&res, 0, sizeof(res));
	res.status = statuses[(in->flags >> 5) % lengthof(statuses)];
	res.maybe_delivered = true;
	initStringInfo(&res.body);
	appendBinaryStringInfo(&res.body, body, len);
	memset(&out, 0, sizeof(out));
	memset(&cursor, 0, sizeof(cursor));
	memset(&sync, 0, sizeof(sync));

	if (parser == PARSE_CREATE)
		p->parse_create(make_job(account, 0, in->flags & ~FLAG_KNOWN_ID), &res, &out);
	else if (parser == PARSE_STATUS)
		p->parse_status(make_job(account, 0, in->flags), &res, &out);
	else if (parser == PARSE_BATCH)
	{
		int			n = 1 + ((in->flags >> 3) & 3);
		WithdrawalJob **jobs = palloc(sizeof(WithdrawalJob *) * n);
		Outcome    *outs = palloc0(sizeof(Outcome) * n);

		for (int i = 0; i < n; i++)
			jobs[i] = make_job(account, i, in->flags);
		p->status_batch->parse(jobs, n, &res, outs);
	}
	else if (parser == PARSE_SYNC)
		p->sync->parse(account, &cursor, &res, &sync);
	else if (parser == PARSE_LOOKUP)
		p->sync->parse_lookup(account, &res, &sync);
}

/*
 * Callbacks (chainup, ccpayment, fiat_gateway): an authentic input is
 * sealed or signed, with a current timestamp.  What an authentic
 * confirmation asks is then checked against a stored request and
 * answered, as withdraw_confirm does.
 */
static void
read_callback(int provider, FuzzInput *in)
{
	WithdrawAccount *account = account_of(provider, in->flags);
	const Provider *p = account->provider;
	char	   *now = psprintf(INT64_FORMAT, (int64) time(NULL));
	char	   *body;
	int			len = in->len;
	Jsonb	   *headers = jsonb_of("{}");
	CallbackNotice notice;
	char	   *error = NULL;

	if (provider == CHAINUP && (in->flags & FLAG_AUTHENTIC) && in->len <= SEAL_MAX)
	{
		char	   *sealed = envelope_seal(wallet_key, in->body, in->len, &error);

		body = psprintf("app_id=fz-app&data=%s", sealed ? sealed : "");
		len = strlen(body);
	}
	else if (provider == CCPAYMENT)
	{
		const char *sign = (in->flags & FLAG_AUTHENTIC)
			? ccpayment_sign(api_version(account->options), "fz-app", "fz-secret", now,
							 in->body, in->len)
			: "0000";

		body = copy_bytes(in->body, in->len);
		headers = jsonb_of(psprintf("{\"Appid\": \"fz-app\", \"Timestamp\": \"%s\", \"Sign\": \"%s\"}",
									now, sign));
	}
	else
		body = authentic_answer(provider, in, &len);

	memset(&notice, 0, sizeof(notice));
	notice.state = STATE_NONE;
	if (!p->callbacks->read(account, body, len, headers, &notice, &error))
		return;
	if (notice.kind == CALLBACK_CONFIRM && p->callbacks->confirm_mismatch)
	{
		Jsonb	   *stored = jsonb_of("{\"request_id\": \"fz-1\", \"from_uid\": \"7\", "
									  "\"to_address\": \"fz-address\", \"amount\": \"1.50\", "
									  "\"symbol\": \"usdt\"}");
		char	   *mismatch = p->callbacks->confirm_mismatch(stored, &notice);

		(void) p->callbacks->confirm_reply(account, &notice, mismatch == NULL);
	}
}

/* Whether the provider has that parser (a selector naming none is skipped). */
static bool
has_parser(const Provider *p, int parser)
{
	switch (parser)
	{
		case PARSE_CREATE:
			return p->parse_create != NULL;
		case PARSE_STATUS:
			return p->parse_status != NULL;
		case PARSE_BATCH:
			return p->status_batch != NULL;
		case PARSE_SYNC:
			return p->sync != NULL;
		case PARSE_LOOKUP:
			return p->sync != NULL && p->sync->parse_lookup != NULL;
		case PARSE_CALLBACK:
			return p->callbacks != NULL;
	}
	return false;
}

static void
target_provider(FuzzInput *in)
{
	int			parser = in->selector % NPARSERS;

	if (!has_parser(fuzz_providers[fuzz_provider], parser))
		return;
	if (parser == PARSE_CALLBACK)
		read_callback(fuzz_provider, in);
	else
		parse_answer(fuzz_provider, parser, in);
}

/*
 * "form_rules": an answer of fiat_gateway's rule query, NUL, a request.
 * The rules the parser keeps must be valid jsonb (they are stored as
 * such), and a request checked against them either passes or gets an
 * ERROR that is not internal.
 */
static void
target_form_rules(FuzzInput *in)
{
	const char *nul = memchr(in->body, '\0', in->len);
	int			rules_len = nul ? nul - in->body : in->len;
	FuzzInput	answer = {in->selector, in->flags, in->body, rules_len};
	WithdrawAccount *account = account_of(FIAT_GATEWAY, in->flags);
	HttpResponse res;
	char	   *error = NULL;
	char	   *rules;
	Jsonb	   *request;
	Jsonb	   *rules_jsonb;
	ValidatedRequest validated;
	int			len;
	char	   *body = authentic_answer(FIAT_GATEWAY, &answer, &len);

	memset(&res, 0, sizeof(res));
	res.status = 200;
	initStringInfo(&res.body);
	appendBinaryStringInfo(&res.body, body, len);
	rules = fiat_gateway_provider.form_rules->parse(account, "fz-pay", &res, &error);
	if (rules == NULL || nul == NULL)
		return;
	rules_jsonb = jsonb_of(rules);
	request = json_parse_untrusted(nul + 1, in->len - rules_len - 1, &error);
	if (request == NULL)
		return;
	memset(&validated, 0, sizeof(validated));
	PG_TRY();
	{
		fiat_gateway_provider.validate(request, account->options, rules_jsonb, &validated);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(fuzz_cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_INTERNAL_ERROR)
			PG_RE_THROW();
		FlushErrorState();
	}
	PG_END_TRY();
}

/*
 * Counting mode: one more input that raised an ERROR.  The first input of
 * each distinct message (up to 50) is kept as <artifact_prefix>error-<n>.
 */
static void
note_error(ErrorData *edata, const uint8_t *data, size_t size)
{
	ListCell   *lc;
	MemoryContext old;
	char	   *path;
	FILE	   *f;

	errors_seen++;
	foreach(lc, error_messages)
	{
		if (strcmp((char *) lfirst(lc), edata->message) == 0)
			return;
	}
	if (list_length(error_messages) >= 50)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	error_messages = lappend(error_messages, pstrdup(edata->message));
	MemoryContextSwitchTo(old);
	path = psprintf("%serror-%d", artifact_prefix, list_length(error_messages));
	f = fopen(path, "wb");
	if (f != NULL)
	{
		fwrite(data, 1, size, f);
		fclose(f);
	}
	fprintf(stderr, "withdraw_fuzz %s: new ERROR %s (%d inputs so far): %s; input kept in %s\n",
			fuzz_target_name, unpack_sql_state(edata->sqlerrcode), errors_seen, edata->message, path);
}

/* Counting mode, at exit (libFuzzer exits when done): the totals. */
static void
print_error_count(void)
{
	fprintf(stderr, "withdraw_fuzz %s: %d inputs raised a parser ERROR, %d distinct messages\n",
			fuzz_target_name, errors_seen, list_length(error_messages));
}

/* One input: a fresh memory context, and any ERROR is a finding. */
static int
run_one(const uint8_t *data, size_t size)
{
	MemoryContext old;
	FuzzInput	in;

	if (size < 2)
		return 0;
	in.selector = data[0];
	in.flags = data[1];
	in.body = (const char *) data + 2;
	in.len = size - 2;
	old = MemoryContextSwitchTo(fuzz_cxt);
	PG_TRY();
	{
		fuzz_target(&in);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(fuzz_cxt);
		edata = CopyErrorData();
		if (!count_errors)
		{
			fprintf(stderr, "withdraw_fuzz %s: a parser raised ERROR %s: %s\n", fuzz_target_name,
					unpack_sql_state(edata->sqlerrcode), edata->message);
			abort();
		}
		FlushErrorState();
		note_error(edata, data, size);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextReset(fuzz_cxt);
	return 0;
}

/*
 * SQL: withdraw_fuzz(target, libfuzzer_args text[]) — runs libFuzzer on
 * one target with the given arguments; libFuzzer exits the process when
 * it is done, so this never returns.
 */
PG_FUNCTION_INFO_V1(withdraw_fuzz);
Datum
withdraw_fuzz(PG_FUNCTION_ARGS)
{
	Datum	   *items;
	int			nitems;
	int			argc;
	char	  **argv;

	fuzz_target_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strcmp(fuzz_target_name, "form_rules") == 0)
		fuzz_target = target_form_rules;
	for (int i = 0; i < NPROVIDERS; i++)
	{
		if (strcmp(fuzz_target_name, provider_targets[i]) == 0)
		{
			fuzz_target = target_provider;
			fuzz_provider = i;
		}
	}
	if (fuzz_target == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown fuzz target \"%s\"", fuzz_target_name),
				 errhint("The targets are zoomex, p99, chainup, ccpayment, fiat_gateway and form_rules.")));
	count_errors = getenv("WITHDRAW_FUZZ_ERRORS") != NULL &&
		strcmp(getenv("WITHDRAW_FUZZ_ERRORS"), "count") == 0;
	if (count_errors)
		atexit(print_error_count);

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
					  &items, NULL, &nitems);
	argc = nitems + 1;
	argv = MemoryContextAllocZero(TopMemoryContext, sizeof(char *) * (argc + 1));
	argv[0] = "withdraw_fuzz";
	for (int i = 0; i < nitems; i++)
	{
		argv[i + 1] = MemoryContextStrdup(TopMemoryContext, TextDatumGetCString(items[i]));
		if (strncmp(argv[i + 1], "-artifact_prefix=", 17) == 0)
			artifact_prefix = argv[i + 1] + 17;
	}

	/*
	 * A single-user backend never sets the reference point of
	 * check_stack_depth() (a deep recursion there is a SIGSEGV, where a
	 * worker gets "stack depth limit exceeded"): set it here, as a worker has.
	 */
	(void) set_stack_base();

	MemoryContextSwitchTo(TopMemoryContext);
	make_accounts();
	fuzz_cxt = AllocSetContextCreate(TopMemoryContext, "withdraw fuzz input", ALLOCSET_DEFAULT_SIZES);
	PG_RETURN_INT32(LLVMFuzzerRunDriver(&argc, &argv, run_one));
}
