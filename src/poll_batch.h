/*-------------------------------------------------------------------------
 *
 * poll_batch.h
 *	  Status polls that share one exchange (poll_batch.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_POLL_BATCH_H
#define WITHDRAW_POLL_BATCH_H

#include "job.h"

extern List *poll_batch_form(List *jobs);
extern WithdrawalJob **poll_batch_withdrawals(Job *job);
extern Job **poll_batch_members(Job *job, int *n);

#endif							/* WITHDRAW_POLL_BATCH_H */
