/*-------------------------------------------------------------------------
 *
 * provider.h
 *	  The interface every provider implements, and the registry.
 *
 * A provider turns a user's request into a normalized, validated request
 * (in the backend that runs withdraw_create), and, in the worker, builds
 * the signed HTTP exchanges and reads their answers into an Outcome.  It
 * never touches the database: the worker applies outcomes.
 *
 * Provider is a small core (keys, validate, create, status) that every
 * provider fills, plus capability structs (sync, batched status,
 * callbacks, form rules, notification deadlines) that a provider points
 * to only when it has them.  What providers share is data: a code table
 * (ProviderCodeTable: provider_refusal() is the one place a code becomes
 * an outcome), a status table (ProviderStatusTable) and one JSON answer
 * reader (provider_answer_json), all in common.c.  States are named only
 * through WithdrawState (../state.h).
 *
 * Adding a provider: its own file here (defining PROVIDER_DEFINE(name)),
 * one line in registry.c, its object in the Makefile's OBJS, its mock in
 * test/mock/ and its tests (README, "Adding a provider").
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_PROVIDER_H
#define WITHDRAW_PROVIDER_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "../compat.h"
#include "../http.h"
#include "../state.h"

struct Provider;

/* An account with its secrets, as the worker uses it. */
typedef struct WithdrawAccount
{
	int32		id;
	char	   *name;
	const struct Provider *provider;
	char	   *base_url;
	Jsonb	   *options;
	Jsonb	   *credentials;
} WithdrawAccount;

/* withdraw_create's view of a request once the provider accepted it. */
typedef struct ValidatedRequest
{
	char	   *idempotency_key;
	char	   *request_json;	/* normalized request, JSON text */
	char	   *asset;
	char	   *amount;			/* positive decimal string */
	char	   *destination;
} ValidatedRequest;

/* One withdrawal handed to a provider by the worker. */
typedef struct WithdrawalJob
{
	int64		id;
	WithdrawAccount *account;
	char	   *idempotency_key;
	Jsonb	   *request;
	char	   *amount;
	char	   *provider_id;	/* NULL until the provider named it */
	char	   *reconcile_cursor;	/* next page of a reconcile search, or NULL */
	char	   *destination;	/* where it goes, as validate() named it */
	TimestampTz created_at;
	TimestampTz first_sent_at;
} WithdrawalJob;

typedef enum OutcomeKind
{
	OUTCOME_SUBMITTED,			/* accepted; provider_id set */
	OUTCOME_STATE,				/* status learned: state, provider_status */
	OUTCOME_NO_CHANGE,			/* status poll learned nothing new */
	OUTCOME_NOT_DELIVERED,		/* surely not executed: queue again */
	OUTCOME_UNKNOWN,			/* may have executed: resend the same key */
	OUTCOME_RECONCILE,			/* provider knows the key: status query only */
	OUTCOME_REJECTED			/* refused for good */
} OutcomeKind;

typedef struct Outcome
{
	OutcomeKind kind;
	WithdrawState state;		/* OUTCOME_STATE: the state learned */
	char	   *provider_status;	/* raw status or code, as the provider said */
	char	   *provider_id;
	char	   *message;		/* what went wrong, for last_error and events */
	int			retry_after_ms; /* provider-imposed wait, 0 for policy */
	char	   *next_cursor;	/* OUTCOME_NO_CHANGE of a reconcile search:
								 * more pages to search */
	char	   *details;		/* JSON object merged into the withdrawal's
								 * details (txid, confirmations, fees), or NULL */
	bool		duplicate;		/* OUTCOME_RECONCILE: the provider refused the
								 * idempotency key as already used */
	/* OUTCOME_STATE: what the provider's record says is paid and where, when
	 * it says; a record of another amount or destination is never adopted */
	char	   *record_amount;
	char	   *record_destination;
} Outcome;

/*
 * Where a sync of a provider's withdrawal list stands.  "position" is the
 * provider's paging state (p99: the "end" of the next page), NULL on the
 * first page; since/until bound the window, 0 meaning open.
 */
typedef struct SyncCursor
{
	TimestampTz since;
	TimestampTz until;
	char	   *status;			/* filters, NULL for all */
	char	   *token;
	char	   *position;
	int			pages;
} SyncCursor;

