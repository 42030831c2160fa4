#!/usr/bin/env bash
# Builds Debian 12's kernel (linux-source-6.1, the release the lab image runs) with the
# kernel's own checkers switched on (KASAN, lockdep, kmemleak, DEBUG_ATOMIC_SLEEP) as two
# Debian packages, linux-image and linux-headers, so that the lab can boot it and DKMS can
# build pool.ko against it (POOL_LAB_KERNEL=debug, `make test-debug`).
#
# Built once into $XDG_CACHE_HOME/pool-lab/debug-kernel/<key>/ (outside the repository),
# keyed by the source package version and this script with its config fragment; a second
# run with the same key prints the folder and does nothing. The configuration is Debian's
# own, cut down by localmodconfig to the modules the lab loads
# (molecule/lab/debug-kernel/modules.txt), so the debug kernel behaves like the one the lab
# tests every day, minus thousands of drivers no VM needs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
conf_dir="$here/molecule/lab/debug-kernel"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/pool-lab/debug-kernel"
jobs="${POOL_DEBUG_KERNEL_JOBS:-$(nproc)}"

die() { echo "build-debug-kernel: $*" >&2; exit 1; }
build_deps=(bc bison flex libssl-dev libelf-dev rsync xz-utils cpio kmod fakeroot dpkg-dev gcc make)
missing_deps=()
for dep in "${build_deps[@]}"; do
	dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q "ok installed" || missing_deps+=("$dep")
done
if [ "${#missing_deps[@]}" -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || die "missing build packages: ${missing_deps[*]} (run as root, or apt-get install them)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_deps[@]}" >&2 \
		|| die "apt-get install ${missing_deps[*]} failed"
fi

# The kernel the lab runs: linux-headers-amd64's dependency names its ABI, linux-source-6.1
# of the same version holds its source.
abi_pkg="$(apt-cache depends linux-headers-amd64 | sed -n 's/^ *Depends: \(linux-headers-6\.1\.[0-9.-]*-amd64\)$/\1/p' | head -1)"
[ -n "$abi_pkg" ] || die "cannot tell the Debian 12 kernel ABI from linux-headers-amd64 (apt-get update?)"
version="$(apt-cache show "$abi_pkg" | sed -n 's/^Version: //p' | head -1)"
apt-cache show "linux-source-6.1=$version" >/dev/null 2>&1 || die "linux-source-6.1 $version is not in the archive"

# Bump when the build steps below change what comes out of them.
recipe=1
key="$( { echo "$version $recipe"; cat "$conf_dir/config.fragment" "$conf_dir/modules.txt"; } | sha256sum | cut -c1-16)"
out="$cache/$key"
if [ -f "$out/manifest.json" ]; then
	echo "$out"
	exit 0
fi

work="$cache/work-$key"
rm -rf "$work"
mkdir -p "$work/dl" "$cache"
start="$(date +%s)"
log="$work/build.log"
echo "build-debug-kernel: Debian $version, $jobs jobs, log $log" >&2

(cd "$work/dl" && apt-get download -q "linux-source-6.1=$version" "$abi_pkg=$version") >>"$log" 2>&1 \
	|| die "downloading linux-source-6.1 $version failed (see $log)"
dpkg-deb -x "$work/dl"/linux-source-6.1_*.deb "$work/pkg"
dpkg-deb -x "$work/dl/${abi_pkg}"_*.deb "$work/pkg"
tar -C "$work" -xaf "$work/pkg/usr/src/linux-source-6.1.tar.xz"
src="$work/linux-source-6.1"
cp "$work/pkg/usr/src/$abi_pkg/.config" "$src/.config"

cd "$src"
# Debian's config names Debian's signing certificates, which are not in the source package.
scripts/config --set-str SYSTEM_TRUSTED_KEYS "" --set-str SYSTEM_REVOCATION_KEYS "" \
	--set-str MODULE_SIG_KEY "certs/signing_key.pem" --set-str BUILD_SALT "pool-debug"
# Each fragment line is CONFIG_X=y|m|n or CONFIG_X="string"; merge_config applies them and
# olddefconfig resolves what they imply.
{
	make olddefconfig
	make LSMOD="$conf_dir/modules.txt" localmodconfig </dev/null
	scripts/kconfig/merge_config.sh -m .config "$conf_dir/config.fragment"
	make olddefconfig
} >>"$log" 2>&1
missing=""
while IFS= read -r line; do
	case "$line" in ''|'#'*) continue ;; esac
	name="${line%%=*}" want="${line#*=}"
	if [ "$want" = n ]; then
		grep -qx "$name=[ym]" .config && missing="$missing $name(want n)"
	else
		grep -qx "$name=$want" .config || missing="$missing $name(want $want)"
	fi
done <"$conf_dir/config.fragment"
[ -z "$missing" ] || die "the config does not hold:$missing (a dependency is off; see $log)"

nice -n 10 make -j"$jobs" LOCALVERSION=-pooldebug KDEB_PKGVERSION="$version+pooldebug1" \
	bindeb-pkg >>"$log" 2>&1 || die "kernel build failed (tail of $log):
$(tail -30 "$log")"

seconds=$(( $(date +%s) - start ))
mkdir -p "$out.tmp"
mv "$work"/linux-image-*pooldebug*.deb "$work"/linux-headers-*pooldebug*.deb "$out.tmp/"
image_deb=""
for deb in "$out.tmp"/linux-image-*.deb; do
	case "$deb" in *-dbg_*) ;; *) image_deb="${deb##*/}" ;; esac
done
release="$(cat "$src/include/config/kernel.release")"
cp "$src/.config" "$out.tmp/config"
cat >"$out.tmp/manifest.json" <<EOF
{"debian_version": "$version", "release": "$release", "build_seconds": $seconds,
 "jobs": $jobs, "image_deb": "$image_deb"}
EOF
rm -f "$out.tmp"/linux-image-*-dbg_*.deb
mv "$out.tmp" "$out"
cp "$log" "$out/build.log"
rm -rf "$work"
echo "build-debug-kernel: $release built in $seconds s" >&2
echo "$out"
