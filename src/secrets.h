/*-------------------------------------------------------------------------
 *
 * secrets.h
 *	  Account credentials sealed at rest (AES-256-GCM, external key file).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_SECRETS_H
#define WITHDRAW_SECRETS_H

#include "utils/jsonb.h"

extern bool secrets_key_usable(char **why);
extern bytea *secrets_seal(int32 account_id, Jsonb *credentials, char **key_id);
extern Jsonb *secrets_open(int32 account_id, bytea *sealed, const char *key_id);
extern char *secrets_problem(int32 account_id, bytea *sealed, const char *key_id);

/*
 * The SQL expression that yields an account's credentials from
 * withdraw.account_secret aliased as alias: opened when sealed, as stored
 * when an upgrade from 0.1.0 left them in plaintext (until
 * withdraw_rotate_secrets() seals them).
 */
#define SECRETS_CREDENTIALS(alias) \
	"coalesce(" alias ".credentials, withdraw._credentials(" alias ".account_id, " alias ".sealed, " alias ".key_id))"

#endif							/* WITHDRAW_SECRETS_H */