/* One record of a provider's withdrawal list. */
typedef struct RemoteRecord
{
	char	   *provider_id;
	char	   *request_id;		/* the idempotency key, if the provider reports it */
	char	   *asset;
	char	   *amount;
	char	   *fee;
	char	   *fee_asset;
	char	   *status;			/* as the provider says */
	WithdrawState state;		/* the record's state */
	char	   *txid;
	char	   *block_number;
	char	   *chain_id;
	char	   *nonce;
	char	   *confirmations;
	char	   *real_fee;		/* the fee actually charged, if it differs */
	char	   *real_fee_asset;
	TimestampTz deadline;		/* 0 = none */
	TimestampTz requested_at;
	TimestampTz confirmed_at;
	char	   *raw;			/* the record as JSON text */
} RemoteRecord;

typedef struct SyncResult
{
	List	   *records;		/* RemoteRecord * */
	bool		more;			/* another page at cursor->position */
	char	   *error;			/* the page failed: why (no change made) */
	bool		auth_failed;
	bool		not_found;		/* a lookup of an id the provider does not know */
} SyncResult;

/* What a provider's callback to us is about. */
typedef enum CallbackKind
{
	CALLBACK_WITHDRAWAL,		/* news of one of our withdrawals */
	CALLBACK_DEPOSIT,			/* news of a deposit: recorded, not applied */
	CALLBACK_CONFIRM			/* "did you really ask for this withdrawal?" */
} CallbackKind;

/* An authenticated callback, read by the provider. */
typedef struct CallbackNotice
{
	CallbackKind kind;
	Jsonb	   *content;		/* what the provider said, authenticated */
	char	   *idempotency_key;	/* our key, as the provider echoes it */
	char	   *provider_id;
	char	   *amount;			/* as the provider states it, to check */
	char	   *provider_status;
	WithdrawState state;		/* STATE_NONE = none (the caller sets it
								 * before callbacks->read) */
	char	   *details;		/* JSON object: txid, confirmations, fees */
	TimestampTz sent_at;		/* the provider's clock, 0 = not given */
	int			window_ms;		/* > 0: CALLBACK_WITHDRAWAL refused unless
								 * sent_at is within this of our clock */
	bool		confirm_by_poll;	/* state is applied only once a status
									 * poll confirms it (the row is polled) */
} CallbackNotice;

/*
 * Capabilities a provider may lack: each is a struct of its own, and a
 * provider points to those it has (NULL for the others), so that the core
 * below is all a provider must fill in.
 */

/* A list of the provider's withdrawals, page by page (withdraw_sync). */
typedef struct ProviderSync
{
	void		(*build) (WithdrawAccount *account, SyncCursor *cursor, HttpRequest *req);
	void		(*parse) (WithdrawAccount *account, SyncCursor *cursor, HttpResponse *res,
						  SyncResult *out);
	/* one record of that list by the provider's id; NULL = none */
	void		(*build_lookup) (WithdrawAccount *account, const char *provider_id, HttpRequest *req);
	void		(*parse_lookup) (WithdrawAccount *account, HttpResponse *res, SyncResult *out);
	/* the list is walked by increasing numeric id: a scheduled sync starts
	 * after the highest id stored (cursor->position), not from a time */
	bool		by_id;
} ProviderSync;

/* Several withdrawals' status in one exchange. */
typedef struct ProviderStatusBatch
{
	int			max;			/* withdrawals per exchange, > 1 */
	/* whether an account with these options can batch; NULL = every account */
	bool		(*batches) (Jsonb *options);
	void		(*build) (WithdrawAccount *account, WithdrawalJob **jobs, int n, HttpRequest *req);
	/* fills outs[0..n-1], one per job */
	void		(*parse) (WithdrawalJob **jobs, int n, HttpResponse *res, Outcome *outs);
} ProviderStatusBatch;

