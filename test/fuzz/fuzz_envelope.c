/*-------------------------------------------------------------------------
 *
 * fuzz_envelope.c
 *	  libFuzzer target for the parsers of chainup's bytes from the network
 *	  (src/envelope.c): base64url decoding, the RSA block opening and the
 *	  key reader.  Built with src/envelope.c alone, as frontend code, where
 *	  palloc is malloc: what the functions return is freed here, and a leak
 *	  inside them is a report like any other.  See test/fuzz/run.sh.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <stdint.h>

#include "../../src/envelope.h"

/* the public half of ChainUp's published demo key pair (providers.md) */
static const char *const demo_public_key =
"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAua4XMw/W9BxyZhirTlNau5Y/tdAHkPsbZo58Cdz1ByeRX8RwOibpREDZLTwhMTZGroqWEAZ+efQhx0gez++03Sw6IsPWPDpzpM90ezn2gBqPog7jxQA+M0E32gMHWB5ygplPwQkGz/qGYeJ5qhp2OZ8O+jFqOJNi7ob1hE2QsPT118HIhUzTL77urD61BovI+jg9Rx6PGAqlFLLmfXToqDulLkYVKhhQlL7ii6iuzIXgl46mbmvH2RXJRq083sa9b9J1z/WzXxNaHNpq5USl3ifTTyD/IiOKnblA7f4KJmr9rcMFbAP1mNxz95at6hPBvqGypPqqixxPBrdkOIPUVwIDAQAB";

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static EVP_PKEY *key = NULL;
	char	   *error = NULL;
	char	   *text;
	size_t		len;
	EVP_PKEY   *parsed;

	if (key == NULL)
	{
		key = envelope_load_key(demo_public_key, false, &error);
		if (key == NULL)
			abort();
	}

	/* an envelope: the bytes as they came, not NUL-terminated */
	text = envelope_open(key, (const char *) data, size, &len, &error);
	pfree(text ? text : error);
	error = NULL;

	/* a key pasted by an admin: PEM or base64 DER, private or public */
	text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	parsed = envelope_load_key(text, size > 0 && (data[0] & 1), &error);
	if (parsed != NULL)
		EVP_PKEY_free(parsed);
	else
		pfree(error);
	free(text);
	return 0;
}
