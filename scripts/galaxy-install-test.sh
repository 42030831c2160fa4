#!/usr/bin/env bash
# Issue 5 point 7: the collection installs like any other and its site.yml
# runs from the installed copy.
#
#   scripts/galaxy-install-test.sh                  build, install, syntax-check pool.ops.site
#   scripts/galaxy-install-test.sh -i INVENTORY [ansible-playbook args...]
#                                                   ... then run pool.ops.site for real
#   scripts/galaxy-install-test.sh --into DIR       build, install into DIR (kept), check,
#                                                   syntax-check: scripts/molecule-all.sh
#                                                   converges the lab from there
#
# Builds the collection with `ansible-galaxy collection build` into a temporary
# folder, installs the tarball with `ansible-galaxy collection install` into a
# temporary collections path, checks the installed tree (roles, modules, the
# kmod/ and tools/ sources the roles deploy; no caches or build output), and
# runs `ansible-playbook pool.ops.site` with ANSIBLE_COLLECTIONS_PATH pointing
# only at that path, so nothing from the working tree is used. Cleans up.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
inventory=""
into=""
if [ "${1:-}" = "--into" ]; then
	[ -n "${2:-}" ] || { echo "galaxy-install-test: --into needs a folder" >&2; exit 2; }
	into="$(realpath -m "$2")"
	shift 2
fi
if [ "${1:-}" = "-i" ] || [ "${1:-}" = "--inventory" ]; then
	[ -n "${2:-}" ] || { echo "galaxy-install-test: $1 needs an inventory path" >&2; exit 2; }
	inventory="$(realpath "$2")"
	shift 2
fi

for tool in ansible-galaxy ansible-playbook; do
	command -v "$tool" >/dev/null ||
		{ echo "galaxy-install-test: $tool not found: run scripts/bootstrap.sh (make bootstrap) first" >&2; exit 1; }
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pool-galaxy.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

ansible-galaxy collection build --output-path "$tmp/build" "$root" >/dev/null
tarball="$(ls "$tmp"/build/pool-ops-*.tar.gz)"
echo "galaxy-install-test: built $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB)"

collections="${into:-$tmp/collections}"
[ -z "$into" ] || rm -rf "$into"
export ANSIBLE_COLLECTIONS_PATH="$collections"
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
ansible-galaxy collection install --offline --force -p "$collections" "$tarball" >/dev/null
installed="$collections/ansible_collections/pool/ops"
echo "galaxy-install-test: installed into $installed"

missing=()
for f in MANIFEST.json FILES.json meta/runtime.yml playbooks/site.yml \
	roles/kmod/tasks/main.yml roles/node/tasks/main.yml roles/node/meta/argument_specs.yml \
	plugins/modules/node_info.py plugins/modules/identity.py plugins/modules/kmod.py \
	plugins/module_utils/poolctl.py kmod/dkms.conf kmod/Kbuild kmod/uapi/pool.h \
	tools/pyproject.toml tools/systemd/poold.service tools/pooltools/poolctl/cli.py; do
	[ -e "$installed/$f" ] || missing+=("$f")
done
[ "${#missing[@]}" -eq 0 ] ||
	{ echo "galaxy-install-test: missing from the installed collection: ${missing[*]}" >&2; exit 1; }
junk="$(cd "$installed" && find . \( -name .venv -o -name .cache -o -name __pycache__ -o -name '*.pyc' \
	-o -name '*.ko' -o -name '*.o' -o -name '*.egg-info' -o -path ./tools/build -o -name .git \) -print | head -5)"
[ -z "$junk" ] || { echo "galaxy-install-test: build output or caches in the collection: $junk" >&2; exit 1; }
dev_only=()
for f in molecule scripts kmod/tests inventories/lab tests/unit/tools tests/unit/lab Makefile run requirements.txt; do
	[ ! -e "$installed/$f" ] || dev_only+=("$f")
done
[ "${#dev_only[@]}" -eq 0 ] ||
	{ echo "galaxy-install-test: development-only paths in the collection: ${dev_only[*]}" >&2; exit 1; }

cd "$tmp"
if [ -z "$inventory" ]; then
	printf 'all:\n  children:\n    pool_nodes:\n      hosts:\n        node1:\n        node2:\n' >"$tmp/hosts.yml"
	ansible-playbook -i "$tmp/hosts.yml" pool.ops.site --syntax-check "$@" >/dev/null
	echo "galaxy-install-test: pool.ops.site from the installed collection passes --syntax-check"
else
	start=$SECONDS
	ansible-playbook -i "$inventory" pool.ops.site "$@"
	echo "galaxy-install-test: pool.ops.site from the installed collection ran in $((SECONDS - start)) s"
fi
