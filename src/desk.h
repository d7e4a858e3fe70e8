/*-------------------------------------------------------------------------
 *
 * desk.h
 *	  The payout desk as the C code sees it: the account options
 *	  "approval", "allowlist" and "stuck_after_ms", the checks
 *	  withdraw_create makes with them, and the expiry of approval requests.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_DESK_H
#define WITHDRAW_DESK_H

#include "utils/jsonb.h"
#include "providers/provider.h"

/* account_create/update: the desk's options are well formed */
extern void desk_check_options(Jsonb *options);

/* withdraw_create, before the insert: ERROR when the allowlist refuses it */
extern void desk_admit(int32 account_id, const char *account_name, Jsonb *options,
					   ValidatedRequest *v);

/* withdraw_create, after the insert: above the threshold it awaits approval */
extern void desk_after_insert(int64 id, Jsonb *options, ValidatedRequest *v);

/* worker 0, once per naptime: approval requests past their expiry end */
extern int	desk_expire_approvals(void);

#endif							/* WITHDRAW_DESK_H */
