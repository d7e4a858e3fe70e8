/*-------------------------------------------------------------------------
 *
 * net_guard.h
 *	  Where requests may go (net_guard.c).  The functions of the guard that
 *	  other files call are declared in http.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_NET_GUARD_H
#define WITHDRAW_NET_GUARD_H

#include <sys/socket.h>

extern const char *net_address_class(const struct sockaddr *sa);

#endif							/* WITHDRAW_NET_GUARD_H */
