#!/usr/bin/env bash
# Run `molecule test` for every scenario under molecule/ (each folder with a
# molecule.yml), stop at the first failure, print a timing line per scenario.
set -euo pipefail

cd "$(dirname "$0")/.."
mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | sort)
if [ "${#scenarios[@]}" -eq 0 ]; then
	echo "molecule-all: no scenarios under molecule/" >&2
	exit 1
fi
# default first: it is the baseline the others build on.
ordered=()
for s in "${scenarios[@]}"; do [ "$s" = molecule/default ] && ordered+=("$s"); done
for s in "${scenarios[@]}"; do [ "$s" = molecule/default ] || ordered+=("$s"); done

logs="${POOL_MOLECULE_LOG_DIR:-.cache/molecule-logs}"
mkdir -p "$logs"

# A CI log is often read from its tail: repeat there what failed (pytest's
# summary lines, failed Ansible tasks and assertion messages) from the full log.
failure_summary() {
	local log="$1"
	echo "molecule-all: what failed (from $log):" >&2
	# Molecule prefixes lines with colours, a time and a box bar: strip those first.
	sed -E 's/\x1b\[[0-9;]*m//g; s/^[[:space:]]*([0-9:.]+[[:space:]]+)?(│[[:space:]]?)?([0-9:.]+[[:space:]]+)?//' "$log" |
		grep -aE '^(FAILED|ERROR) |^E  |^fatal: |^failed: |"msg": ' | tail -n 40 >&2 || true
}

total_start=$SECONDS
for dir in "${ordered[@]}"; do
	name="${dir#molecule/}"
	start=$SECONDS
	log="$logs/$name.log"
	echo "molecule-all: scenario $name (full log: $log)"
	if molecule test -s "$name" 2>&1 | tee "$log"; then
		echo "molecule-all: $name passed in $((SECONDS - start)) s"
	else
		rc=${PIPESTATUS[0]}
		failure_summary "$log"
		echo "molecule-all: $name FAILED (exit $rc) after $((SECONDS - start)) s" >&2
		exit "$rc"
	fi
done
echo "molecule-all: ${#ordered[@]} scenario(s) passed in $((SECONDS - total_start)) s"
