#!/usr/bin/env bash
# Makes a venv with pip from the controller's Python (scripts/controller-python.sh).
#
# The venv gets pip from the wheel that interpreter's own tree ships (Debian's python3-pip-whl,
# under sys.base_prefix/share/python-wheels), not through ensurepip: Debian's ensurepip looks in
# the host's /usr/share/python-wheels, whose pip (Debian 12's 23.0) does not run on Python 3.13.
#
# Usage: scripts/make-venv.sh VENV [PYTHON]
set -euo pipefail

venv="${1:?usage: make-venv.sh VENV [PYTHON]}"
python="${2:-$("$(dirname "$0")/controller-python.sh")}"

die() {
	echo "make-venv: $*" >&2
	exit 1
}

rm -rf "$venv"
"$python" -m venv --without-pip "$venv" || die "$python cannot make a venv at $venv"
wheel="$("$venv/bin/python" - <<'PY'
import glob, sys
found = sorted(glob.glob(f"{sys.base_prefix}/share/python-wheels/pip-*.whl"))
print(found[-1] if found else "")
PY
)"
if [ -n "$wheel" ]; then
	"$venv/bin/python" "$wheel/pip" install -q --disable-pip-version-check --no-index "$wheel" ||
		die "installing pip from $wheel into $venv failed"
else
	"$venv/bin/python" -m ensurepip -q --default-pip || die "$python has no pip wheel and no ensurepip"
fi
