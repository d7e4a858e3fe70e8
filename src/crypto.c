/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  OpenSSL-backed primitives used to sign provider requests and to make
 *	  idempotency keys.  Providers call these; no provider hand-rolls a
 *	  digest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "utils/builtins.h"

#include "crypto.h"

char *
hmac_sha256_hex(const char *key, size_t keylen, const char *message, size_t msglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char	   *hex;

	if (HMAC(EVP_sha256(), key, (int) keylen,
			 (const unsigned char *) message, msglen, mac, &maclen) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-SHA256")));

	hex = palloc(maclen * 2 + 1);
	hex_encode((const char *) mac, maclen, hex);
	hex[maclen * 2] = '\0';
	explicit_bzero(mac, sizeof(mac));
	return hex;
}

char *
random_hex(int nbytes)
{
	unsigned char *raw = palloc(nbytes);
	char	   *hex = palloc(nbytes * 2 + 1);

	if (!pg_strong_random(raw, nbytes))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	hex_encode((const char *) raw, nbytes, hex);
	hex[nbytes * 2] = '\0';
	pfree(raw);
	return hex;
}
