#!/usr/bin/env bash
# The whole test suite: pg_regress, the mock provider's self-test and the
# integration suite (real server, real worker, mock provider over HTTP).
#
# As root (CI, a fresh Debian 12 machine): installs packages, builds, installs,
# then runs the suites as the unprivileged postgres user, which PostgreSQL
# requires, then the same on the other PostgreSQL majors (test/matrix.sh;
# WITHDRAW_MATRIX=0 skips it).  As another user: runs the suites against the
# installed extension.  PG_CONFIG selects the PostgreSQL (test/pg_config.sh).
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
PY=/usr/bin/python3

if [ "$(id -u)" -eq 0 ]; then
	bash test/setup.sh
	. test/pg_config.sh
	pg_config_choose
	work=$(mktemp -d /tmp/withdraw-test.XXXXXX)
	cp -a "$top/." "$work/"
	chown -R postgres "$work"
	chmod 755 "$work"
	status=0
	runuser -u postgres -- env PG_CONFIG="$PG_CONFIG" PATH="$PATH" bash "$work/test/run_all.sh" || status=$?
	rm -rf "$work"
	if [ "${WITHDRAW_MATRIX_MEMBER:-0}" != 1 ] && [ "${WITHDRAW_MATRIX:-1}" != 0 ]; then
		echo "== the Debian package, installed into a clean root (test/package.sh)"
		bash test/package.sh || status=1
		echo "== the other PostgreSQL majors (test/matrix.sh)"
		bash test/matrix.sh || status=1
	fi
	exit $status
fi

. test/pg_config.sh
pg_config_choose || { echo "test/run_all.sh: no PostgreSQL found (set PG_CONFIG)" >&2; exit 1; }
echo "== PostgreSQL $PG_MAJOR ($PG_CONFIG)"
failed=()

echo "== pg_regress (make installcheck)"
if ! make -s PG_CONFIG="$PG_CONFIG" installcheck; then
	failed+=(pg_regress)
	[ -f regression.diffs ] && head -200 regression.diffs
fi

echo "== META.json (PGXN Meta Spec)"
$PY test/check_meta.py || failed+=(meta)

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

echo "== integration suite: payout desk (approval, allowlist, operators, feed, exporter)"
$PY test/integration/test_desk.py || failed+=(desk)

echo "== integration suite, again with two workers sharing the work"
WITHDRAW_WORKERS=2 $PY test/integration/test_worker.py || failed+=(integration-two-workers)

echo "== integration suite: p99"
$PY test/integration/test_p99.py || failed+=(p99)

echo "== integration suite: chainup"
$PY test/integration/test_chainup.py || failed+=(chainup)

echo "== integration suite: chainup security (spliced envelopes, stale notifications)"
$PY test/integration/test_chainup_security.py || failed+=(chainup-security)

echo "== integration suite: ccpayment"
$PY test/integration/test_ccpayment.py || failed+=(ccpayment)

echo "== integration suite: fiat_gateway"
$PY test/integration/test_fiat_gateway.py || failed+=(fiat_gateway)

echo "== integration suite: callbackd (providers' callbacks over HTTP through withdraw-callbackd)"
$PY test/integration/test_callbackd.py || failed+=(callbackd)

echo "== integration suite: security"
$PY test/integration/test_security.py || failed+=(security)

echo "== integration suite: hardening (a database owner's planted objects)"
$PY test/integration/test_hardening.py || failed+=(hardening)

echo "== integration suite: secrets in the server log"
$PY test/integration/test_secret_logs.py || failed+=(secret_logs)

echo "== integration suite: network guard"
$PY test/integration/test_network_guard.py || failed+=(network-guard)

echo "== integration suite: poison answers, quarantine, unopenable credentials"
$PY test/integration/test_poison.py || failed+=(poison)

echo "== integration suite: workers only on a primary (streaming standby, promotion, fencing)"
$PY test/integration/test_standby.py || failed+=(standby)

# libFuzzer on every parser of provider bytes: 7 targets, 25 s each here
# (seeds and regressions replayed first), bash test/fuzz/run.sh (600 s per
# target) for the full run; it needs this host's clang, so not in the matrix
if [ "${WITHDRAW_MATRIX_MEMBER:-0}" != 1 ]; then
	echo "== fuzz (short)"
	bash test/fuzz/run.sh 25 || failed+=(fuzz)
fi

# the crash and fault suites in their short form (bash test/reliability/run.sh
# without --quick is the full size: 10,000 withdrawals, provider down 60 s)
echo "== reliability suites (quick)"
bash test/reliability/run.sh --quick || failed+=(reliability)

echo "== crash suite (quick), with two workers"
WITHDRAW_WORKERS=2 $PY test/reliability/crash_suite.py --quick || failed+=(crash-two-workers)

# answers recorded by commits that do not wait for the flush: a kill loses
# the last of them, and exactly once must still hold
echo "== crash suite (quick), withdraw.synchronous_outcomes off"
$PY test/reliability/crash_suite.py --quick --set withdraw.synchronous_outcomes=off || failed+=(crash-async-outcomes)

if [ ${#failed[@]} -gt 0 ]; then
	echo "PostgreSQL $PG_MAJOR: FAILED: ${failed[*]}"
	exit 1
fi
echo "PostgreSQL $PG_MAJOR: ALL PASSED"
