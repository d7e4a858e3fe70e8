/*-------------------------------------------------------------------------
 *
 * amount_limits.h
 *	  Per-account caps on withdrawal amounts, single and daily (account option
 *	  "limits"); rate limits are schedule.c's.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_AMOUNT_LIMITS_H
#define WITHDRAW_AMOUNT_LIMITS_H

#include "utils/jsonb.h"

extern void amount_limits_check_option(Jsonb *options);
extern bool amount_limits_daily_applies(Jsonb *options, const char *asset);
extern void amount_limits_enforce(int32 account_id, const char *account_name, Jsonb *options,
						   const char *asset, const char *amount);

#endif							/* WITHDRAW_AMOUNT_LIMITS_H */
