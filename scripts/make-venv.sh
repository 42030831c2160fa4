#!/usr/bin/env bash
# Makes a venv with pip from the controller's Python (scripts/controller-python.sh).
#
# The venv gets pip from the wheel of that interpreter's own tree (scripts/install-pip.py says why
# not through ensurepip).
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
"$venv/bin/python" "$(dirname "$0")/install-pip.py" || die "installing pip into $venv failed"
