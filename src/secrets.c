/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  Account credentials sealed at rest with AES-256-GCM under a key kept
 *	  in a file outside the data directory (withdraw.secrets_key_file), so
 *	  that a pg_dump, a base backup or a copy of the data directory holds no
 *	  usable secret.
 *
 * A sealed value is nonce (12 bytes) || ciphertext || tag (16 bytes); the
 * additional authenticated data binds it to its account id, so a sealed
 * value copied onto another account does not open.  Each row records the
 * id of the key that sealed it (the first 8 bytes of the key's SHA-256, in
 * hex); a rotation installs the new key as withdraw.secrets_key_file and
 * the old one as withdraw.secrets_previous_key_file, and
 * withdraw_rotate_secrets() re-seals every account under the new key.
 *
 * The key file holds 64 hex digits (openssl rand -hex 32) and, like
 * ssl_key_file, must not be readable by group or others.  A key is kept
 * in process memory while its file is unchanged (read_key_file), in pages
 * left out of core dumps; copies on the stack and opened plaintexts are
 * wiped after use, and nothing here logs key material.  The file is opened
 * once, without following a symbolic link, and checked on that descriptor
 * (regular, mode 600 or stricter, owned by the server's user).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "crypto.h"
#include "secrets.h"
#include "withdraw.h"

#define SECRETS_KEY_BYTES 32
#define SECRETS_NONCE_BYTES 12
#define SECRETS_TAG_BYTES 16

PG_FUNCTION_INFO_V1(withdraw_open_credentials);
PG_FUNCTION_INFO_V1(withdraw_credentials_problem);
PG_FUNCTION_INFO_V1(withdraw_rotate_secrets);

typedef struct SecretsKey
{
	unsigned char bytes[SECRETS_KEY_BYTES];
	char		id[17];			/* hex of the first 8 bytes of SHA-256(key) */
} SecretsKey;

/*
 * Reads a key file: 64 hex digits (surrounding whitespace allowed).
 * ERROR with the reason; the file's contents never appear in a message.
 */
static void
load_key_file(const char *setting, const char *path, SecretsKey *key, struct stat *st_out)
{
	struct stat st;
	int			fd;
	ssize_t		rc;
	char		buf[130];
	size_t		len;
	char	   *start;
	char	   *digest;

	if (path == NULL || path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR), errhidestmt(true),
				 errmsg("%s is not set: account credentials are sealed with the key it names", setting),
				 errhint("Create a key with \"openssl rand -hex 32 > /etc/withdraw/secrets.key\", chmod 600, outside the data directory, and set %s in postgresql.conf.",
						 setting)));
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR), errhidestmt(true),
				 errmsg("%s must be an absolute path", setting)));
	if (path_is_prefix_of_path(DataDir, path))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR), errhidestmt(true),
				 errmsg("%s must name a file outside the data directory", setting),
				 errdetail("A key kept with the data it protects is in every copy of that data.")));
	/*
	 * One descriptor, opened without following a symbolic link at the last
	 * step, is checked and read: no one can swap the file between a check
	 * and the read.
	 */
	fd = OpenTransientFile(path, O_RDONLY | O_NOFOLLOW | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ELOOP)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR), errhidestmt(true),
					 errmsg("%s \"%s\" must not be a symbolic link", setting, path),
					 errhint("Set %s to the key file itself.", setting)));
		ereport(ERROR,
				(errcode_for_file_access(), errhidestmt(true),
				 errmsg("could not open %s \"%s\": %m", setting, path)));
	}
	if (fstat(fd, &st) != 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(), errhidestmt(true),
				 errmsg("could not read %s \"%s\": %m", setting, path)));
	}
	*st_out = st;
	if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR), errhidestmt(true),
				 errmsg("%s \"%s\" must be a regular file readable by its owner only", setting, path),
				 errhint("chmod 600 \"%s\"", path)));
	}
	if (st.st_uid != geteuid())
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR), errhidestmt(true),
				 errmsg("%s \"%s\" must be owned by the user the server runs as", setting, path),
				 errdetail("A key file that another user owns can be replaced by that user.")));
	}
	rc = read(fd, buf, sizeof(buf) - 1);
	CloseTransientFile(fd);
	if (rc < 0)
		ereport(ERROR,
				(errcode_for_file_access(), errhidestmt(true),
				 errmsg("could not read %s \"%s\": %m", setting, path)));
	len = rc;
	buf[len] = '\0';
	start = buf;
	while (*start == ' ' || *start == '\n' || *start == '\r' || *start == '\t')
		start++;
	len = strspn(start, "0123456789abcdefABCDEF");
	if (len != SECRETS_KEY_BYTES * 2 || strspn(start + len, " \t\r\n") != strlen(start + len))
	{
		explicit_bzero(buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR), errhidestmt(true),
				 errmsg("%s \"%s\" must hold 64 hexadecimal digits (a 256-bit key)", setting, path),
				 errhint("openssl rand -hex 32")));
	}
	hex_decode(start, SECRETS_KEY_BYTES * 2, (char *) key->bytes);
	explicit_bzero(buf, sizeof(buf));
	digest = sha256_hex((const char *) key->bytes, SECRETS_KEY_BYTES);
	memcpy(key->id, digest, 16);
	key->id[16] = '\0';
}

