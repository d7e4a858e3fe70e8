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

/* digests of message: lowercase hex SHA-256, uppercase hex MD5 */
extern char *sha256_hex(const char *message, size_t msglen);
extern char *md5_upper_hex(const char *message, size_t msglen);

/* constant-time comparison of two signatures (hex text) */
extern bool signature_equal(const char *expected, const char *given);

/* nbytes of strong randomness as 2*nbytes lowercase hex characters */
extern char *random_hex(int nbytes);

#endif							/* WITHDRAW_CRYPTO_H */
