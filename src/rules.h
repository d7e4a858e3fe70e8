/*-------------------------------------------------------------------------
 *
 * rules.h
 *	  Cached form rules of providers (fiat_gateway pay_codes).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_RULES_H
#define WITHDRAW_RULES_H

#include "job.h"

extern void rules_store(WithdrawAccount *account, const char *key, const char *currency,
						const char *rules, const char *error);
/* due rule fetches, none of the excluded accounts (an int List) */
extern List *rules_take_due(List *excluded_accounts, int limit, MemoryContext parent);
extern void rules_record(Job *job, HttpResponse *res);

#endif							/* WITHDRAW_RULES_H */
