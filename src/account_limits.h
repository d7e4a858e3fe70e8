/*-------------------------------------------------------------------------
 *
 * account_limits.h
 *	  Per-account single and daily withdrawal limits (account option "limits").
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_ACCOUNT_LIMITS_H
#define WITHDRAW_ACCOUNT_LIMITS_H

#include "utils/jsonb.h"

extern void limits_check_option(Jsonb *options);
extern bool limits_daily_applies(Jsonb *options, const char *asset);
extern void limits_enforce(int32 account_id, const char *account_name, Jsonb *options,
						   const char *asset, const char *amount);

#endif							/* WITHDRAW_ACCOUNT_LIMITS_H */
