#!/usr/bin/env bash
# Keep this repository reachable as the collection pool.ops under
# .cache/collections/ansible_collections/pool/ops (ANSIBLE_COLLECTIONS_PATH
# points at .cache/collections). A symlink is enough for ansible-playbook,
# ansible-lint and molecule; scripts/sanity.sh makes its own real tree.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.cache/collections/ansible_collections/pool"
link="$dir/ops"

mkdir -p "$dir"
if [ -L "$link" ] && [ "$(readlink "$link")" = "$root" ]; then
	exit 0
fi
if [ -e "$link" ] && [ ! -L "$link" ]; then
	echo "link-collection: $link exists and is not a symlink: remove it" >&2
	exit 1
fi
ln -sfn "$root" "$link.tmp"
mv -T "$link.tmp" "$link"
