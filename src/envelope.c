/*-------------------------------------------------------------------------
 *
 * envelope.c
 *	  RSA "data" envelopes, as chainup's billing API uses them: the
 *	  plaintext cut into 234-byte chunks, each put through the RSA
 *	  private-key operation with PKCS#1 v1.5 type-1 padding, the blocks
 *	  concatenated and written in base64url without '='.  The other side
 *	  opens an envelope with the sender's public key.
 *
 * The functions here need nothing of the server but palloc and StringInfo,
 * so that a libFuzzer target can build this file alone (test/fuzz).
 * Nothing here is hand-written cryptography: the RSA operations are
 * EVP_PKEY_sign / EVP_PKEY_verify_recover with RSA_PKCS1_PADDING and no
 * digest (the raw type-1 operation), base64 is EVP_EncodeBlock /
 * EVP_DecodeBlock with the url alphabet swapped in.  Every function
 * reports failure by returning NULL with a message, never by throwing
 * while an OpenSSL object is held, so bytes from the network can neither
 * leak OpenSSL memory nor crash the caller.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"		/* the fuzz target (test/fuzz) builds this file alone */
#endif

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "lib/stringinfo.h"

#include "envelope.h"

/* plaintext bytes per block, as the provider's reference code cuts them */
#define ENVELOPE_CHUNK 234
/* the provider's envelopes are small; refuse anything absurd before work */
#define ENVELOPE_MAX_CHARS (1024 * 1024)

static char *
openssl_error(const char *what)
{
	unsigned long code = ERR_get_error();
	char		buf[256];

	ERR_clear_error();
	if (code == 0)
		return pstrdup(what);
	ERR_error_string_n(code, buf, sizeof(buf));
	return psprintf("%s (%s)", what, buf);
}

/* base64 of the standard alphabet to base64url without padding, in place */
static void
to_base64url(char *s)
{
	char	   *p;

	for (p = s; *p; p++)
	{
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
		else if (*p == '=')
		{
			*p = '\0';
			break;
		}
	}
}

/*
 * Decodes base64 or base64url, with or without padding, ignoring ASCII
 * whitespace (keys are often pasted with line breaks).  Returns NULL for
 * anything else.
 */
static unsigned char *
decode_base64_any(const char *text, size_t textlen, int *outlen)
{
	StringInfoData std;
	unsigned char *out = NULL;
	int			len;
	int			pad = 0;
	bool		ok = true;

	if (textlen > ENVELOPE_MAX_CHARS)
		return NULL;
	initStringInfo(&std);
	for (size_t i = 0; i < textlen && ok; i++)
	{
		char		c = text[i];

		if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '=')
			break;				/* padding: recomputed below */
		else if (!isalnum((unsigned char) c) && c != '+' && c != '/')
			ok = false;
		appendStringInfoChar(&std, c);
	}
	if (ok && std.len % 4 != 1 && std.len != 0)
	{
		while (std.len % 4 != 0)
		{
			appendStringInfoChar(&std, '=');
			pad++;
		}
		out = palloc(std.len / 4 * 3 + 1);
		len = EVP_DecodeBlock(out, (unsigned char *) std.data, std.len);
		if (len < 0)
		{
			pfree(out);
			out = NULL;
		}
		else
			*outlen = len - pad;	/* EVP_DecodeBlock counts padding as zeros */
	}
	pfree(std.data);
	return out;
}

/*
 * Reads a key given as PEM (PKCS#8, PKCS#1 or SubjectPublicKeyInfo) or as
 * the bare base64 DER the provider's docs print.  Returns NULL with
 * *error set when the text is not an RSA key of the wanted kind.
 */
EVP_PKEY *
envelope_load_key(const char *text, bool private_key, char **error)
{
	EVP_PKEY   *key = NULL;
	unsigned char *der = NULL;
	long		derlen = 0;

	if (text == NULL || text[0] == '\0')
	{
		*error = pstrdup("the key is empty");
		return NULL;
	}
	if (strstr(text, "-----BEGIN") != NULL)
	{
		/* PEM: take the DER out, whatever the label says */
		BIO		   *bio = BIO_new_mem_buf(text, -1);
		char	   *name = NULL;
		char	   *header = NULL;
		unsigned char *data = NULL;

		if (bio != NULL && PEM_read_bio(bio, &name, &header, &data, &derlen) == 1)
		{
			der = palloc(derlen);
			memcpy(der, data, derlen);
			OPENSSL_cleanse(data, derlen);
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(data);
		BIO_free(bio);
	}
	else
	{
		int			len;

		der = decode_base64_any(text, strlen(text), &len);
		derlen = len;
	}
	if (der != NULL)
	{
		const unsigned char *p = der;

		if (private_key)
			key = d2i_AutoPrivateKey(NULL, &p, derlen);
		else
		{
			key = d2i_PUBKEY(NULL, &p, derlen);
			if (key == NULL)
			{
				/* PKCS#1 RSAPublicKey */
				p = der;
				key = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, derlen);
			}
		}
		explicit_bzero(der, derlen);
		pfree(der);
	}
	ERR_clear_error();
	if (key == NULL)
	{
		*error = psprintf("not a readable RSA %s key (PEM, or base64 DER as the provider's docs show it)",
						  private_key ? "private" : "public");
		return NULL;
	}
	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA || EVP_PKEY_get_size(key) < 128 ||
		EVP_PKEY_get_size(key) > 1024)
	{
		EVP_PKEY_free(key);
		*error = pstrdup("the key is not an RSA key of 1024 to 8192 bits");
		return NULL;
	}
	return key;
}

