/*-------------------------------------------------------------------------
 *
 * remote.h
 *	  Records of providers' withdrawal lists and the state of their syncs.
 *	  Callers hold a transaction and an SPI connection.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_REMOTE_H
#define WITHDRAW_REMOTE_H

#include "job.h"

extern bool remote_upsert(int32 account_id, RemoteRecord *record);
extern TimestampTz remote_sync_since(int32 account_id);
extern char *remote_sync_position(int32 account_id);
extern void remote_sync_done(int32 account_id, TimestampTz high_water, int64 changed,
							 int interval_ms);
extern void remote_sync_failed(int32 account_id, const char *error, int64 retry_ms);

#endif							/* WITHDRAW_REMOTE_H */
