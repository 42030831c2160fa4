#!/usr/bin/env bash
# Make a fresh Debian 12 machine ready for `make demo` and `make test`:
# host packages via apt (update only when something is missing), then the
# project venv at $VENV with the pinned controller packages, on the controller's Python
# (scripts/controller-python.sh: Python 3.12 or newer, which ansible-core 2.21 needs).
# Idempotent and fast when everything is already in place.
# Any failure ends with one line on stderr naming what is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VENV:-$PWD/.venv}"

die() {
	echo "bootstrap: $*" >&2
	exit 1
}

# Host packages: the lab (qemu, mmdebstrap, e2fsprogs, openssh-client),
# the controller's Python (mmdebstrap, patchelf), kmod builds against bookworm's 6.1 and
# 6.12 headers (checked by sparse), and the usual tools.
PACKAGES=(
	qemu-system-x86 qemu-utils mmdebstrap e2fsprogs openssh-client
	python3 python3-venv python3-pip
	build-essential dkms linux-headers-amd64 linux-headers-6.12-amd64 sparse
	git rsync make procps ca-certificates debian-archive-keyring curl shellcheck ovmf
	libssl-dev zlib1g-dev groff-base patchelf
)

missing=()
for pkg in "${PACKAGES[@]}"; do
	status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
	[ "$status" = installed ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
	command -v apt-get >/dev/null || die "apt-get not found: this script needs Debian 12; install by hand: ${missing[*]}"
	SUDO=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || die "not root and no sudo: install as root: ${missing[*]}"
		SUDO=(sudo)
	fi
	echo "bootstrap: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	log="$(mktemp)"
	if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		rm -f "$log"
		die "apt-get update failed (see above): check /etc/apt/sources.list*; needed: ${missing[*]}"
	fi
	if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		rm -f "$log"
		die "apt-get install failed (see above) for: ${missing[*]}"
	fi
	rm -f "$log"
fi

PYTHON="$(scripts/controller-python.sh)" || die "no Python 3.12 or newer for the controller (see above)"

# The venv: rebuilt when broken or made from another interpreter, reinstalled when
# requirements.txt changes.
req_sum="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$("$VENV/bin/python" -c 'import sys; print(sys._base_executable)' 2>/dev/null || true)" != "$PYTHON" ]; then
	scripts/make-venv.sh "$VENV" "$PYTHON" || die "cannot create the venv at $VENV (see above)"
	rm -f "$VENV/.requirements.sha256"
fi
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)" != "$req_sum" ]; then
	echo "bootstrap: installing requirements.txt into $VENV"
	"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
	log="$(mktemp)"
	if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		rm -f "$log"
		die "pip install -r requirements.txt failed (see above): check network access to PyPI"
	fi
	rm -f "$log"
	echo "$req_sum" >"$VENV/.requirements.sha256"
fi

for tool in ansible-playbook molecule pytest ruff ansible-lint; do
	[ -x "$VENV/bin/$tool" ] || die "$tool missing from $VENV: remove $VENV and rerun"
done
echo "bootstrap: ready ($VENV)"
