#!/usr/bin/env bash
# Builds kmod/ (pool.ko) with W=1 and sparse (C=2) against every installed
# Debian bookworm kernel header set (6.1 and 6.12 flavours, *-amd64), each in
# a scratch copy so the working tree stays clean. Fails on any build error or
# on any compiler or sparse warning from our own files. One line per kernel.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$here/kmod"
shopt -s nullglob
kdirs=(/usr/src/linux-headers-6.1.*-amd64 /usr/src/linux-headers-6.12.*-amd64)
command -v sparse >/dev/null || { echo "build-kmod: sparse not found: apt-get install sparse (scripts/bootstrap.sh does)" >&2; exit 1; }
if [ "${#kdirs[@]}" -eq 0 ]; then
	echo "build-kmod: no bookworm kernel headers in /usr/src: install linux-headers-amd64 (6.1) and the 6.12 backport headers" >&2
	exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for kdir in "${kdirs[@]}"; do
	kver="${kdir#/usr/src/linux-headers-}"
	tree="$work/$kver"
	mkdir -p "$tree"
	cp -a "$src/." "$tree/"
	rm -f "$tree"/*.o "$tree"/*.ko "$tree"/*.mod "$tree"/*.mod.c "$tree"/.*.cmd
	log="$work/$kver.log"
	if ! make -C "$kdir" M="$tree" W=1 C=2 modules >"$log" 2>&1; then
		echo "FAIL  $kver  build error:"
		grep -E 'error|Error' "$log" | head -20 | sed 's/^/      /'
		status=1
		continue
	fi
	warnings="$(grep -E "^$tree/[^:]+:[0-9]+:[0-9]+: (warning|error)" "$log" || true)"
	if [ -n "$warnings" ]; then
		n="$(printf '%s\n' "$warnings" | wc -l)"
		echo "FAIL  $kver  $n warning(s):"
		printf '%s\n' "$warnings" | sed "s|$tree/|kmod/|; s/^/      /" | head -20
		status=1
		continue
	fi
	ver="$(/sbin/modinfo -F version "$tree/pool.ko" 2>/dev/null || modinfo -F version "$tree/pool.ko")"
	size="$(stat -c %s "$tree/pool.ko")"
	echo "ok    $kver  pool.ko $ver, $size bytes, W=1 and sparse clean"
done
exit "$status"
