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

packages=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libssl-dev
	python3 python3-psycopg2 python3-cryptography make gcc clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

export PATH="/usr/lib/postgresql/15/bin:$PATH"
echo "== building withdraw"
make -s clean >/dev/null
make -s 2>&1 | tee /tmp/withdraw-build.log
if grep -q "warning:" /tmp/withdraw-build.log; then
	echo "the build printed compiler warnings" >&2
	exit 1
fi
# unlink first: running servers keep their mapping of the old library
# instead of seeing it overwritten in place
rm -f "$(pg_config --pkglibdir)/withdraw.so"
make -s install >/dev/null
echo "== installed into $(pg_config --pkglibdir)"
