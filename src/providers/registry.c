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

static const Provider *const providers[] = {
	&zoomex_provider,
	&p99_provider,
	&chainup_provider,
	&ccpayment_provider,
	&fiat_gateway_provider,
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
