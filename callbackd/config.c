/*-------------------------------------------------------------------------
 *
 * config.c
 *	  withdraw-callbackd's settings: defaults, a configuration file of
 *	  "key = value" lines ('#' starts a comment), and command-line flags
 *	  "--key=value" with the same names, which win over the file.
 *
 * Every number is bounded; an unknown key is an error (a typo must not
 * pass silently).  Error texts name the key, never a value that could be
 * a secret (the database connection string may hold a password).
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callbackd.h"

Config		config;

void
config_defaults(Config *c)
{
	memset(c, 0, sizeof(*c));
	c->listen = strdup("127.0.0.1:8480");
	c->database = strdup("");
	c->threads = 4;
	c->max_connections = 256;
	c->max_connections_per_ip = 0;
	c->max_body_bytes = 65536;
	c->max_headers = 64;
	c->max_header_bytes = 16384;
	c->timeout_s = 10;
	c->request_timeout_s = 30;
	c->db_timeout_ms = 10000;
	c->shutdown_timeout_s = 10;
	c->access_log = true;
}

/* An integer setting within [min, max]. */
static bool
set_int(int *out, const char *key, const char *value, int min, int max, char *err, size_t errlen)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < min || v > max)
	{
		snprintf(err, errlen, "%s must be an integer from %d to %d", key, min, max);
		return false;
	}
	*out = (int) v;
	return true;
}

/* Account names: what withdraw_account_create accepts in a URL path segment. */
static bool
valid_account(const char *s)
{
	size_t		n = strlen(s);

	if (n == 0 || n > 63)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char) *s) && *s != '_' && *s != '-' && *s != '.')
			return false;
	return true;
}

/* "a, b c" -> accounts. */
static bool
set_accounts(Config *c, const char *value, char *err, size_t errlen)
{
	char	   *copy = strdup(value);
	char	   *save = NULL;
	char	   *tok;

	c->naccounts = 0;
	free(c->accounts);
	c->accounts = calloc(strlen(value) / 2 + 2, sizeof(char *));
	for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
	{
		if (!valid_account(tok))
		{
			snprintf(err, errlen, "accounts: \"%.64s\" is not an account name (1-63 letters, digits, _ - .)", tok);
			free(copy);
			return false;
		}
		c->accounts[c->naccounts++] = strdup(tok);
	}
	free(copy);
	return true;
}

static bool
set_bool(bool *out, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
		*out = true;
	else if (strcmp(value, "off") == 0 || strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
		*out = false;
	else
	{
		snprintf(err, errlen, "%s must be on or off", key);
		return false;
	}
	return true;
}

static void
set_str(char **out, const char *value)
{
	free(*out);
	*out = *value ? strdup(value) : NULL;
}

/* One setting by name. */
bool
config_set(Config *c, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(key, "listen") == 0)
		set_str(&c->listen, value);
	else if (strcmp(key, "database") == 0)
	{
		free(c->database);
		c->database = strdup(value);
	}
	else if (strcmp(key, "accounts") == 0)
		return set_accounts(c, value, err, errlen);
	else if (strcmp(key, "threads") == 0)
		return set_int(&c->threads, key, value, 1, 64, err, errlen);
	else if (strcmp(key, "max_connections") == 0)
		return set_int(&c->max_connections, key, value, 1, 65536, err, errlen);
	else if (strcmp(key, "max_connections_per_ip") == 0)
		return set_int(&c->max_connections_per_ip, key, value, 0, 65536, err, errlen);
	else if (strcmp(key, "max_body_bytes") == 0)
		return set_int(&c->max_body_bytes, key, value, 1024, 16 * 1024 * 1024, err, errlen);
	else if (strcmp(key, "max_headers") == 0)
		return set_int(&c->max_headers, key, value, 4, 1000, err, errlen);
	else if (strcmp(key, "max_header_bytes") == 0)
		return set_int(&c->max_header_bytes, key, value, 4096, 1024 * 1024, err, errlen);
	else if (strcmp(key, "timeout") == 0)
		return set_int(&c->timeout_s, key, value, 1, 3600, err, errlen);
	else if (strcmp(key, "request_timeout") == 0)
		return set_int(&c->request_timeout_s, key, value, 1, 3600, err, errlen);
	else if (strcmp(key, "db_timeout_ms") == 0)
		return set_int(&c->db_timeout_ms, key, value, 100, 600000, err, errlen);
	else if (strcmp(key, "shutdown_timeout") == 0)
		return set_int(&c->shutdown_timeout_s, key, value, 0, 3600, err, errlen);
	else if (strcmp(key, "allow") == 0)
		return netlist_parse(&c->allow, value, err, errlen);
	else if (strcmp(key, "trusted_proxies") == 0)
		return netlist_parse(&c->trusted_proxies, value, err, errlen);
	else if (strcmp(key, "tls_cert") == 0)
		set_str(&c->tls_cert, value);
	else if (strcmp(key, "tls_key") == 0)
		set_str(&c->tls_key, value);
	else if (strcmp(key, "user") == 0)
		set_str(&c->user, value);
	else if (strcmp(key, "access_log") == 0)
		return set_bool(&c->access_log, key, value, err, errlen);
	else
	{
		snprintf(err, errlen, "unknown setting \"%.64s\"", key);
		return false;
	}
	return true;
}

static char *
trim(char *s)
{
	char	   *e;

	while (isspace((unsigned char) *s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char) e[-1]))
		*--e = '\0';
	return s;
}

/* Reads "key = value" lines; the error names the file and line. */
bool
config_load_file(Config *c, const char *path, char *err, size_t errlen)
{
	FILE	   *f = fopen(path, "r");
	char		line[4096];
	int			lineno = 0;

	if (f == NULL)
	{
		snprintf(err, errlen, "could not open %s: %s", path, strerror(errno));
		return false;
	}
	while (fgets(line, sizeof(line), f))
	{
		char	   *s,
				   *eq,
				   *hash;
		char		inner[512];

		lineno++;
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		s = trim(line);
		if (*s == '\0')
			continue;
		if ((eq = strchr(s, '=')) == NULL)
		{
			snprintf(err, errlen, "%s:%d: expected key = value", path, lineno);
			fclose(f);
			return false;
		}
		*eq = '\0';
		if (!config_set(c, trim(s), trim(eq + 1), inner, sizeof(inner)))
		{
			snprintf(err, errlen, "%s:%d: %s", path, lineno, inner);
			fclose(f);
			return false;
		}
	}
	fclose(f);
	return true;
}

/* What must hold once file and flags are read. */
bool
config_check(Config *c, char *err, size_t errlen)
{
	if (c->naccounts == 0)
	{
		snprintf(err, errlen, "no accounts: set accounts = name, ... (each gets /NAME/notify and /NAME/confirm)");
		return false;
	}
	if (c->listen == NULL)
	{
		snprintf(err, errlen, "listen must be host:port");
		return false;
	}
	if ((c->tls_cert == NULL) != (c->tls_key == NULL))
	{
		snprintf(err, errlen, "tls_cert and tls_key go together");
		return false;
	}
	return true;
}

bool
config_has_account(const Config *c, const char *name)
{
	for (int i = 0; i < c->naccounts; i++)
		if (strcmp(c->accounts[i], name) == 0)
			return true;
	return false;
}
