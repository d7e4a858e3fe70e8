/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  What the files of a worker process share: its number, its figures,
 *	  and the transaction bracket every piece of its work runs in
 *	  (worker.c).  The loop's parts: schedule.c (which work may go now),
 *	  inflight.c (what is out), poll_batch.c (polls sharing an exchange),
 *	  claim.c (taking and sending), record.c (recording answers),
 *	  readiness.c (whether it can send at all).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_WORKER_H
#define WITHDRAW_WORKER_H

#include "withdraw.h"

extern int	worker_number;		/* 0 .. withdraw.workers - 1 */
extern WithdrawWorkerFigures worker_figures;

extern void worker_begin(const char *activity);
extern void worker_end(void);
extern void worker_commit_waits(bool durable);
extern bool worker_in_role(void);
extern void worker_about(int64 withdrawal_id);

#endif							/* WITHDRAW_WORKER_H */
