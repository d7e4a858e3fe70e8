/*-------------------------------------------------------------------------
 *
 * triggers.h
 *	  The state machine of withdraw.withdrawal, as its triggers read it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_TRIGGERS_H
#define WITHDRAW_TRIGGERS_H

extern bool transition_allowed(const char *from, const char *to);

#endif							/* WITHDRAW_TRIGGERS_H */
