/*-------------------------------------------------------------------------
 *
 * withdraw.h
 *	  Declarations shared by the withdraw extension's C files: settings,
 *	  shared memory, the worker and the SQL-callable entry points.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_H
#define WITHDRAW_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* Settings (withdraw.c) */
extern char *withdraw_database_name;
extern int	withdraw_max_in_flight;
extern int	withdraw_workers;
extern int	withdraw_naptime_ms;
extern int	withdraw_poll_interval_ms;
extern int	withdraw_request_timeout_ms;
extern int	withdraw_connect_timeout_ms;
extern int	withdraw_retry_base_ms;
extern int	withdraw_retry_max_ms;
extern int	withdraw_max_attempts;
extern char *withdraw_ca_file;
extern char *withdraw_secrets_key_file;
extern char *withdraw_secrets_previous_key_file;
extern bool withdraw_allow_http;
extern int	withdraw_retention_s;
extern int	withdraw_retention_batch;
extern int	withdraw_quarantine_after;
extern bool withdraw_synchronous_outcomes;

/* network guard (issue 14) */
extern char *withdraw_allowed_hosts;
extern bool withdraw_allow_private_addresses;
extern char *withdraw_proxy;

/* the extension version (withdraw.control) whose objects this library uses */
#define WITHDRAW_SCHEMA_VERSION "0.6.0"

/* withdraw.workers is at most this (one shared-memory slot each) */
#define WITHDRAW_MAX_WORKERS 16

/* Shared memory: worker presence, wake-ups and its figures (shmem.c) */
typedef struct WithdrawWorkerFigures
{
	int			in_flight;
	int64		requests_sent;
	int64		responses;
} WithdrawWorkerFigures;

extern void WithdrawShmemInit(void);
extern void WithdrawShmemAttachWorker(int index);
extern void WithdrawShmemDetachWorker(void);
extern void WithdrawShmemReport(const WithdrawWorkerFigures *figures);
extern void WithdrawShmemReportError(const char *message);
extern void WithdrawWakeWorkers(uint32 mask);
extern void WithdrawWakeWorkerAtCommit(int32 account_id);
#define WITHDRAW_ALL_WORKERS 0xFFFFFFFF

/* Background worker (worker.c) */
extern void WithdrawWorkerRegister(void);
extern PGDLLEXPORT void withdraw_worker_main(Datum main_arg);

#endif							/* WITHDRAW_H */
