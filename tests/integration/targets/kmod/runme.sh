#!/usr/bin/env bash
# Lab test of the pool.ops.kmod role and module with the poolfixture module
# (tests/fixtures/kmod-poolfixture; same DKMS contract as kmod/).
#   ./runme.sh INVENTORY            e.g. after
#   POOL_LAB_NAME=akmod python3 molecule/lab/pool_lab.py up --count 1 --inventory /tmp/akmod-inv.yml
# Steps: fresh converge; idempotent re-run (changed=false, nothing rebuilt);
# check mode; changed source -> rebuild + reload; new parameters -> reload;
# absent; absent again (changed=false). Prints the time of each step.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../../.." && pwd)"
inv="${1:?usage: runme.sh INVENTORY}"
export ANSIBLE_COLLECTIONS_PATH="$repo/.cache/collections"
export ANSIBLE_HOST_KEY_CHECKING=False
"$repo/scripts/link-collection.sh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$repo/tests/fixtures/kmod-poolfixture" "$work/src"

step() {
	local name="$1"
	shift
	local t0=$SECONDS
	echo "=== $name"
	ansible-playbook -i "$inv" "$here/kmod.yml" -e "kmod_src=$work/src" "$@"
	echo "=== $name: $((SECONDS - t0)) s"
}

step "clean slate" -e kmod_state=absent
step "fresh converge" -e kmod_state=loaded -e kmod_expect_changed=true -e kmod_expect_built=true \
	-e '{"kmod_params": {"port": 9253}}'
step "idempotent re-run" -e kmod_state=loaded -e kmod_expect_changed=false -e kmod_expect_built=false \
	-e '{"kmod_params": {"port": 9253}}'
step "check mode with a new parameter" --check --diff -e kmod_state=loaded -e kmod_expect_changed=true \
	-e kmod_expect_built=false -e kmod_expect_reload=true -e '{"kmod_params": {"port": 9300}}'
echo "/* source change $(date +%s) */" >>"$work/src/poolfixture.c"
step "changed source: rebuild and reload" -e kmod_state=loaded -e kmod_expect_changed=true \
	-e kmod_expect_built=true -e kmod_expect_reload=true -e '{"kmod_params": {"port": 9253}}'
step "new parameter: reload only" --diff -e kmod_state=loaded -e kmod_expect_changed=true \
	-e kmod_expect_built=false -e kmod_expect_reload=true -e '{"kmod_params": {"port": 9300}}'
step "absent" -e kmod_state=absent -e kmod_expect_changed=true -e kmod_expect_built=false
step "absent again" -e kmod_state=absent -e kmod_expect_changed=false -e kmod_expect_built=false
echo "kmod lab test: all steps passed"
