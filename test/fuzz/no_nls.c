/*-------------------------------------------------------------------------
 *
 * no_nls.c
 *	  Message translation turned off, for a postgres run with the ASan
 *	  runtime preloaded (run.sh).
 *
 * glibc's bindtextdomain() through ASan's interceptor hangs on its own
 * rwlock in a program that was not built with ASan (llvm-project issue
 * 49223), and postgres calls it first thing.  Preloaded after the ASan
 * runtime, these make the calls no-ops: messages stay in English.
 *
 *-------------------------------------------------------------------------
 */
char	   *bindtextdomain(const char *domain, const char *dirname);
char	   *textdomain(const char *domain);
char	   *bind_textdomain_codeset(const char *domain, const char *codeset);

char *
bindtextdomain(const char *domain, const char *dirname)
{
	(void) domain;
	return (char *) dirname;
}

char *
textdomain(const char *domain)
{
	return (char *) (domain ? domain : "messages");
}

char *
bind_textdomain_codeset(const char *domain, const char *codeset)
{
	(void) domain;
	return (char *) codeset;
}
