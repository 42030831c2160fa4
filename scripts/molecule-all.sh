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

total_start=$SECONDS
for dir in "${ordered[@]}"; do
	name="${dir#molecule/}"
	start=$SECONDS
	echo "molecule-all: scenario $name"
	if molecule test -s "$name"; then
		echo "molecule-all: $name passed in $((SECONDS - start)) s"
	else
		rc=$?
		echo "molecule-all: $name FAILED (exit $rc) after $((SECONDS - start)) s" >&2
		exit "$rc"
	fi
done
echo "molecule-all: ${#ordered[@]} scenario(s) passed in $((SECONDS - total_start)) s"
