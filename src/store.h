/*-------------------------------------------------------------------------
 *
 * store.h
 *	  The worker's queries on withdrawals and accounts: claiming (store.c),
 *	  recording outcomes (store_record.c), pruning history (prune.c).
 *	  Callers hold a transaction and an SPI connection.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_STORE_H
#define WITHDRAW_STORE_H

#include "job.h"

/* A due withdrawal, locked, not yet taken. */
typedef struct Candidate
{
	int64		id;
	int32		account_id;
	const Provider *provider;
	Jsonb	   *options;
	bool		unknown;		/* state 'unknown': this would be a resend */
	TimestampTz first_sent_at;
	TimestampTz created_at;
} Candidate;

extern int	store_recover(int worker, int *quarantined);
extern void store_stamp(List *ids);
extern List *store_unopenable_accounts(List **reasons);
extern List *store_candidates(JobKind kind, List *excluded_accounts, int limit,
							  MemoryContext cxt);
extern List *store_take(JobKind kind, List *ids, int worker, MemoryContext parent);
extern void store_mark_reconcile(List *ids);
extern void store_fail_unsent(List *ids);
extern int	store_prune(int retention_s, int batch);
extern void store_record(Job *job, HttpResponse *res, Change *change);
extern void store_record_batch(int n, Job **jobs, HttpResponse **responses, Change *changes);
extern bool store_provider_id_taken(Job *job, const char *provider_id);
extern List *store_take_syncs(List *excluded_accounts, int limit, MemoryContext parent);
extern WithdrawAccount *store_account_from_tuple(HeapTuple tuple, TupleDesc desc, int first);
extern WithdrawAccount *store_account_by_name(const char *name);
extern Job *store_account_job(HeapTuple tuple, TupleDesc desc, JobKind kind, MemoryContext parent);

/* an int4[] (or, is_int8, int8[] of pointed-to int64s) of a List, for a query argument */
extern Datum store_int_array(List *list, bool is_int8);

#endif							/* WITHDRAW_STORE_H */
