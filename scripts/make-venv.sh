#!/usr/bin/env bash
# Makes a venv with pip from a Python (scripts/controller-python.sh prints the one to use):
#   scripts/make-venv.sh PYTHON DIR
# Debian's ensurepip installs the pip wheel of /usr/share/python-wheels, the host's: with the
# Debian 13 interpreter unpacked on a Debian 12 host that is Debian 12's pip, which does not run
# on Python 3.13. Then the venv is made without pip and gets the wheel of the interpreter's own
# tree.
set -euo pipefail

python="$1"
dir="$2"
die() {
	echo "make-venv: $*" >&2
	exit 1
}
rm -rf "$dir"
if "$python" -m venv "$dir" >/dev/null 2>&1 && "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
	exit 0
fi
rm -rf "$dir"
"$python" -m venv --without-pip "$dir" || die "$python -m venv $dir failed"
prefix="$("$python" -c 'import sys; print(sys.base_prefix)')"
wheel="$(find "$prefix/share/python-wheels" -name 'pip-*.whl' 2>/dev/null | sort -V | tail -n 1)"
[ -n "$wheel" ] || die "no pip wheel in $prefix/share/python-wheels for $dir"
"$dir/bin/python" "$wheel/pip" install -q --disable-pip-version-check "$wheel" ||
	die "installing pip into $dir from $wheel failed"
