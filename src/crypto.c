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
#include <openssl/crypto.h>
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

/* lowercase or uppercase hex of an EVP digest of message */
static char *
digest_hex(const EVP_MD *md, const char *message, size_t msglen, bool upper)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	char	   *hex;

	if (EVP_Digest(message, msglen, digest, &len, md, NULL) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a %s digest", EVP_MD_get0_name(md))));
	hex = palloc(len * 2 + 1);
	hex_encode((const char *) digest, len, hex);
	hex[len * 2] = '\0';
	if (upper)
		for (char *p = hex; *p; p++)
			*p = pg_ascii_toupper((unsigned char) *p);
	explicit_bzero(digest, sizeof(digest));
	return hex;
}

char *
sha256_hex(const char *message, size_t msglen)
{
	return digest_hex(EVP_sha256(), message, msglen, false);
}

char *
md5_upper_hex(const char *message, size_t msglen)
{
	return digest_hex(EVP_md5(), message, msglen, true);
}

/*
 * Compares a signature we computed with one we were given, in time that
 * does not depend on where they differ (CRYPTO_memcmp), so a forger
 * learns nothing from how long a refusal takes.
 */
bool
signature_equal(const char *expected, const char *given)
{
	size_t		len = strlen(expected);

	if (given == NULL || strlen(given) != len)
		return false;
	return CRYPTO_memcmp(expected, given, len) == 0;
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