/*
 * A key file's key, kept in process memory while the file stays the same:
 * the worker opens an account's credentials for every request it takes,
 * and reading the file each time cost more than the sending.  The file is
 * stat'ed on every use (a rotated or removed key is noticed at once) and
 * read again when its path, inode, size or mtime changes.
 */
typedef struct CachedKeyFile
{
	char		path[MAXPGPATH];
	ino_t		ino;
	off_t		size;
	time_t		mtime;
	mode_t		mode;
	SecretsKey	key;
	bool		valid;
} CachedKeyFile;

static CachedKeyFile *key_files = NULL;

/*
 * The two cached key files, in pages of their own that a core dump of the
 * process leaves out (MADV_DONTDUMP, where the system has it): a crash of
 * a worker must not write the keys to disk.
 */
static CachedKeyFile *
key_cache(void)
{
	if (key_files == NULL)
	{
		size_t		size = TYPEALIGN(sysconf(_SC_PAGESIZE), sizeof(CachedKeyFile) * 2);
		void	   *pages = mmap(NULL, size, PROT_READ | PROT_WRITE,
								 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (pages == MAP_FAILED)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not map memory for the secrets key: %m")));
#ifdef MADV_DONTDUMP
		if (madvise(pages, size, MADV_DONTDUMP) != 0)
			elog(WARNING, "could not keep the secrets key out of core dumps: %m");
#endif
		key_files = pages;
	}
	return key_files;
}

static void
read_key_file(const char *setting, const char *path, SecretsKey *key)
{
	CachedKeyFile *c = &key_cache()[strcmp(setting, "withdraw.secrets_key_file") == 0 ? 0 : 1];
	struct stat st;

	/* lstat: a path turned into a symbolic link is read again, and refused */
	if (c->valid && path != NULL && strcmp(c->path, path) == 0 && lstat(path, &st) == 0 &&
		S_ISREG(st.st_mode) && st.st_ino == c->ino && st.st_size == c->size && st.st_mtime == c->mtime &&
		st.st_mode == c->mode && !path_is_prefix_of_path(DataDir, path))
	{
		*key = c->key;
		return;
	}
	c->valid = false;
	explicit_bzero(&c->key, sizeof(c->key));
	load_key_file(setting, path, key, &st);
	strlcpy(c->path, path, sizeof(c->path));
	c->ino = st.st_ino;
	c->size = st.st_size;
	c->mtime = st.st_mtime;
	c->mode = st.st_mode;
	c->key = *key;
	c->valid = true;
}

static char *
aad_of(int32 account_id)
{
	return psprintf("withdraw account %d", account_id);
}

/* AES-256-GCM of data under key; nonce || ciphertext || tag */
static bytea *
seal(const SecretsKey *key, int32 account_id, const char *data, int len)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	bytea	   *out = palloc(VARHDRSZ + SECRETS_NONCE_BYTES + len + SECRETS_TAG_BYTES);
	unsigned char *p = (unsigned char *) VARDATA(out);
	char	   *aad = aad_of(account_id);
	int			n = 0;
	int			m = 0;
	bool		ok;

	if (!pg_strong_random(p, SECRETS_NONCE_BYTES))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a nonce")));
	ok = ctx != NULL &&
		EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->bytes, p) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &n, (unsigned char *) aad, strlen(aad)) == 1 &&
		EVP_EncryptUpdate(ctx, p + SECRETS_NONCE_BYTES, &n, (const unsigned char *) data, len) == 1 &&
		EVP_EncryptFinal_ex(ctx, p + SECRETS_NONCE_BYTES + n, &m) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SECRETS_TAG_BYTES,
							p + SECRETS_NONCE_BYTES + n + m) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not seal credentials")));
	SET_VARSIZE(out, VARHDRSZ + SECRETS_NONCE_BYTES + n + m + SECRETS_TAG_BYTES);
	return out;
}

