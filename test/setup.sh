#!/usr/bin/env bash
# Prepares a Debian 12 machine: installs the packages withdraw needs, builds
# and installs the extension.  Must run as root (apt-get, make install).
# Sourced by test/run_all.sh and test/demo.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "test/setup.sh: run as root (it installs packages and the extension)" >&2
	exit 1
fi

. test/pg_config.sh
if ! pg_config_choose; then
	# no server yet: Debian's default major for this release
	echo "== installing PostgreSQL (Debian's default major)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-server-dev-all >/dev/null
	pg_config_choose
fi
packages=("postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" libcurl4-openssl-dev libssl-dev
	libmicrohttpd-dev libpq-dev python3 python3-psycopg2 python3-cryptography make gcc prometheus-postgres-exporter)
# the fuzzers (test/fuzz) need clang with its sanitizer runtimes; a matrix
# member (test/matrix.sh) runs none
[ "${WITHDRAW_MATRIX_MEMBER:-0}" = 1 ] || packages+=(clang libclang-rt-dev)
missing=()
for p in "${packages[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== building withdraw for PostgreSQL $PG_MAJOR ($PG_CONFIG)"
make -s clean >/dev/null
make -s PG_CONFIG="$PG_CONFIG" 2>&1 | tee /tmp/withdraw-build.log
if grep -q "warning:" /tmp/withdraw-build.log; then
	echo "the build printed compiler warnings" >&2
	exit 1
fi
# unlink first: running servers keep their mapping of the old library
# instead of seeing it overwritten in place
rm -f "$("$PG_CONFIG" --pkglibdir)/withdraw.so"
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
echo "== installed into $("$PG_CONFIG" --pkglibdir)"
