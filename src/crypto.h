/*-------------------------------------------------------------------------
 *
 * crypto.h
 *	  Cryptographic primitives the providers sign with (OpenSSL).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAW_CRYPTO_H
#define WITHDRAW_CRYPTO_H

/* lowercase hex HMAC-SHA256 of message under key, palloc'd */
extern char *hmac_sha256_hex(const char *key, size_t keylen,
							 const char *message, size_t msglen);

/* nbytes of strong randomness as 2*nbytes lowercase hex characters */
extern char *random_hex(int nbytes);

#endif							/* WITHDRAW_CRYPTO_H */
