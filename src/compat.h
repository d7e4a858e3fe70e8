/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  The differences between the PostgreSQL majors withdraw builds against
 *	  (15 to 18), each behind PG_VERSION_NUM in this one place.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_COMPAT_H
#define WITHDRAW_COMPAT_H

#include "postgres.h"

#include "common/jsonapi.h"
#include "storage/proc.h"

/* this backend's PGPROC number: a global since 17, a PGPROC field before */
#if PG_VERSION_NUM >= 170000
#define WITHDRAW_MY_PROC_NUMBER MyProcNumber
#else
#define WITHDRAW_MY_PROC_NUMBER (MyProc->pgprocno)
#endif

/* before the return type of a function that never returns */
#if PG_VERSION_NUM >= 180000
#define withdraw_noreturn pg_noreturn
#else
#define withdraw_noreturn pg_attribute_noreturn()
#endif

/* a JSON lexer over a string: 17 lets the caller own the context */
#if PG_VERSION_NUM >= 170000
#define withdraw_json_lexer(str, len, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (str), (len), PG_UTF8, (need_escapes))
#else
#define withdraw_json_lexer(str, len, need_escapes) \
	makeJsonLexContextCstringLen((str), (len), PG_UTF8, (need_escapes))
#endif

/* a JSON semantic action returns a parse result since 16 */
#if PG_VERSION_NUM >= 160000
#define WITHDRAW_JSON_ACTION JsonParseErrorType
#define WITHDRAW_JSON_ACTION_DONE return JSON_SUCCESS
#else
#define WITHDRAW_JSON_ACTION void
#define WITHDRAW_JSON_ACTION_DONE return
#endif

/*
 * A wait event set freed by its caller: 17 ties a set to a resource owner
 * instead of a memory context; none is needed for one freed right away.
 */
#if PG_VERSION_NUM >= 170000
#define withdraw_wait_event_set(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define withdraw_wait_event_set(nevents) CreateWaitEventSet(CurrentMemoryContext, (nevents))
#endif

#endif							/* WITHDRAW_COMPAT_H */
