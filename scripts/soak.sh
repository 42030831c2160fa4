#!/usr/bin/env bash
# `make soak`: sessions of any length (molecule/default/tests/soak_checks.py): 16 GiB over one
# session across the ring counters' wrap with SHA-256 compared, and 30 minutes of sequenced
# traffic both ways with rekey_seconds 5, at the same time, over a node1 link held below the
# sender's speed (POOL_SOAK_RATE) so the ring stays full. The lab is POOL_SOAK_LAB (default
# "soak"); one already up (rolled out with site.yml) is used as it is and left running,
# otherwise it is booted, rolled out and torn down after. POOL_SOAK_BYTES and
# POOL_SOAK_REKEY_MINUTES shorten a trial run. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export POOL_LAB_NAME="${POOL_SOAK_LAB:-soak}"
inventory=.cache/soak/hosts.yml
mkdir -p .cache/soak
if python3 molecule/lab/pool_lab.py status >/dev/null 2>&1; then
	echo "soak: lab '$POOL_LAB_NAME' is up: soaking it as it is"
	python3 molecule/lab/pool_lab.py inventory --inventory "$inventory" >/dev/null
else
	trap 'python3 molecule/lab/pool_lab.py down >/dev/null 2>&1 || true' EXIT
	python3 molecule/lab/pool_lab.py up --inventory "$inventory"
	ansible-playbook -i "$inventory" playbooks/site.yml
fi
start=$SECONDS
python3 -m pytest --ansible-inventory "$inventory" --connection ansible -p no:cacheprovider -q -s -rfE \
	molecule/default/tests/soak_checks.py
echo "soak: passed in $((SECONDS - start)) s"
