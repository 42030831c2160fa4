# shellcheck shell=bash
# Sourced by scripts/molecule-all.sh and scripts/test-vagrant.sh: what every molecule run of the
# checkout needs, whichever lab it runs on.
#
# The lab is converged from the collection as users install it: built with ansible-galaxy,
# installed into a collections path of its own, with nothing of the working tree on the path.
# Molecule's idempotence step then runs that installed pool.ops.site a second time.
installed="$PWD/.cache/molecule-collections"
scripts/galaxy-install-test.sh --into "$installed"
export ANSIBLE_COLLECTIONS_PATH="$installed" ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
# molecule's console wraps what the verifier prints at the terminal's width (80 without one):
# wide enough that a failed assertion's message stays on the one line the summary shows
export COLUMNS=400
# As scripts/test.sh (the README's test command) runs them: a test whose prerequisite is missing
# fails instead of skipping, and Ansible's own files stay in the checkout's cache.
export POOL_TEST_STRICT="${POOL_TEST_STRICT:-1}" ANSIBLE_HOME="${ANSIBLE_HOME:-$PWD/.cache/ansible-home}"
