#!/usr/bin/env bash
# test/matrix.sh [--build-only] [VERSION ...]: builds withdraw against other
# PostgreSQL majors and runs the test command there, each in a Debian root
# of its own (debootstrap --variant=minbase) that carries that major:
#
#   17  Debian 13 (trixie)        18  Debian unstable (sid)
#
# Default: 17 18.  As root.  The roots are built from the archive that this
# machine's own apt sources name (read at run time, never written down) and
# cached (test/roots.sh), so a second run downloads nothing.  In each root:
# the tree is copied to /build, then `bash test/run_all.sh` runs there with
# PG_CONFIG naming that major (setup, build without warnings, install,
# pg_regress and the suites as the postgres user; WITHDRAW_MATRIX_MEMBER=1
# leaves out what needs this host: the fuzzers, which need its clang, and
# the matrix itself).  --build-only stops after the build.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "$(id -u)" -ne 0 ]; then
	echo "test/matrix.sh: run as root (debootstrap, chroot)" >&2
	exit 1
fi

build_only=0
if [ "${1:-}" = "--build-only" ]; then
	build_only=1
	shift
fi
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(17 18)

suite_of() {
	case "$1" in
		17) echo trixie ;;
		18) echo sid ;;
		*) echo "test/matrix.sh: no Debian suite carries PostgreSQL $1 here" >&2; return 1 ;;
	esac
}

. "$top/test/roots.sh"

packages_of() {
	echo "postgresql-$1 postgresql-server-dev-$1 libcurl4-openssl-dev libssl-dev libmicrohttpd-dev libpq-dev make gcc" \
		"python3 python3-psycopg2 python3-cryptography openssl procps ca-certificates prometheus-postgres-exporter"
}

run_in_root() {
	local v=$1 root=$2 status=0
	mount_root "$root"
	rm -rf "$root/build"
	mkdir -p "$root/build"
	tar -C "$top" --exclude=.git --exclude='*.o' --exclude='*.so' --exclude=results \
		--exclude=tmp_check -cf - . | tar -C "$root/build" -xf -
	if [ $build_only -eq 1 ]; then
		chroot "$root" bash -c "cd /build && make -s PG_CONFIG=/usr/lib/postgresql/$v/bin/pg_config 2>&1" || status=$?
	else
		chroot "$root" env PG_CONFIG="/usr/lib/postgresql/$v/bin/pg_config" WITHDRAW_MATRIX_MEMBER=1 \
			CI="${CI:-}" bash /build/test/run_all.sh || status=$?
	fi
	unmount_all
	return $status
}

failed=()
for v in "${versions[@]}"; do
	echo "== PostgreSQL $v"
	started=$(date +%s)
	if ! suite=$(suite_of "$v") || ! root=$(root_for "pg$v" "$suite" $(packages_of "$v")); then
		failed+=("$v(root)")
		continue
	fi
	if run_in_root "$v" "$root"; then
		echo "== PostgreSQL $v: passed in $(($(date +%s) - started)) s"
	else
		echo "== PostgreSQL $v: FAILED after $(($(date +%s) - started)) s"
		failed+=("$v")
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "matrix FAILED: ${failed[*]}"
	exit 1
fi
echo "matrix passed: ${versions[*]}"
