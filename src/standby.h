/*-------------------------------------------------------------------------
 *
 * standby.h
 *	  Sending only from a primary, and only what a synchronous standby
 *	  holds (standby.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_STANDBY_H
#define WITHDRAW_STANDBY_H

extern const char *standby_not_sending_reason(void);
extern void standby_await_sync_commit(void);

#endif							/* WITHDRAW_STANDBY_H */
