#!/usr/bin/env bash
# `make test` (the README's test command, and CI's): every test stage.
#
# The lab stage (molecule: every scenario on one QEMU lab, without KVM the long pole) starts
# first, in the background; the host stages (unit, kmod, sanity, lint, docs) run meanwhile, one after
# the other. Each stage's output goes to $POOL_TEST_LOG_DIR/<stage>.log and is printed whole when
# the stage ends, so the output reads stage by stage; a table of the stages' times closes it.
# Exits non-zero when any stage failed (all stages run to their end either way).
#
#   scripts/test.sh                 every stage
#   scripts/test.sh unit lint       only these (names: unit kmod sanity lint docs molecule)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
# Tests that skip when a prerequisite is missing by hand fail here: the test command runs them all.
export POOL_TEST_STRICT=1
# Ansible's own files (temporary files, SSH control sockets, galaxy cache) stay in the checkout's
# cache instead of ~/.ansible, so that the tests leave nothing behind in the user's home.
export ANSIBLE_HOME="$PWD/.cache/ansible-home"
logs="${POOL_TEST_LOG_DIR:-.cache/test-logs}"
mkdir -p "$logs"

all=(unit kmod sanity lint docs molecule)
stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=("${all[@]}")
for s in "${stages[@]}"; do
	[[ " ${all[*]} " == *" $s "* ]] || { echo "test: unknown stage '$s' (stages: ${all[*]})" >&2; exit 2; }
done

run_stage() {
	case "$1" in
	unit) python3 -m pytest -q tests/unit ;;
	kmod) scripts/build-kmod.sh ;;
	sanity) scripts/sanity.sh ;;
	lint) ruff check . && ansible-lint --profile production ;;
	docs) scripts/docs.sh ;;
	# The lab (QEMU under TCG takes every cycle it gets) yields the CPU to the host stages that
	# run beside it, so that their timing-sensitive tests see no multi-second stalls.
	molecule) nice -n 10 scripts/molecule-all.sh ;;
	esac
}

declare -A rc seconds
t0=$SECONDS

# Runs one stage into its log; records its exit status and time in $logs/<stage>.status.
timed_stage() {
	local s="$1" start=$SECONDS code
	run_stage "$s" >"$logs/$s.log" 2>&1
	code=$?
	echo "$code $((SECONDS - start))" >"$logs/$s.status"
}

show() {
	local s="$1" code secs
	read -r code secs <"$logs/$s.status"
	rc[$s]=$code
	seconds[$s]=$secs
	echo "==== test: $s ($secs s, exit $code) ===="
	cat "$logs/$s.log"
}

lab_pid=""
if [[ " ${stages[*]} " == *" molecule "* ]]; then
	rm -f "$logs/molecule.status"
	timed_stage molecule &
	lab_pid=$!
	echo "test: molecule (the lab stage) started in the background; its output follows the other stages"
fi
for s in "${stages[@]}"; do
	[ "$s" = molecule ] && continue
	timed_stage "$s"
	show "$s"
done
if [ -n "$lab_pid" ]; then
	wait "$lab_pid"
	show molecule
fi

echo "==== test: stage times ===="
failed=0
for s in "${stages[@]}"; do
	printf '  %-9s %5s s  %s\n' "$s" "${seconds[$s]}" "$([ "${rc[$s]}" = 0 ] && echo passed || echo "FAILED (exit ${rc[$s]})")"
	[ "${rc[$s]}" = 0 ] || failed=$((failed + 1))
done
printf '  %-9s %5s s  (wall clock)\n' total "$((SECONDS - t0))"
echo "stages: $((${#stages[@]} - failed)) passed, $failed failed"
[ "$failed" = 0 ]
