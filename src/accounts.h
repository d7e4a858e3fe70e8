/*-------------------------------------------------------------------------
 *
 * accounts.h
 *	  The account functions' log hygiene (accounts.c): statements that
 *	  carry credentials never reach the server log.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_ACCOUNTS_H
#define WITHDRAW_ACCOUNTS_H

extern void AccountsLogInit(void);

#endif							/* WITHDRAW_ACCOUNTS_H */