/* Backend: the provider's callbacks (withdraw_callback, withdraw_confirm). */
typedef struct ProviderCallbacks
{
	/* authenticates the body before reading anything from it; false with
	 * *error when it is not authentic */
	bool		(*read) (WithdrawAccount *account, const char *body, int len,
						 Jsonb *headers, CallbackNotice *out, char **error);
	/* the reply once a callback is applied, and to one that is not
	 * authentic (NULL: raise an error instead) */
	const char *ack;
	const char *refusal;
	/* CALLBACK_CONFIRM and CALLBACK_WITHDRAWAL: why the message does not
	 * describe the stored request, or NULL when it does; NULL = no check */
	char	   *(*confirm_mismatch) (Jsonb *request, CallbackNotice *notice);
	/* the reply confirming (accept) or refusing a second-confirmation
	 * request; NULL = the provider asks none */
	char	   *(*confirm_reply) (WithdrawAccount *account, CallbackNotice *notice, bool accept);
} ProviderCallbacks;

/*
 * Form rules a request is checked against in withdraw_create, fetched by
 * the worker and withdraw_form_rules and cached (fiat_gateway's per
 * pay_code).
 */
typedef struct ProviderFormRules
{
	/* backend: which cached rules a request must be checked against */
	char	   *(*key) (Jsonb *request);
	void		(*build) (WithdrawAccount *account, const char *key, const char *currency,
						  HttpRequest *req);
	/* the rules as a JSON text, or NULL with *error set */
	char	   *(*parse) (WithdrawAccount *account, const char *key, HttpResponse *res,
						  char **error);
} ProviderFormRules;

/*
 * A provider without a status query (build_status NULL) that says how
 * long a submitted withdrawal may wait for its notification: its poll
 * falls due then, and overdue() gives the outcome instead of an exchange
 * (review, with the reason).  Without it a withdrawal waits forever.
 */
typedef struct ProviderNotices
{
	int			(*deadline_ms) (Jsonb *options);
	void		(*overdue) (WithdrawalJob *job, Outcome *out);
} ProviderNotices;

typedef struct Provider
{
	const char *name;
	/* credential keys an account may carry (all required, unless
	 * check_credentials says otherwise) */
	const char *const *credential_keys;
	/* provider-specific option keys, besides the generic ones */
	const char *const *option_keys;
	/* minimum milliseconds between two creates of one account, 0 = none */
	int			default_create_interval_ms;
	/* status polls per second per account, 0 = unlimited */
	int			default_polls_per_second;

	/* backend: checks options beyond the generic ones; ERROR on bad input */
	void		(*check_options) (Jsonb *options);
	/* backend: which combinations of credential_keys are complete; NULL = all */
	void		(*check_credentials) (Jsonb *credentials);
	/* backend: validates and normalizes a request; ERROR naming the field;
	 * NULL when the provider cannot create withdrawals.  options are the
	 * account's; rules are the cached form rules the request names (see
	 * ProviderFormRules), NULL for providers without them */
	void		(*validate) (Jsonb *request, Jsonb *options, Jsonb *rules, ValidatedRequest *out);
	/* why not, for the hint of that error */
	const char *cannot_create_hint;

	/* worker: the create exchange */
	void		(*build_create) (WithdrawalJob *job, HttpRequest *req);
	void		(*parse_create) (WithdrawalJob *job, HttpResponse *res, Outcome *out);
	/* worker: the status exchange (provider_id may be NULL: reconcile);
	 * NULL = no status query */
	void		(*build_status) (WithdrawalJob *job, HttpRequest *req);
	void		(*parse_status) (WithdrawalJob *job, HttpResponse *res, Outcome *out);

	/* the capabilities above; NULL = the provider lacks it */
	const ProviderSync *sync;
	const ProviderStatusBatch *status_batch;
	const ProviderCallbacks *callbacks;
	const ProviderFormRules *form_rules;
	const ProviderNotices *notices;
} Provider;

/*
 * What a provider's refusal code means for the withdrawal, and the
 * provider's table of them.  A code the table lacks is CODE_MAYBE.
 */
typedef enum CodeClass
{
	CODE_MAYBE,					/* outcome unknown: the same key again */
	CODE_RETRY,					/* not executed: the same request again, after
								 * the code's retry_after_ms */
	CODE_DUPLICATE,				/* the key is known: settle by status, never a
								 * new key */
	CODE_TERMINAL				/* refused for good */
} CodeClass;

typedef struct ProviderCode
{
	const char *code;			/* as the provider writes it */
	CodeClass	class;
	int			retry_after_ms; /* CODE_RETRY: the wait, 0 for policy */
	const char *explanation;
} ProviderCode;

