#!/usr/bin/env bash
# `make bench`: a lab of its own, site.yml rolled out onto it, the benchmarks, teardown.
set -euo pipefail
cd "$(dirname "$0")/.."
export POOL_LAB_NAME="${POOL_BENCH_LAB:-bench}"
inventory=.cache/bench/hosts.yml
mkdir -p .cache/bench
trap 'python3 molecule/lab/pool_lab.py down >/dev/null 2>&1 || true' EXIT
python3 molecule/lab/pool_lab.py up --inventory "$inventory"
ansible-playbook -i "$inventory" playbooks/site.yml
python3 scripts/bench.py "$@"
