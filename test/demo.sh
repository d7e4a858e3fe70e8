#!/usr/bin/env bash
# The demo: on a fresh Debian 12 machine (as root) installs what is needed,
# builds, starts a throwaway cluster with the extension and the mock provider,
# and follows one withdrawal from BEGIN ... COMMIT to succeeded.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" -eq 0 ]; then
	bash "$top/test/setup.sh"
	work=$(mktemp -d /tmp/withdraw-demo.XXXXXX)
	cp -a "$top/test" "$work/"
	chown -R postgres "$work"
	chmod 755 "$work"
	. "$top/test/pg_config.sh"
	pg_config_choose
	runuser -u postgres -- env PG_CONFIG="$PG_CONFIG" PATH="$PATH" /usr/bin/python3 "$work/test/demo.py"
	rm -rf "$work"
else
	. "$top/test/pg_config.sh"
	pg_config_choose
	/usr/bin/python3 "$top/test/demo.py"
fi
