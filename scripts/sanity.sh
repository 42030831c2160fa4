#!/usr/bin/env bash
# ansible-test sanity on the collection as its built tarball installs it.
#
# ansible-test wants the collection at .../ansible_collections/pool/ops and
# tests every file it finds there, so this builds the tarball, installs it into
# a temporary tree, runs the sanity tests there and removes it.
#
# No docker here: the tests run --local from a venv of their own
# (.cache/sanity-venv, with the ansible-core pinned in requirements.txt), and
# ansible-test makes one venv per sanity test under ~/.ansible/test/venv with
# its pinned requirements from PyPI. To seed pip in those venvs ansible-test
# downloads get-pip.py from ci-files.testing.ansible.com; machines that reach
# only PyPI cannot, so when that file is not cached this script caches a
# stand-in that installs the bundled pip (ensurepip) and then the requested
# pip version from PyPI. The project venv stays untouched.
#
# Usage: scripts/sanity.sh [extra ansible-test sanity arguments]
#   e.g. scripts/sanity.sh --test validate-modules
# Environment: SANITY_PYTHON (default 3.11).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python_version="${SANITY_PYTHON:-3.11}"

venv="${SANITY_VENV:-$root/.cache/sanity-venv}"
core="$(grep -E '^ansible-core==' "$root/requirements.txt" || true)"
[ -n "$core" ] || { echo "sanity: no ansible-core pin in requirements.txt" >&2; exit 1; }
if [ "$("$venv/bin/ansible-test" --version 2>/dev/null | awk '{print $NF}')" != "${core#ansible-core==}" ]; then
	rm -rf "$venv"
	"python$python_version" -m venv "$venv" ||
		{ echo "sanity: cannot create $venv: install python3-venv" >&2; exit 1; }
	"$venv/bin/python" -m pip install -q --disable-pip-version-check "$core" ||
		{ echo "sanity: pip install $core failed: check access to PyPI" >&2; exit 1; }
fi
# The shell script test needs the shellcheck binary; without it the test is skipped.
command -v shellcheck >/dev/null ||
	{ echo "sanity: shellcheck not found: apt-get install shellcheck" >&2; exit 1; }

pip_version="$("$venv/bin/python" - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PY
)"
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -s "$get_pip" ] && ! curl -fsS -m 10 -o "$get_pip.download" \
	"https://ci-files.testing.ansible.com/ansible-test/get-pip-$pip_version.py" 2>/dev/null; then
	rm -f "$get_pip.download"
	mkdir -p "$(dirname "$get_pip")"
	cat >"$get_pip" <<'PY'
"""Stand-in for get-pip.py written by pool.ops scripts/sanity.sh: ensurepip, then pip install ARGS."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + args)
PY
elif [ -s "$get_pip.download" ]; then
	mv "$get_pip.download" "$get_pip"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pool-sanity.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
dest="$tmp/ansible_collections/pool/ops"

# The collection exactly as users get it: built with ansible-galaxy (galaxy.yml's build_ignore
# leaves the development-only paths out) and installed from the tarball. Every test, no
# ignore file.
"$venv/bin/ansible-galaxy" collection build --output-path "$tmp/build" "$root" >/dev/null
ANSIBLE_COLLECTIONS_PATH="$tmp" "$venv/bin/ansible-galaxy" collection install --offline -p "$tmp" "$tmp"/build/pool-ops-*.tar.gz >/dev/null
if [ -e "$dest/tests/sanity" ]; then
	echo "sanity: the collection ships tests/sanity (ignore files): remove them, fix the findings" >&2
	exit 1
fi

cd "$dest"
# ansible-test lists files with git when it finds a repository; give it one
# holding exactly the installed files.
git init -q . && git add -A . && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity

"$venv/bin/ansible-test" sanity --local --requirements --python "$python_version" --color no "$@"
