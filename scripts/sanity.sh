#!/usr/bin/env bash
# ansible-test sanity on the collection as its built tarball installs it, on every ansible-core
# release the collection claims, then the galaxy install test on each.
#
# ansible-test wants the collection at .../ansible_collections/pool/ops and tests every file it
# finds there, so this builds the tarball, installs it into a temporary tree, runs every sanity
# test there (no ignore file) and removes it.
#
# The releases: the controller's pin (requirements.txt) and the newest of the minor release
# before it (OLDER_CORE); meta/runtime.yml's requires_ansible must name the oldest of them.
# Both need Python 3.12 or newer: the venvs come from the controller's Python
# (scripts/controller-python.sh, Debian 13's python3.13 on a Debian 12 host).
#
# No docker here: the tests run --local from a venv per release (.cache/sanity-venv-<release>),
# and ansible-test makes one venv per sanity test under ~/.ansible/test/venv (HOME is
# .cache/sanity-home for it, so that is in the checkout's cache) with its pinned
# requirements from PyPI. To seed pip in those venvs ansible-test downloads get-pip.py from
# ci-files.testing.ansible.com; machines that reach only PyPI cannot, so when that file is not
# cached this script caches a stand-in, scripts/install-pip.py: the interpreter's own pip, then the
# requested pip version from PyPI. The project venv stays untouched.
#
# Usage: scripts/sanity.sh [extra ansible-test sanity arguments]
#   e.g. scripts/sanity.sh --test validate-modules
# Environment: SANITY_PYTHON (an interpreter; default: the controller's), SANITY_CORES (releases, default: pinned and OLDER_CORE).
set -euo pipefail

OLDER_CORE=2.20.10

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${SANITY_PYTHON:-$("$root/scripts/controller-python.sh")}"
python_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
pinned="$(sed -n 's/^ansible-core==//p' "$root/requirements.txt")"
[ -n "$pinned" ] || { echo "sanity: no ansible-core pin in requirements.txt" >&2; exit 1; }
read -r -a cores <<<"${SANITY_CORES:-$pinned $OLDER_CORE}"

oldest="$(printf '%s\n' "${cores[@]}" | sort -V | head -1)"
claimed="$(sed -n 's/^requires_ansible: *">=\([0-9.]*\)"/\1/p' "$root/meta/runtime.yml")"
if [ -z "${SANITY_CORES:-}" ] && [ "${claimed%.*}" != "${oldest%.*}" ]; then
	echo "sanity: meta/runtime.yml requires_ansible >=$claimed, but the oldest release tested is $oldest" >&2
	exit 1
fi

# The shell script test needs the shellcheck binary; without it the test is skipped.
command -v shellcheck >/dev/null ||
	{ echo "sanity: shellcheck not found: apt-get install shellcheck" >&2; exit 1; }

# ansible-test keeps its venvs and downloads in ~/.ansible/test: under this home, in the
# checkout's cache, rather than the user's.
test_home="$root/.cache/sanity-home"
mkdir -p "$test_home"

# A venv with ansible-core $1 at .cache/sanity-venv-$1; prints its path.
core_venv() {
	local venv="$root/.cache/sanity-venv-$1"
	if [ "$("$venv/bin/ansible-test" --version 2>/dev/null | awk '{print $NF}')" != "$1" ]; then
		"$root/scripts/make-venv.sh" "$venv" "$python" >&2 ||
			{ echo "sanity: cannot create $venv" >&2; return 1; }
		"$venv/bin/python" -m pip install -q --disable-pip-version-check "ansible-core==$1" >&2 ||
			{ echo "sanity: pip install ansible-core==$1 failed: check access to PyPI" >&2; return 1; }
	fi
	echo "$venv"
}

# get-pip.py for the pip version this ansible-test wants (see the header).
cache_get_pip() {
	local venv="$1" pip_version get_pip
	pip_version="$("$venv/bin/python" - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PY
)"
	get_pip="$test_home/.ansible/test/cache/get_pip_${pip_version//./_}.py"
	[ ! -s "$get_pip" ] || return 0
	mkdir -p "$(dirname "$get_pip")"
	if curl -fsS -m 10 -o "$get_pip.download" \
		"https://ci-files.testing.ansible.com/ansible-test/get-pip-$pip_version.py" 2>/dev/null; then
		mv "$get_pip.download" "$get_pip"
		return 0
	fi
	rm -f "$get_pip.download"
	cp "$root/scripts/install-pip.py" "$get_pip"
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pool-sanity.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

status=0
for core in "${cores[@]}"; do
	echo "==== sanity: ansible-core $core ===="
	venv="$(core_venv "$core")"
	cache_get_pip "$venv"
	dest="$tmp/$core/ansible_collections/pool/ops"
	# The collection exactly as users get it: built with this ansible-galaxy (galaxy.yml's
	# build_ignore leaves the development-only paths out) and installed from the tarball.
	"$venv/bin/ansible-galaxy" collection build --output-path "$tmp/$core/build" "$root" >/dev/null
	ANSIBLE_COLLECTIONS_PATH="$tmp/$core" "$venv/bin/ansible-galaxy" collection install --offline \
		-p "$tmp/$core" "$tmp/$core"/build/pool-ops-*.tar.gz >/dev/null
	if [ -e "$dest/tests/sanity" ]; then
		echo "sanity: the collection ships tests/sanity (ignore files): remove them, fix the findings" >&2
		exit 1
	fi
	# ansible-test lists files with git when it finds a repository; give it one holding
	# exactly the installed files.
	(cd "$dest" && git init -q . && git add -A . &&
		git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity)
	(cd "$dest" && HOME="$test_home" "$venv/bin/ansible-test" sanity --local --requirements \
		--python "$python_version" --python-interpreter "$python" --color no "$@") || status=1
	PATH="$venv/bin:$PATH" "$root/scripts/galaxy-install-test.sh" || status=1
done
exit "$status"