/* The plaintext of a sealed value, or NULL when it does not authenticate. */
static char *
unseal(const SecretsKey *key, int32 account_id, bytea *sealed, int *len)
{
	int			total = VARSIZE_ANY_EXHDR(sealed);
	unsigned char *p = (unsigned char *) VARDATA_ANY(sealed);
	int			clen = total - SECRETS_NONCE_BYTES - SECRETS_TAG_BYTES;
	char	   *plain;
	char	   *aad = aad_of(account_id);
	EVP_CIPHER_CTX *ctx;
	int			n = 0;
	int			m = 0;
	bool		ok;

	if (clen < 0)
		return NULL;
	plain = palloc(clen + 1);
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL &&
		EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->bytes, p) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &n, (unsigned char *) aad, strlen(aad)) == 1 &&
		EVP_DecryptUpdate(ctx, (unsigned char *) plain, &n, p + SECRETS_NONCE_BYTES, clen) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SECRETS_TAG_BYTES,
							p + SECRETS_NONCE_BYTES + clen) == 1 &&
		EVP_DecryptFinal_ex(ctx, (unsigned char *) plain + n, &m) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
	{
		explicit_bzero(plain, clen + 1);
		return NULL;
	}
	plain[n + m] = '\0';
	*len = n + m;
	return plain;
}

/*
 * Can the current key be read?  false with the reason otherwise: the
 * worker asks before it claims anything, so that a missing or unreadable
 * key file stops sending with a clear report instead of failing each claim.
 */
bool
secrets_key_usable(char **why)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		SecretsKey	key;

		read_key_file("withdraw.secrets_key_file", withdraw_secrets_key_file, &key);
		explicit_bzero(&key, sizeof(key));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		*why = edata->message;
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* Seals credentials for account_id under the current key; sets *key_id. */
bytea *
secrets_seal(int32 account_id, Jsonb *credentials, char **key_id)
{
	SecretsKey	key;
	char	   *text = JsonbToCString(NULL, &credentials->root, VARSIZE(credentials));
	bytea	   *sealed;

	read_key_file("withdraw.secrets_key_file", withdraw_secrets_key_file, &key);
	sealed = seal(&key, account_id, text, strlen(text));
	*key_id = pstrdup(key.id);
	explicit_bzero(&key, sizeof(key));
	explicit_bzero(text, strlen(text));
	return sealed;
}

/*
 * Opens an account's sealed credentials with whichever configured key has
 * key_id; ERROR saying which key is missing or that the value is damaged.
 */
Jsonb *
secrets_open(int32 account_id, bytea *sealed, const char *key_id)
{
	SecretsKey	key;
	char	   *plain = NULL;
	int			len = 0;
	Jsonb	   *credentials;
	const char *settings[2] = {"withdraw.secrets_key_file", "withdraw.secrets_previous_key_file"};
	const char *paths[2] = {withdraw_secrets_key_file, withdraw_secrets_previous_key_file};
	bool		found = false;

	for (int i = 0; i < 2 && !found; i++)
	{
		if (i == 1 && (paths[i] == NULL || paths[i][0] == '\0'))
			break;
		read_key_file(settings[i], paths[i], &key);
		if (strcmp(key.id, key_id) == 0)
		{
			found = true;
			plain = unseal(&key, account_id, sealed, &len);
		}
		explicit_bzero(&key, sizeof(key));
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("the credentials of account %d are sealed with key %s, which no configured key file holds",
						account_id, key_id),
				 errhint("Set withdraw.secrets_key_file (or, during a rotation, withdraw.secrets_previous_key_file) to the file of that key.")));
	if (plain == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the sealed credentials of account %d do not authenticate", account_id),
				 errdetail("They were altered, or copied from another account.")));
	credentials = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(plain)));
	explicit_bzero(plain, len);
	return credentials;
}

