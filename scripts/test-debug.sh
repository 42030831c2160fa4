#!/usr/bin/env bash
# `make test-debug`: pool.ko under the kernel's own checkers. Builds (once, cached) Debian
# 12's kernel with KASAN, lockdep, kmemleak and DEBUG_ATOMIC_SLEEP (scripts/build-debug-kernel.sh),
# boots a lab on it (POOL_LAB_KERNEL=debug, lab "debug"), rolls out playbooks/site.yml, runs the
# transport tests (sessions, rekeys, flow control, the reference peer, the fuzzer, hostile
# handshakes, rmmod with live sessions), then fails on any kernel report: an oops, a warning,
# a KASAN or lockdep report (kernel_log.py) or a kmemleak leak with a pool.ko frame.
# Not part of `make test` (the debug kernel roughly triples the transport tests' time).
set -euo pipefail
cd "$(dirname "$0")/.."
export POOL_LAB_KERNEL=debug POOL_LAB_NAME="${POOL_DEBUG_LAB:-debug}" POOL_TEST_FULL=1
debug_dir="$(scripts/build-debug-kernel.sh)"
# The fleet builder (this controller, site.yml's default package mode) builds pool.ko against
# the debug kernel's headers, which are in no archive: install them here from the build.
release="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["release"])' "$debug_dir/manifest.json")"
if [ ! -e "/lib/modules/$release/build" ]; then
	dpkg -i "$debug_dir"/linux-headers-*.deb >/dev/null
fi
inventory=.cache/debug-lab/hosts.yml
mkdir -p .cache/debug-lab
start=$SECONDS
trap 'python3 molecule/lab/pool_lab.py down >/dev/null 2>&1 || true' EXIT
python3 molecule/lab/pool_lab.py up --inventory "$inventory"
ansible-playbook -i "$inventory" playbooks/site.yml
echo "test-debug: lab up and rolled out in $((SECONDS - start)) s"

# The slab test counts objects per cache, which KASAN's quarantine of freed objects inflates:
# on this kernel kmemleak (below) answers its question instead.
status=0
python3 -m pytest --ansible-inventory "$inventory" --connection ansible -p no:cacheprovider -q -rfE \
	molecule/default/tests/test_transport.py -k "${POOL_DEBUG_TESTS:-not slab}" || status=1

nodes="$(python3 -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1]))
print(" ".join(d["all"]["children"]["pool_nodes"]["hosts"]))' "$inventory")"
read_log="$(python3 molecule/lab/kernel_log.py --read-command)"
on() { python3 molecule/lab/pool_lab.py ssh "$@"; }
for node in $nodes; do
	echo "test-debug: $node runs $(on "$node" uname -r)"
	# kmemleak: two scans (a leak must be seen unreferenced twice), then only pool.ko's leaks count
	on "$node" 'echo scan > /sys/kernel/debug/kmemleak; sleep 6; echo scan > /sys/kernel/debug/kmemleak'
	leaks="$(on "$node" 'grep -c "\[pool\]" /sys/kernel/debug/kmemleak || true')"
	echo "test-debug: $node: kmemleak: $(on "$node" 'grep -c "^unreferenced object" /sys/kernel/debug/kmemleak || true') suspected leak(s), $leaks with a pool.ko frame"
	if [ "$leaks" != 0 ]; then
		on "$node" 'cat /sys/kernel/debug/kmemleak' | head -60
		status=1
	fi
	on "$node" "$read_log" | python3 molecule/lab/kernel_log.py "$node" || status=1
done
echo "test-debug: $([ "$status" = 0 ] && echo passed || echo FAILED) in $((SECONDS - start)) s"
exit "$status"
