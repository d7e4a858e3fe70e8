/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The list of providers.  A new provider is one line here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "provider.h"

/* The providers: one line each, the name its file gives PROVIDER_DEFINE. */
#define PROVIDERS(X) \
	X(zoomex) \
	X(p99) \
	X(chainup) \
	X(ccpayment) \
	X(fiat_gateway)

#define DECLARE_PROVIDER(name) extern const Provider name##_provider;
#define LIST_PROVIDER(name) &name##_provider,

PROVIDERS(DECLARE_PROVIDER)

static const Provider *const providers[] = {
	PROVIDERS(LIST_PROVIDER)
};

const Provider *
provider_lookup(const char *name)
{
	for (int i = 0; i < lengthof(providers); i++)
		if (strcmp(providers[i]->name, name) == 0)
			return providers[i];
	return NULL;
}

const Provider *
provider_lookup_or_error(const char *name)
{
	const Provider *provider = provider_lookup(name);

	if (provider == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("provider \"%s\" does not exist", name),
				 errhint("Known providers: %s.", provider_names())));
	return provider;
}

char *
provider_names(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(providers); i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", providers[i]->name);
	return buf.data;
}
