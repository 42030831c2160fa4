#!/usr/bin/env bash
# The end of `make demo`: what now runs on each lab node and how to reach it.
set -euo pipefail
cd "$(dirname "$0")/.."
lab() { python3 molecule/lab/pool_lab.py "$@"; }
nodes="$(lab status --json | python3 -c 'import json, sys; print(" ".join(sorted(n["name"] for n in json.load(sys.stdin)["nodes"])))')"
# shellcheck disable=SC2016 # expanded on the node
on_node='echo "$(hostname): $(for u in poold pool-vault pool-relay; do systemctl -q is-active "$u" && printf "%s " "$u"; done)"
poolctl sessions | sed "s/^/    /"'
echo
echo "== the lab '${POOL_LAB_NAME:-lab}' runs POOL =="
for node in $nodes; do
	lab ssh "$node" "$on_node" || echo "$node: not reachable (python3 molecule/lab/pool_lab.py status)"
done
cat <<'TEXT'

Look around:
  make lab-ssh NODE=node1        a root shell on node1; there:
    poolctl sessions             sessions, with the path of each (direct, or via the relay)
    poolctl peers                the trust store;  poolctl journal: the hash-chained journal
    pool_vault list --vault node2 --attach    on node1 or node3: the vault node2 serves
    pool_relay status            relayed connections, byte counters and scores
  ansible-playbook -i inventories/lab playbooks/rollback.yml    an ad-hoc configuration rollback
  make lab-down                  stop and remove the lab
TEXT
