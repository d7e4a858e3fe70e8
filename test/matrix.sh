#!/usr/bin/env bash
# test/matrix.sh [--build-only] [VERSION ...]: builds withdraw against other
# PostgreSQL majors and runs the test command there, each in a Debian root
# of its own (debootstrap --variant=minbase) that carries that major:
#
#   17  Debian 13 (trixie)        18  Debian unstable (sid)
#
# Default: 17 18.  As root.  The roots are built from the archive that this
# machine's own apt sources name (read here, never written down) and cached
# under $WITHDRAW_MATRIX_CACHE (default /var/cache/withdraw-matrix), keyed by
# suite and package list, so a second run downloads nothing.  In each root:
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
cache=${WITHDRAW_MATRIX_CACHE:-/var/cache/withdraw-matrix}

suite_of() {
	case "$1" in
		17) echo trixie ;;
		18) echo sid ;;
		*) echo "test/matrix.sh: no Debian suite carries PostgreSQL $1 here" >&2; return 1 ;;
	esac
}

# the first Debian archive this machine's apt uses (deb822 or one-line form)
archive_url() {
	local url
	url=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
		/etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
	if [ -z "$url" ]; then
		url=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1)
	fi
	[ -n "$url" ] || { echo "test/matrix.sh: no archive in this machine's apt sources" >&2; return 1; }
	echo "$url"
}

packages_of() {
	echo "postgresql-$1 postgresql-server-dev-$1 libcurl4-openssl-dev libssl-dev make gcc" \
		"python3 python3-psycopg2 python3-cryptography openssl procps"
}

mounted=()
unmount_all() {
	local i
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount -l "${mounted[$i]}" 2>/dev/null || true
	done
	mounted=()
}
trap unmount_all EXIT

# A cached root for major $1 (built when missing); prints its path.
root_for() {
	local v=$1 suite pkgs key root apt_opts
	suite=$(suite_of "$v")
	pkgs=$(packages_of "$v")
	key=$(echo "$suite $pkgs" | sha256sum | cut -c1-12)
	root="$cache/$suite-pg$v-$key"
	if [ -f "$root/.withdraw-ready" ]; then
		echo "$root"
		return
	fi
	command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	mkdir -p "$cache"
	rm -rf "$root.tmp"
	echo "== building a $suite root for PostgreSQL $v (cached in $root)" >&2
	debootstrap --variant=minbase "$suite" "$root.tmp" "$(archive_url)" >"$cache/debootstrap-$suite.log" 2>&1 || {
		tail -20 "$cache/debootstrap-$suite.log" >&2
		return 1
	}
	# no service starts inside the root, and no cluster is made at install
	printf '#!/bin/sh\nexit 101\n' >"$root.tmp/usr/sbin/policy-rc.d"
	chmod 755 "$root.tmp/usr/sbin/policy-rc.d"
	mkdir -p "$root.tmp/etc/postgresql-common"
	echo "create_main_cluster = false" >"$root.tmp/etc/postgresql-common/createcluster.conf"
	# an unstable suite's Release file may be past its Valid-Until in the archive
	apt_opts=(-o Acquire::Check-Valid-Until=false -q)
	# maintainer scripts (postgresql-common's) need /proc
	mount -t proc proc "$root.tmp/proc" && mounted+=("$root.tmp/proc")
	chroot "$root.tmp" apt-get "${apt_opts[@]}" update >/dev/null
	# shellcheck disable=SC2086
	chroot "$root.tmp" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y \
		--no-install-recommends $pkgs >"$cache/apt-$suite.log" 2>&1 || {
		tail -20 "$cache/apt-$suite.log" >&2
		unmount_all
		return 1
	}
	chroot "$root.tmp" apt-get clean
	unmount_all
	touch "$root.tmp/.withdraw-ready"
	mv "$root.tmp" "$root"
	echo "$root"
}

run_in_root() {
	local v=$1 root=$2 status=0
	mount -t proc proc "$root/proc" && mounted+=("$root/proc")
	mount --bind /dev "$root/dev" && mounted+=("$root/dev")
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
	if ! root=$(root_for "$v"); then
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
