#!/usr/bin/env bash
# Lab test of the pool.ops.kmod role and module with the poolfixture module
# (tests/fixtures/kmod-poolfixture; same DKMS contract as kmod/): the role's node-local
# DKMS mode, and (--mok) the Secure Boot path of a package built on the controller.
#   ./runme.sh INVENTORY            e.g. after
#   POOL_LAB_NAME=akmod python3 molecule/lab/pool_lab.py up --count 1 --inventory /tmp/akmod-inv.yml
# Steps: fresh converge; idempotent re-run (changed=false, nothing rebuilt);
# check mode; changed source -> rebuild + reload; new parameters -> reload;
# absent; absent again (changed=false). Prints the time of each step.
#   ./runme.sh --mok [--limit HOSTS] INVENTORY   Secure Boot path (mok.yml) on lab nodes booted
#   under UEFI: the shared lab's node1 and node3 (molecule/secureboot, in `./run test`), or
#   POOL_LAB_NAME=uefi POOL_LAB_FIRMWARE=uefi python3 molecule/lab/pool_lab.py up --count 1 --inventory /tmp/uefi-hosts.yml
# Steps: clean slate (no pending MOK request); import (reboot_required); again (no second
# import, changed=false); the MOK password never appears in the output; cleanup.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../../.." && pwd)"
mode=kmod
limit=all
while [ $# -gt 1 ]; do
	case "$1" in
	--mok) mode=mok ;;
	--limit)
		limit="$2"
		shift
		;;
	*) break ;;
	esac
	shift
done
inv="${1:?usage: runme.sh [--mok] [--limit HOSTS] INVENTORY}"
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
	ansible-playbook -i "$inv" --limit "$limit" "$here/kmod.yml" -e "kmod_src=$work/src" "$@"
	echo "=== $name: $((SECONDS - t0)) s"
}

if [ "$mode" = mok ]; then
	# A throw-away password, only for this test's pending request (revoked at the end).
	pw="pool-mok-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
	out="$work/out"
	mok() {
		local name="$1"
		shift
		local t0=$SECONDS
		echo "=== $name"
		ansible-playbook -vvv -i "$inv" --limit "$limit" "$here/mok.yml" -e "kmod_src=$work/src" -e "kmod_mok_password=$pw" "$@" \
			2>&1 | tee "$out"
		local rc=${PIPESTATUS[0]}
		if grep -qF -- "$pw" "$out"; then
			echo "FAIL: $name: the MOK password appears in the output (no_log)"
			exit 1
		fi
		[ "$rc" = 0 ] || exit "$rc"
		# Where -vvv prints the module's invocation (ansible-core 2.20 and older; 2.21 prints
		# none), the password must be there, masked.
		if grep -qF '"invocation"' "$out" &&
			! grep -qF '"mok_password": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"' "$out"; then
			echo "FAIL: $name: the module invocation does not show mok_password masked"
			exit 1
		fi
		echo "=== $name: $((SECONDS - t0)) s"
	}
	cleanup() {
		# Drop the pending request (mokutil --revoke-import asks no password) and check it is gone.
		# shellcheck disable=SC2016 # expanded by the node's shell, not here
		ansible "$limit" -i "$inv" -b -m ansible.builtin.shell -a \
			'mokutil --revoke-import 2>&1 || true; test -z "$(mokutil --list-new 2>/dev/null)"'
	}
	step "clean slate" -e kmod_state=absent
	cleanup
	mok "import" -e kmod_mok_step=first
	mok "again: idempotent" -e kmod_mok_step=again
	cleanup
	step "absent" -e kmod_state=absent
	echo "kmod MOK lab test: all steps passed"
	exit 0
fi

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
