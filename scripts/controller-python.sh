#!/usr/bin/env bash
# Prints the path of the Python the controller venvs are made from: ansible-core 2.20 and later
# need Python 3.12 or newer, and Debian 12, the controller this project supports, ships 3.11.
#
# Taken, in this order: $CONTROLLER_PYTHON; the host's python3.13, python3.12 or python3 when it
# is 3.12 or newer (a Debian 13 controller); else Debian 13's python3.13, unpacked from Debian's
# archive into .cache/controller-python with mmdebstrap (as the lab's images are made, from the
# host's mirror) and made to run from there: patchelf points the interpreter at the tree's own
# loader and libraries (DT_RPATH, which also covers the extension modules it loads), so nothing
# on the host changes and no host library is mixed in. About 15 s and 60 MB, once.
#
# Usage: scripts/controller-python.sh        (prints the interpreter's path)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tree="$root/.cache/controller-python"
python="$tree/usr/bin/python3.13"

die() {
	echo "controller-python: $*" >&2
	exit 1
}

usable() {  # $1 runs, is 3.12 or newer, and has venv and ssl
	[ -n "$1" ] && [ -x "$1" ] &&
		"$1" -c 'import sys, ssl, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

for candidate in "${CONTROLLER_PYTHON:-}" /usr/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3; do
	if usable "$candidate"; then
		echo "$candidate"
		exit 0
	fi
done
[ -z "${CONTROLLER_PYTHON:-}" ] || die "CONTROLLER_PYTHON=$CONTROLLER_PYTHON is not a Python 3.12+ with venv and ssl"

if [ -e "$tree/.complete" ] && usable "$python"; then
	echo "$python"
	exit 0
fi

command -v mmdebstrap >/dev/null || die "mmdebstrap not found: apt-get install mmdebstrap"
command -v patchelf >/dev/null || die "patchelf not found: apt-get install patchelf"
mirror="$(cd "$root/molecule/lab" && python3 -c 'import pool_lab; print(pool_lab.host_mirrors()[0])')"

mkdir -p "$root/.cache"
work="$(mktemp -d "$root/.cache/.controller-python.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log="$work/mmdebstrap.log"
# Only what python3.13-venv pulls in (the interpreter, its standard library, the pip wheel).
if ! mmdebstrap --variant=essential --format=directory --include=python3.13-venv \
	--aptopt='APT::Install-Recommends "false"' trixie "$work/root" "deb $mirror trixie main" >"$log" 2>&1; then
	tail -n 20 "$log" >&2
	die "mmdebstrap of Debian 13's python3.13 from $mirror failed (see above)"
fi
lib="$tree/usr/lib/x86_64-linux-gnu"
patchelf --set-interpreter "$tree/usr/lib64/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$lib" \
	"$work/root/usr/bin/python3.13"
rm -rf "$tree"
mv "$work/root" "$tree"
usable "$python" || die "$python does not run after unpacking (see $tree)"
touch "$tree/.complete"
echo "$python"