/*
 * Seals plaintext with the sender's private key.  Returns the envelope
 * (palloc'd base64url text) or NULL with *error set.
 */
char *
envelope_seal(EVP_PKEY *private_key, const char *plaintext, size_t len, char **error)
{
	int			block = EVP_PKEY_get_size(private_key);
	size_t		nblocks = len == 0 ? 1 : (len + ENVELOPE_CHUNK - 1) / ENVELOPE_CHUNK;
	unsigned char *cipher;
	char	   *text;
	EVP_PKEY_CTX *ctx;
	size_t		done = 0;

	if (block < ENVELOPE_CHUNK + 11)
	{
		*error = pstrdup("the key is too small for 234-byte chunks (2048 bits or more needed)");
		return NULL;
	}
	if (len > ENVELOPE_MAX_CHARS)
	{
		*error = pstrdup("the plaintext is too long");
		return NULL;
	}
	ctx = EVP_PKEY_CTX_new(private_key, NULL);
	if (ctx == NULL || EVP_PKEY_sign_init(ctx) <= 0 ||
		EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
	{
		*error = openssl_error("could not set up the RSA operation");
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	cipher = palloc(nblocks * block);
	for (size_t i = 0; i < nblocks; i++)
	{
		size_t		chunk = Min(len - done, (size_t) ENVELOPE_CHUNK);
		size_t		outlen = block;

		if (EVP_PKEY_sign(ctx, cipher + i * block, &outlen,
						  (const unsigned char *) plaintext + done, chunk) <= 0 ||
			outlen != (size_t) block)
		{
			*error = openssl_error("the RSA operation failed");
			EVP_PKEY_CTX_free(ctx);
			return NULL;
		}
		done += chunk;
	}
	EVP_PKEY_CTX_free(ctx);

	text = palloc((nblocks * block + 2) / 3 * 4 + 1);
	EVP_EncodeBlock((unsigned char *) text, cipher, nblocks * block);
	to_base64url(text);
	pfree(cipher);
	return text;
}

/*
 * Opens an envelope with the sender's public key.  Returns the plaintext
 * (palloc'd, NUL-terminated, *len bytes) or NULL with *error set: not
 * base64, not whole blocks, a block that is not this key's type-1
 * padding (a forged or foreign envelope), or blocks not cut as one
 * message is cut.
 *
 * Each block is authenticated on its own (the provider's scheme has no
 * MAC over the whole), so blocks of two authentic envelopes can be
 * spliced.  What binds them here is the shape of one message: the sender
 * cuts the plaintext into chunks of one size (234 bytes in the reference
 * code and the published vectors, k - 11 in the Go SDK), so every block
 * but the last carries exactly that many bytes and the last carries at
 * least one and no more.  A block that ended another message (shorter)
 * cannot sit in the middle.  The caller binds the rest: the plaintext
 * must be one well-formed JSON document whose ids are the expected ones
 * (providers/chainup.c).
 */
char *
envelope_open(EVP_PKEY *public_key, const char *data, size_t datalen, size_t *len, char **error)
{
	int			block = EVP_PKEY_get_size(public_key);
	int			rawlen;
	unsigned char *raw;
	StringInfoData plain;
	EVP_PKEY_CTX *ctx;
	unsigned char *chunk;
	size_t		first_len = 0;

	raw = decode_base64_any(data, datalen, &rawlen);
	if (raw == NULL)
	{
		*error = pstrdup("the envelope is not base64url text");
		return NULL;
	}
	if (rawlen == 0 || rawlen % block != 0)
	{
		*error = psprintf("the envelope is %d bytes, not a whole number of %d-byte blocks",
						  rawlen, block);
		pfree(raw);
		return NULL;
	}
	ctx = EVP_PKEY_CTX_new(public_key, NULL);
	if (ctx == NULL || EVP_PKEY_verify_recover_init(ctx) <= 0 ||
		EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
	{
		*error = openssl_error("could not set up the RSA operation");
		EVP_PKEY_CTX_free(ctx);
		pfree(raw);
		return NULL;
	}
	initStringInfo(&plain);
	chunk = palloc(block);
	for (int i = 0, nblocks = rawlen / block; i < nblocks; i++)
	{
		size_t		outlen = block;
		const char *misfit = NULL;

		if (EVP_PKEY_verify_recover(ctx, chunk, &outlen, raw + i * block, block) <= 0)
			misfit = "does not open with the expected public key";
		else if (i == 0 && nblocks > 1 && outlen != ENVELOPE_CHUNK &&
				 outlen != (size_t) block - 11)
			misfit = "is not a full chunk although more blocks follow";
		else if (i > 0 && i < nblocks - 1 && outlen != first_len)
			misfit = "is not as long as the first although more blocks follow";
		else if (i > 0 && i == nblocks - 1 && (outlen == 0 || outlen > first_len))
			misfit = "does not end a message cut like the first block";
		if (misfit != NULL)
		{
			ERR_clear_error();
			EVP_PKEY_CTX_free(ctx);
			pfree(chunk);
			pfree(raw);
			pfree(plain.data);
			*error = psprintf("block %d of the envelope %s", i + 1, misfit);
			return NULL;
		}
		if (i == 0)
			first_len = outlen;
		appendBinaryStringInfo(&plain, (char *) chunk, outlen);
	}
	EVP_PKEY_CTX_free(ctx);
	pfree(chunk);
	pfree(raw);
	*len = plain.len;
	return plain.data;
}
