#!/usr/bin/env bash
# The reliability suites: the crash suite (withdrawals committed while the
# worker and the postmaster are killed -9), the fault suite (one withdrawal
# per injected provider fault) and the failover suite (a primary and a
# streaming standby, the primary killed -9, the standby promoted: synchronous
# and asynchronous replication).  Options (e.g. --quick) are passed to all.
#
#   bash test/reliability/run.sh --quick     # CI size: about 1,000 withdrawals, provider down 15 s, 2+2 failovers
#   bash test/reliability/run.sh             # full: 10,000 withdrawals, provider down 60 s, 10+10 failovers
#
# As root: copies the tree to a temporary directory owned by postgres and runs
# there as postgres (PostgreSQL refuses root).  As another user: runs in place
# against the installed extension.  Exit status 1 if either suite fails.
set -uo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY=/usr/bin/python3

if [ "$(id -u)" -eq 0 ]; then
	work=$(mktemp -d /tmp/withdraw-reliability.XXXXXX)
	cp -a "$top/." "$work/"
	chown -R postgres "$work"
	chmod 755 "$work"
	status=0
	. "$top/test/pg_config.sh"
	pg_config_choose
	runuser -u postgres -- env PG_CONFIG="$PG_CONFIG" PATH="$PATH" bash "$work/test/reliability/run.sh" "$@" || status=$?
	rm -rf "$work"
	exit $status
fi

. "$top/test/pg_config.sh"
pg_config_choose || { echo "test/reliability/run.sh: no PostgreSQL found (set PG_CONFIG)" >&2; exit 1; }
cd "$top"
failed=()

echo "== crash suite $*"
$PY test/reliability/crash_suite.py "$@" || failed+=(crash)

echo "== fault suite $*"
$PY test/reliability/fault_suite.py "$@" || failed+=(fault)

echo "== failover suite $*"
$PY test/reliability/failover_suite.py "$@" || failed+=(failover)

if [ ${#failed[@]} -gt 0 ]; then
	echo "reliability: FAILED: ${failed[*]}"
	exit 1
fi
echo "reliability: ALL PASSED"
