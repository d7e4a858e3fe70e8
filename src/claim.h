/*-------------------------------------------------------------------------
 *
 * claim.h
 *	  Claiming due work and sending it (claim.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_CLAIM_H
#define WITHDRAW_CLAIM_H

#include "job.h"

extern bool claim_and_send(void);
extern bool claim_build_request(Job *job, Outcome *failure);
extern void claim_start(Job *job);

#endif							/* WITHDRAW_CLAIM_H */
