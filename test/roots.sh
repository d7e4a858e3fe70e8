# Sourced by test/matrix.sh and test/package.sh (as root): Debian roots made
# with debootstrap --variant=minbase from the archive this machine's own apt
# sources name (read at run time, never written down), cached under
# $WITHDRAW_ROOTS (default /var/cache/withdraw-matrix) and keyed by suite and
# package list, so that a second run downloads nothing.
cache=${WITHDRAW_ROOTS:-${WITHDRAW_MATRIX_CACHE:-/var/cache/withdraw-matrix}}

# the first Debian archive this machine's apt uses (deb822 or one-line form)
archive_url() {
	local url
	url=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
		/etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
	if [ -z "$url" ]; then
		url=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1)
	fi
	[ -n "$url" ] || { echo "test/roots.sh: no archive in this machine's apt sources" >&2; return 1; }
	echo "$url"
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

# mounts what a server and the test suites need inside root $1
mount_root() {
	mount -t proc proc "$1/proc" && mounted+=("$1/proc")
	mount --bind /dev "$1/dev" && mounted+=("$1/dev")
}

# root_for NAME SUITE PACKAGES...: the cached root of SUITE with PACKAGES
# (built when missing); prints its path.
root_for() {
	local name=$1 suite=$2 key root apt_opts
	shift 2
	local pkgs="$*"
	local host_suite
	host_suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	key=$(echo "$suite $pkgs $([ "$suite" = "$host_suite" ] && echo host-sources)" | sha256sum | cut -c1-12)
	root="$cache/$suite-$name-$key"
	if [ -f "$root/.withdraw-ready" ]; then
		echo "$root"
		return
	fi
	command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	mkdir -p "$cache"
	rm -rf "$root.tmp"
	echo "== building a $suite root for $name (cached in $root)" >&2
	debootstrap --variant=minbase "$suite" "$root.tmp" "$(archive_url)" >"$cache/debootstrap-$suite.log" 2>&1 || {
		tail -20 "$cache/debootstrap-$suite.log" >&2
		return 1
	}
	# no service starts inside the root, and no cluster is made at install
	printf '#!/bin/sh\nexit 101\n' >"$root.tmp/usr/sbin/policy-rc.d"
	chmod 755 "$root.tmp/usr/sbin/policy-rc.d"
	mkdir -p "$root.tmp/etc/postgresql-common"
	echo "create_main_cluster = false" >"$root.tmp/etc/postgresql-common/createcluster.conf"
	# this machine's own release: its updates and security suites too (a
	# package built here depends on the server version installed here)
	if [ "$suite" = "$host_suite" ]; then
		rm -f "$root.tmp/etc/apt/sources.list"
		cp /etc/apt/sources.list.d/*.sources "$root.tmp/etc/apt/sources.list.d/" 2>/dev/null || true
		[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root.tmp/etc/apt/"
	fi
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

