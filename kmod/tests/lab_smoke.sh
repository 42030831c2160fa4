#!/usr/bin/env bash
# Builds pool.ko in two lab VMs and runs ioctl_smoke.py between them over the
# private link: identities, trust, listen on node2, connect from node1 (IPv4
# and IPv6), echo traffic both ways, /proc/pool, journal chain, rmmod.
#
#   POOL_LAB_NAME=kcore kmod/tests/lab_smoke.sh [build|load|run|unload|all]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
lab="${POOL_LAB_NAME:-lab}"
rd="${XDG_CACHE_HOME:-$HOME/.cache}/pool-lab/run/$lab"
ports=($(python3 "$here/molecule/lab/pool_lab.py" status --json |
	python3 -c 'import json,sys; print(" ".join(str(n["ssh_port"]) for n in json.load(sys.stdin)["nodes"]))'))
ssh_opts=(-i "$rd/id_ed25519" -o UserKnownHostsFile="$rd/known_hosts" -o BatchMode=yes -o ConnectTimeout=20)

on() { local n="$1"; shift; ssh "${ssh_opts[@]}" -p "${ports[$((n - 1))]}" root@127.0.0.1 "$@"; }
put() {
	local n="$1"
	tar -C "$here" --exclude='*.o' --exclude='*.ko' --exclude='.*.cmd' --exclude='*.mod*' -cf - kmod |
		on "$n" 'rm -rf /root/kmod && tar -C /root -xf -'
}

S1=1111111111111111111111111111111111111111111111111111111111111111
S2=2222222222222222222222222222222222222222222222222222222222222222
T=/root/kmod/tests/ioctl_smoke.py

# The VMs run under TCG: building there is slow, so build here against the
# headers of the VMs' kernel (installed on this host) and ship pool.ko.
build() {
	local kver tmp
	kver="$(on 1 uname -r)"
	tmp="$(mktemp -d)"
	cp -a "$here/kmod/." "$tmp/"
	make -C "/usr/src/linux-headers-$kver" M="$tmp" W=1 modules 2>&1 | grep -E "warning|error" || true
	for n in 1 2; do
		put "$n"
		on "$n" 'cat > /root/kmod/pool.ko' <"$tmp/pool.ko"
	done
	rm -rf "$tmp"
}

load() {
	for n in 1 2; do
		on "$n" "rmmod pool 2>/dev/null; d=/lib/modules/\$(uname -r)/updates; mkdir -p \$d && cp /root/kmod/pool.ko \$d/ && depmod -a && modprobe pool ${POOL_PARAMS:-} && dmesg | grep -E 'pool' | tail -2 && ls -l /dev/pool && ls /proc/pool"
	done
}

run() {
	P1=$(on 1 "python3 $T ident $S1")
	P2=$(on 2 "python3 $T ident $S2")
	echo "node1 $P1"; echo "node2 $P2"
	on 1 "python3 $T trust $P2 node2"
	on 2 "python3 $T trust $P1 node1"
	on 2 "python3 $T listen"
	on 1 "python3 $T listen"
	on 2 "timeout 300 python3 $T serve --count 2" > /tmp/pool-smoke-serve2.log 2>&1 &
	srv=$!
	sleep 2
	on 1 "python3 $T client 10.253.0.12 $P2 ${CLIENT_ARGS:-}"
	on 1 "python3 $T client fd53:253::12 $P2 --messages 10"
	wait "$srv" || { cat /tmp/pool-smoke-serve2.log; return 1; }
	cat /tmp/pool-smoke-serve2.log
	# the other direction: node2 connects to node1
	on 1 "timeout 120 python3 $T serve --count 1" > /tmp/pool-smoke-serve1.log 2>&1 &
	srv=$!
	sleep 2
	on 2 "python3 $T client 10.253.0.11 $P1 --messages 10"
	wait "$srv" || { cat /tmp/pool-smoke-serve1.log; return 1; }
	cat /tmp/pool-smoke-serve1.log
	# pipelined traffic across rekeys (load with POOL_PARAMS="rekey_seconds=10" for >= 5)
	on 2 "timeout 200 python3 $T serve --count 1" > /tmp/pool-smoke-serve2.log 2>&1 &
	srv=$!
	sleep 2
	on 1 "python3 $T stream 10.253.0.12 $P2 --seconds ${STREAM_SECONDS:-30}"
	wait "$srv"; cat /tmp/pool-smoke-serve2.log
	# backpressure: a peer that never reads
	on 1 "python3 $T flood 10.253.0.12 $P2 --seconds 20"
	# a stranger: node1 under a key node2 does not trust
	on 1 "python3 $T ident 3333333333333333333333333333333333333333333333333333333333333333 >/dev/null;
	      python3 $T hold 10.253.0.12 $P2 --seconds 1 2>&1 | tail -1; python3 $T ident $S1 >/dev/null"
	on 1 "python3 $T config"
	for n in 1 2; do
		echo "== node$n"
		on "$n" "cat /proc/pool/status /proc/pool/sessions /proc/pool/telemetry /proc/pool/peers; tail -8 /proc/pool/journal; python3 $T journal; python3 $T stats | grep -v ' 0$'"
	done
}

unload() {
	for n in 1 2; do
		on "$n" "rmmod pool && echo node$n unloaded; dmesg | grep -iE 'warn|oops|bug|pool' | tail -5"
	done
}

case "${1:-all}" in
build) build ;;
load) load ;;
run) run ;;
unload) unload ;;
all) build; load; run; unload ;;
*) echo "usage: $0 [build|load|run|unload|all]" >&2; exit 2 ;;
esac
