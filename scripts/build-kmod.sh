#!/usr/bin/env bash
# Builds kmod/ (pool.ko) with W=1 and sparse (C=2) against every installed
# Debian bookworm kernel header set (6.1 and 6.12 flavours, *-amd64), each in
# a scratch copy so the working tree stays clean. Fails on any build error or
# on any compiler or sparse warning from our own files. One line per kernel.
#
#   scripts/build-kmod.sh               this host's headers
#   scripts/build-kmod.sh --root DIR    the headers in the build root DIR (a Debian tree such as
#                                       the lab's trixie build root), built in it through chroot
#                                       (root only) with its own compiler; sparse (C=2) when the
#                                       build root has it
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$here/kmod"
root=""
if [ "${1:-}" = --root ]; then
	root="$(cd "${2:?build-kmod: --root needs a folder}" && pwd)"
	[ -f "$root/etc/debian_version" ] || { echo "build-kmod: $root holds no Debian tree" >&2; exit 1; }
	[ "$(id -u)" = 0 ] || { echo "build-kmod: --root needs root (chroot)" >&2; exit 1; }
fi
shopt -s nullglob
if [ -n "$root" ]; then
	kdirs=("$root"/usr/src/linux-headers-*-amd64)
	checker=()
	[ -x "$root/usr/bin/sparse" ] && checker=(C=2)
	[ "${#kdirs[@]}" -gt 0 ] || { echo "build-kmod: no kernel headers in $root/usr/src" >&2; exit 1; }
else
	kdirs=(/usr/src/linux-headers-6.1.*-amd64 /usr/src/linux-headers-6.12.*-amd64)
	checker=(C=2)
	command -v sparse >/dev/null || { echo "build-kmod: sparse not found: apt-get install sparse (scripts/bootstrap.sh does)" >&2; exit 1; }
	if [ "${#kdirs[@]}" -eq 0 ]; then
		echo "build-kmod: no bookworm kernel headers in /usr/src: install linux-headers-amd64 (6.1) and the 6.12 backport headers" >&2
		exit 1
	fi
fi

# The scratch trees live in the build root when there is one, so that its make sees them.
if [ -n "$root" ]; then work="$(mktemp -d "$root/tmp/build-kmod.XXXXXX")"; else work="$(mktemp -d)"; fi
trap 'rm -rf "$work"' EXIT
in_root() { if [ -n "$root" ]; then chroot "$root" "$@"; else "$@"; fi; }
status=0
for kdir in "${kdirs[@]}"; do
	kdir="${kdir#"$root"}"  # as make sees it
	kver="${kdir#/usr/src/linux-headers-}"
	tree="${work#"$root"}/$kver"  # likewise
	mkdir -p "$root$tree"
	cp -a "$src/." "$root$tree/"
	rm -f "$root$tree"/*.o "$root$tree"/*.ko "$root$tree"/*.mod "$root$tree"/*.mod.c "$root$tree"/.*.cmd
	log="$work/$kver.log"
	if ! in_root make -C "$kdir" M="$tree" W=1 "${checker[@]}" modules >"$log" 2>&1; then
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
	ver="$(/sbin/modinfo -F version "$root$tree/pool.ko" 2>/dev/null || modinfo -F version "$root$tree/pool.ko")"
	size="$(stat -c %s "$root$tree/pool.ko")"
	cc="$(in_root sh -c 'gcc -dumpfullversion' 2>/dev/null || echo '?')"
	echo "ok    $kver  pool.ko $ver, $size bytes, W=1${checker[*]:+ and sparse} clean (gcc $cc${root:+, in $root})"
done
exit "$status"
