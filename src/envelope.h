/*-------------------------------------------------------------------------
 *
 * envelope.h
 *	  RSA type-1 "data" envelopes (chainup): seal with a private key, open
 *	  with the matching public key.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_ENVELOPE_H
#define WITHDRAW_ENVELOPE_H

#include <openssl/evp.h>

/* Each returns NULL with *error set (palloc'd, names no key material). */
extern EVP_PKEY *envelope_load_key(const char *text, bool private_key, char **error);
extern char *envelope_seal(EVP_PKEY *private_key, const char *plaintext, size_t len,
						   char **error);
extern char *envelope_open(EVP_PKEY *public_key, const char *data, size_t datalen,
						   size_t *len, char **error);

#endif							/* WITHDRAW_ENVELOPE_H */
