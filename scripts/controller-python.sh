#!/usr/bin/env bash
# Prints the path of the Python the controller venvs are made from: Debian's python3.13 or
# python3.12 when the host has one (Debian 13), otherwise Debian 13's python3.13 unpacked into
# .cache/controller-python.
#
# ansible-core 2.20 and later need Python 3.12 or newer on the controller; Debian 12 ships
# 3.11. Its packages come from Debian's archive (mmdebstrap of trixie, the mirror the lab
# images use), and the interpreter is pointed at that tree's own glibc and libraries with
# patchelf, so it runs on the Debian 12 host without touching it. Built once per checkout
# (about 150 MB, a minute); rebuilt when the tree is broken or the recipe changes.
#
# Usage: scripts/controller-python.sh        (prints the interpreter's path)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
for candidate in /usr/bin/python3.13 /usr/bin/python3.12; do
	if [ -x "$candidate" ] && "$candidate" -c 'import ensurepip, venv' >/dev/null 2>&1; then
		echo "$candidate"
		exit 0
	fi
done

RECIPE=1 # bump when the way the tree is made changes
tree="$root/.cache/controller-python"
python="$tree/usr/bin/python3.13"
stamp="$tree/.pool-controller-python"

die() {
	echo "controller-python: $*" >&2
	exit 1
}

if [ "$(cat "$stamp" 2>/dev/null || true)" = "$RECIPE" ] && "$python" -c 'import ssl, venv' >/dev/null 2>&1; then
	echo "$python"
	exit 0
fi

command -v mmdebstrap >/dev/null || die "mmdebstrap missing: apt-get install mmdebstrap (scripts/bootstrap.sh does)"
command -v patchelf >/dev/null || die "patchelf missing: apt-get install patchelf (scripts/bootstrap.sh does)"
[ "$(id -u)" -eq 0 ] || die "unpacking Debian 13's python3.13 needs root (mmdebstrap --mode=root): run as root"
# the Debian mirror the host's apt sources name, as for the lab's images
mirror="$(cd "$root/molecule/lab" && /usr/bin/python3 -c 'import pool_lab; print(pool_lab.host_mirrors()[0])')"

echo "controller-python: unpacking Debian 13's python3.13 from $mirror into $tree (once)" >&2
rm -rf "$tree" "$tree.new"
mkdir -p "$(dirname "$tree")"
log="$(mktemp)"
if ! mmdebstrap --mode=root --variant=essential --include=python3.13-venv \
	trixie "$tree.new" "$mirror" >"$log" 2>&1; then
	tail -n 20 "$log" >&2
	rm -f "$log"
	rm -rf "$tree.new"
	die "mmdebstrap of trixie failed (see above): check access to $mirror"
fi
rm -f "$log"
libdir="$tree/usr/lib/x86_64-linux-gnu"
# The paths are the final tree's: it is renamed into place below.
patchelf --set-interpreter "$libdir/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$libdir" \
	"$tree.new/usr/bin/python3.13" || die "patchelf failed on $tree.new/usr/bin/python3.13"
mv "$tree.new" "$tree"
"$python" -c 'import ssl, sqlite3, ctypes, lzma, venv' ||
	die "$python does not run on this host"
echo "$RECIPE" >"$stamp"
echo "$python"
