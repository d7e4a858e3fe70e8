/*-------------------------------------------------------------------------
 *
 * record.h
 *	  Recording the outcomes of completed exchanges (record.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_RECORD_H
#define WITHDRAW_RECORD_H

#include "http.h"
#include "job.h"

extern void record_completions(List *completions);
extern void record_outcome(Job *job, HttpResponse *res, Outcome *out);

#endif							/* WITHDRAW_RECORD_H */
