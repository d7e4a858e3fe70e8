/*-------------------------------------------------------------------------
 *
 * readiness.h
 *	  Whether a worker can send at all, and why not (readiness.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_READINESS_H
#define WITHDRAW_READINESS_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

extern bool readiness_key(TimestampTz now);
extern bool readiness_schema(TimestampTz now);
extern void readiness_credentials(TimestampTz now, bool force);
extern List *readiness_unopenable_accounts(void);

#endif							/* WITHDRAW_READINESS_H */
