/*-------------------------------------------------------------------------
 *
 * inflight.h
 *	  The exchanges a worker has in flight (inflight.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_INFLIGHT_H
#define WITHDRAW_INFLIGHT_H

#include "job.h"

extern void inflight_init(void);
extern MemoryContext inflight_cxt(void);
extern void inflight_track(Job *job);
extern void inflight_release(Job *job, TimestampTz now);
extern int	inflight_jobs(void);
extern int	inflight_exchanges(void);
extern List *inflight_accounts(JobKind kind);

#endif							/* WITHDRAW_INFLIGHT_H */