typedef struct ProviderCodeTable
{
	const char *label;			/* how messages name a code: "retCode",
								 * "code", "status" */
	const ProviderCode *codes;
	int			count;
} ProviderCodeTable;

#define PROVIDER_CODE_TABLE(label, array) {(label), (array), lengthof(array)}

/*
 * A provider's words for the states of a withdrawal, as a table:
 * provider_state() is STATE_NONE for a word the table lacks.
 */
typedef struct ProviderStatus
{
	const char *status;			/* as the provider writes it */
	WithdrawState state;
} ProviderStatus;

typedef struct ProviderStatusTable
{
	const ProviderStatus *statuses;
	int			count;
	bool		ignore_case;	/* the provider's case is not to be relied on */
} ProviderStatusTable;

#define PROVIDER_STATUS_TABLE(array, ignore_case) \
	{(array), lengthof(array), (ignore_case)}

/* registry.c */
extern const Provider *provider_lookup(const char *name);
extern const Provider *provider_lookup_or_error(const char *name);
extern char *provider_names(void);

/* common.c: helpers every provider uses */
extern char *account_credential(WithdrawAccount *account, const char *key);
extern int	account_option_int(Jsonb *options, const char *key, int default_value,
							   int min_value, int max_value);
extern char *join_url(const char *base_url, const char *path);
extern void http_request_init(HttpRequest *req, const char *method, char *url);
extern void http_request_header(HttpRequest *req, const char *name, const char *value);
extern bool is_positive_decimal(const char *s);
extern bool is_decimal(const char *s);
extern TimestampTz timestamp_from_unix(int64 seconds);
extern bool decimal_equal(const char *a, const char *b);
extern int64 epoch_ms(TimestampTz t);
extern TimestampTz timestamp_from_digits(const char *text, int unit_ms);
extern bool timestamp_within(const char *seconds, int window_s, const char *what, char **error);
extern char *details_json(JsonbContainer *c, const char *const (*keys)[2], int nkeys);
extern const ProviderCode *provider_code(const ProviderCodeTable *table, const char *code);
extern char *provider_code_message(const ProviderCodeTable *table, const char *code, const char *msg);
extern void provider_refusal(const ProviderCodeTable *table, const char *code, const char *msg,
							 Outcome *out);
extern Jsonb *provider_answer_json(HttpResponse *res, char **why);
extern Jsonb *provider_body_json(const char *body, int len, char **error);
extern WithdrawState provider_state(const ProviderStatusTable *table, const char *status);
extern bool provider_status_known(const ProviderStatusTable *table, const char *status);
extern JsonbContainer *list_entry_of(JsonbContainer *list, const char *inner, const char *key_field,
									 const char *key);

/* Sorted key=value lists, the string-to-sign of several providers. */
typedef struct ParamList
{
	int			count;
	int			capacity;
	char	  **keys;
	char	  **values;
} ParamList;

extern void append_url_encoded(StringInfo buf, const char *s);
extern void params_init(ParamList *list);
extern void params_add(ParamList *list, const char *key, const char *value);
extern void params_sort(ParamList *list);
extern char *params_join(const ParamList *list, bool url_encode);

/*
 * The providers: a provider's file defines its Provider with PROVIDER_DEFINE(name) = {...}:
 * the object registry.c lists as name_provider, declared in the same
 * breath so that the definition has a prior declaration.
 */
#define PROVIDER_DEFINE(name) \
	extern const Provider name##_provider; \
	const Provider name##_provider



/* request.c: validation helpers for provider validate() callbacks */
extern void request_reject_unknown_fields(Jsonb *request, const char *provider,
										  const char *const *allowed);
extern char *request_string(Jsonb *request, const char *provider, const char *field,
							bool required, int max_chars);
extern bool request_int(Jsonb *request, const char *provider, const char *field,
						bool required, int64 *value);
extern void request_amount(Jsonb *request, const char *provider, const char *field,
						   char **amount);
extern withdraw_noreturn void request_field_error(const char *provider, const char *field,
												 const char *problem, const char *hint);
extern void request_to_params(Jsonb *request, ParamList *params);
extern void request_to_json_fields(Jsonb *request, StringInfo buf, bool *first);

#endif							/* WITHDRAW_PROVIDER_H */
