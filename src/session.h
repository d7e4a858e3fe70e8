/*-------------------------------------------------------------------------
 *
 * session.h
 *	  Under which role and which settings the extension's own SQL runs
 *	  (session.c): the workers' pinned settings and their role, and the
 *	  pinned search_path for SQL run on behalf of another role.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_SESSION_H
#define WITHDRAW_SESSION_H

/* the role as which the workers' SQL runs (created by the 0.4.0 script) */
#define WITHDRAW_WORKER_ROLE "withdraw_worker"

/* the search_path of every query the extension runs on anyone's behalf */
#define WITHDRAW_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * Pins, for the rest of the worker's life, every setting its SQL depends on
 * (search_path first), above anything ALTER DATABASE or ALTER ROLE set.
 */
extern void session_pin_worker_settings(void);

/*
 * Inside a transaction just started by a worker: runs the rest of it as
 * WITHDRAW_WORKER_ROLE, in a security-restricted context.  Returns false
 * (and changes nothing) when that role does not exist.  An abort restores
 * the previous user by itself; a commit must be preceded by
 * session_leave_worker_role().
 */
extern bool session_enter_worker_role(void);
extern void session_leave_worker_role(void);

/*
 * Pins search_path to WITHDRAW_SEARCH_PATH until session_unpin_search_path
 * (or the end of the (sub)transaction): for C code that runs SQL under the
 * settings of whoever fired it (triggers).  Returns the GUC nest level to
 * pass back.
 */
extern int	session_pin_search_path(void);
extern void session_unpin_search_path(int nestlevel);

#endif							/* WITHDRAW_SESSION_H */