/*
 * Why an account's sealed credentials cannot be opened, or NULL when they
 * can.  Never raises: the worker asks before it claims, so that one account
 * sealed under a key no longer configured (or altered) stops only itself.
 * The errors caught come from reading key files (closed before any error)
 * and from pure functions, so no subtransaction is needed.  The opened
 * credentials are wiped at once.
 */
char *
secrets_problem(int32 account_id, bytea *sealed, const char *key_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile why = NULL;

	PG_TRY();
	{
		Jsonb	   *credentials = secrets_open(account_id, sealed, key_id);

		explicit_bzero(credentials, VARSIZE(credentials));
		pfree(credentials);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		why = edata->message;
	}
	PG_END_TRY();
	return why;
}

/*
 * SQL: withdraw._credentials_problem(account_id, sealed, key_id) — the
 * reason the account's credentials cannot be opened, or NULL; for the view
 * withdraw.accounts and the workers' claims.
 */
Datum
withdraw_credentials_problem(PG_FUNCTION_ARGS)
{
	char	   *why;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	why = secrets_problem(PG_GETARG_INT32(0), PG_GETARG_BYTEA_PP(1),
						  text_to_cstring(PG_GETARG_TEXT_PP(2)));
	if (why == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(why));
}

/*
 * SQL: withdraw._credentials(account_id, sealed, key_id) — the account's
 * credentials, opened; used inside the extension's own queries (worker,
 * callbacks, syncs) and executable by the owner only.
 */
Datum
withdraw_open_credentials(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(secrets_open(PG_GETARG_INT32(0), PG_GETARG_BYTEA_PP(1),
								   text_to_cstring(PG_GETARG_TEXT_PP(2))));
}

/*
 * SQL: withdraw_rotate_secrets() — re-seals every account's credentials
 * under the current key (from the previous key, or from plaintext left by
 * an upgrade from 0.1.0); returns the number of accounts re-sealed.
 */
Datum
withdraw_rotate_secrets(PG_FUNCTION_ARGS)
{
	int32		count = 0;
	uint64		n;
	SPITupleTable *rows;

	SPI_connect();
	if (SPI_execute("SELECT account_id, credentials, sealed, key_id FROM withdraw.account_secret"
					" ORDER BY account_id FOR UPDATE", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading credentials failed");
	n = SPI_processed;
	rows = SPI_tuptable;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		int32		account_id = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
		Datum		plain = SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull);
		Jsonb	   *credentials;
		char	   *key_id;
		Oid			types[4] = {INT4OID, BYTEAOID, TEXTOID, JSONBOID};
		Datum		values[4];

		if (!isnull)
			credentials = DatumGetJsonbP(plain);
		else
		{
			bytea	   *sealed = DatumGetByteaPP(SPI_getbinval(rows->vals[i], rows->tupdesc, 3, &isnull));

			credentials = secrets_open(account_id, sealed,
									   SPI_getvalue(rows->vals[i], rows->tupdesc, 4));
		}
		values[0] = Int32GetDatum(account_id);
		values[1] = PointerGetDatum(secrets_seal(account_id, credentials, &key_id));
		values[2] = CStringGetTextDatum(key_id);
		values[3] = JsonbPGetDatum(credentials);
		if (SPI_execute_with_args("UPDATE withdraw.account_secret SET credentials = NULL,"
								  " sealed = $2, key_id = $3,"
								  " credential_keys = ARRAY(SELECT jsonb_object_keys($4) ORDER BY 1)"
								  " WHERE account_id = $1",
								  4, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "re-sealing credentials failed");
		count++;
	}
	SPI_finish();
	PG_RETURN_INT32(count);
}
