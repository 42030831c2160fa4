#!/usr/bin/env bash
# `make bench`: the rollout benchmark (fresh nodes: the build host's packages against node-local
# DKMS, builds per rollout, the no-op re-run), then the benchmarks on the rolled-out lab
# (transport, configuration, vault, relay).
# The lab is POOL_BENCH_LAB (default "bench"). If it is already up (for example a
# converged molecule lab: POOL_BENCH_LAB=molecule), it is used as it is and left running, and
# the rollout benchmark, which needs fresh nodes, is left out; otherwise the rollout benchmark
# boots it (twice), and it is torn down after.
set -euo pipefail
cd "$(dirname "$0")/.."
export POOL_LAB_NAME="${POOL_BENCH_LAB:-bench}"
inventory=.cache/bench/hosts.yml
mkdir -p .cache/bench
if python3 molecule/lab/pool_lab.py status >/dev/null 2>&1; then
	echo "bench: lab '$POOL_LAB_NAME' is up: measuring it as it is (no rollout benchmark: it needs fresh nodes)"
	python3 molecule/lab/pool_lab.py inventory --inventory "$inventory" >/dev/null
else
	trap 'python3 molecule/lab/pool_lab.py down >/dev/null 2>&1 || true' EXIT
	python3 scripts/bench_rollout.py --inventory "$inventory"
fi
python3 scripts/bench.py "$@"
python3 scripts/bench_config.py
python3 scripts/bench_vault.py --inventory "$inventory"
python3 scripts/bench_relay.py
