#!/usr/bin/env bash
# The whole test suite: pg_regress, the mock provider's self-test and the
# integration suite (real server, real worker, mock provider over HTTP).
#
# As root (CI, a fresh Debian 12 machine): installs packages, builds, installs,
# then runs the suites as the unprivileged postgres user, which PostgreSQL
# requires.  As another user: runs the suites against the installed extension.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
PY=/usr/bin/python3

if [ "$(id -u)" -eq 0 ]; then
	bash test/setup.sh
	work=$(mktemp -d /tmp/withdraw-test.XXXXXX)
	cp -a "$top/." "$work/"
	chown -R postgres "$work"
	chmod 755 "$work"
	status=0
	runuser -u postgres -- env PATH="/usr/lib/postgresql/15/bin:$PATH" bash "$work/test/run_all.sh" || status=$?
	rm -rf "$work"
	exit $status
fi

export PATH="/usr/lib/postgresql/15/bin:$PATH"
failed=()

echo "== pg_regress (make installcheck)"
if ! make -s installcheck; then
	failed+=(pg_regress)
	[ -f regression.diffs ] && head -200 regression.diffs
fi

echo "== mock provider self-test"
$PY test/mock/test_mock.py >/tmp/withdraw-mock-selftest.log 2>&1 || {
	failed+=(mock)
	tail -40 /tmp/withdraw-mock-selftest.log
}
tail -3 /tmp/withdraw-mock-selftest.log

for provider in chainup ccpayment fiat_gateway; do
	echo "== mock provider self-test: $provider"
	$PY test/mock/test_mock_$provider.py >/tmp/withdraw-mock-$provider.log 2>&1 || {
		failed+=(mock-$provider)
		tail -40 /tmp/withdraw-mock-$provider.log
	}
	tail -2 /tmp/withdraw-mock-$provider.log
done

echo "== integration suite"
$PY test/integration/test_worker.py || failed+=(integration)

echo "== integration suite: two workers"
$PY test/integration/test_workers.py || failed+=(workers)

echo "== integration suite, again with two workers sharing the work"
WITHDRAW_WORKERS=2 $PY test/integration/test_worker.py || failed+=(integration-two-workers)

echo "== integration suite: p99"
$PY test/integration/test_p99.py || failed+=(p99)

echo "== integration suite: chainup"
$PY test/integration/test_chainup.py || failed+=(chainup)

echo "== integration suite: ccpayment"
$PY test/integration/test_ccpayment.py || failed+=(ccpayment)

echo "== integration suite: fiat_gateway"
$PY test/integration/test_fiat_gateway.py || failed+=(fiat_gateway)

echo "== integration suite: security"
$PY test/integration/test_security.py || failed+=(security)

# libFuzzer on every parser of provider bytes: 7 targets, 25 s each here
# (seeds and regressions replayed first), bash test/fuzz/run.sh (600 s per
# target) for the full run
echo "== fuzz (short)"
bash test/fuzz/run.sh 25 || failed+=(fuzz)

# the crash and fault suites in their short form (bash test/reliability/run.sh
# without --quick is the full size: 10,000 withdrawals, provider down 60 s)
echo "== reliability suites (quick)"
bash test/reliability/run.sh --quick || failed+=(reliability)

echo "== crash suite (quick), with two workers"
WITHDRAW_WORKERS=2 $PY test/reliability/crash_suite.py --quick || failed+=(crash-two-workers)

if [ ${#failed[@]} -gt 0 ]; then
	echo "FAILED: ${failed[*]}"
	exit 1
fi
echo "ALL PASSED"
