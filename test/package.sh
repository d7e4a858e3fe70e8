#!/usr/bin/env bash
# test/package.sh: builds the Debian package the way Debian builds
# PostgreSQL extensions (debian/, pg_buildext: postgresql-NN-withdraw for
# each major installed here), installs it into a clean root of this
# machine's own Debian release that has only PostgreSQL (test/roots.sh),
# creates the extension there and runs pg_regress against the installed
# files: the tests' sql/ and expected/ are all that is copied of the tree.
# As root.  The built packages are left in $WITHDRAW_PACKAGES (default
# /tmp/withdraw-packages).
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "$(id -u)" -ne 0 ]; then
	echo "test/package.sh: run as root (apt-get, chroot)" >&2
	exit 1
fi
. "$top/test/roots.sh"

build_deps=(debhelper postgresql-server-dev-all fakeroot dpkg-dev libcurl4-openssl-dev libssl-dev libmicrohttpd-dev libpq-dev)
missing=()
for p in "${build_deps[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

out=${WITHDRAW_PACKAGES:-/tmp/withdraw-packages}
work=$(mktemp -d /tmp/withdraw-package.XXXXXX)
trap 'unmount_all; rm -rf "$work"' EXIT
mkdir "$work/withdraw"
tar -C "$top" --exclude=.git --exclude='*.o' --exclude='*.so' --exclude=results --exclude=tmp_check \
	-cf - . | tar -C "$work/withdraw" -xf -
echo "== dpkg-buildpackage"
(cd "$work/withdraw" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || {
	tail -30 "$work/build.log"
	exit 1
}
if grep -qE "\.[ch]:[0-9]+:[0-9]+: warning:|dpkg-[a-z]+: warning:" "$work/build.log"; then
	grep -E "warning:" "$work/build.log" | head
	echo "the package build printed compiler warnings" >&2
	exit 1
fi
rm -rf "$out"
mkdir -p "$out"
cp "$work"/postgresql-*-withdraw_*.deb "$out/"
ls -l "$out"

status=0
for deb in "$out"/postgresql-*-withdraw_*.deb; do
	major=$(basename "$deb" | sed -E 's/^postgresql-([0-9]+)-withdraw_.*/\1/')
	suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
	# the server and pg_regress (shipped with the server's development
	# files); nothing of withdraw
	root=$(root_for "pkg$major" "$suite" "postgresql-$major" "postgresql-server-dev-$major" procps)
	echo "== installing $(basename "$deb") into a clean $suite root"
	rm -rf "$root/pkgtest"
	mkdir -p "$root/pkgtest"
	cp "$deb" "$root/pkgtest/"
	cp -a "$top/sql" "$top/expected" "$root/pkgtest/"
	sed "s|@SECRETS_KEY_FILE@|/pkgtest/secrets.key|" "$top/test/regress.conf" >"$root/pkgtest/regress.conf"
	mount_root "$root"
	chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false -q install -y \
		"/pkgtest/$(basename "$deb")" >"$work/install.log" 2>&1 || {
		tail -20 "$work/install.log"
		status=1
		unmount_all
		continue
	}
	tests=$(sed -n 's/^REGRESS = //p' "$top/Makefile")
	# shellcheck disable=SC2016
	chroot "$root" bash -c '
		set -e
		dpkg -L postgresql-'"$major"'-withdraw | grep -E "withdraw(\.so|\.control)$|/withdraw-callbackd$"
		/usr/lib/postgresql/'"$major"'/bin/withdraw-callbackd --version
		chown -R postgres /pkgtest
		cd /pkgtest
		runuser -u postgres -- bash -c "umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d \" \n\" > /pkgtest/secrets.key"
		runuser -u postgres -- /usr/lib/postgresql/'"$major"'/lib/pgxs/src/test/regress/pg_regress \
			--bindir=/usr/lib/postgresql/'"$major"'/bin --inputdir=/pkgtest --outputdir=/pkgtest \
			--temp-instance=/pkgtest/tmp_check --temp-config=/pkgtest/regress.conf --dbname=contrib_regression '"$tests"'
	' || {
		status=1
		[ -f "$root/pkgtest/regression.diffs" ] && head -100 "$root/pkgtest/regression.diffs"
	}
	chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q remove -y "postgresql-$major-withdraw" >/dev/null 2>&1 || true
	unmount_all
done
[ $status -eq 0 ] && echo "package: built, installed into a clean root, pg_regress passed on the installed files"
exit $status
