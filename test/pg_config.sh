# Sourced by the test, demo and bench scripts: chooses the PostgreSQL they
# build for and run.  PG_CONFIG, when set, names it (test/matrix.sh sets it
# for each major); otherwise the newest server installed from Debian's
# packages (/usr/lib/postgresql/NN).  Exports PG_CONFIG, PG_MAJOR and PG_BIN
# and puts PG_BIN first on PATH.  pg_config_choose returns 1 when none is
# installed yet (test/setup.sh installs Debian's default major then).
pg_config_choose() {
	if [ -z "${PG_CONFIG:-}" ] || [ "$PG_CONFIG" = pg_config ]; then
		PG_CONFIG=$(ls -d /usr/lib/postgresql/*/bin/pg_config 2>/dev/null | sort -V | tail -1)
	fi
	[ -n "$PG_CONFIG" ] && [ -x "$PG_CONFIG" ] || return 1
	PG_MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
	PG_BIN=$("$PG_CONFIG" --bindir)
	export PG_CONFIG PG_MAJOR PG_BIN
	export PATH="$PG_BIN:$PATH"
}
