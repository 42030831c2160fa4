#!/usr/bin/env bash
# `make test-vagrant`: the vagrant scenario (molecule/vagrant) end to end on this machine:
# Vagrant with the libvirt provider boots the lab's three nodes from boxes made of the lab's
# images, converges playbooks/site.yml and runs the default scenario's whole verification.
#
# Installs what it needs from Debian (vagrant, vagrant-libvirt, libvirt, dnsmasq for libvirt's
# DHCP, OVMF for the UEFI nodes) unless present, starts libvirtd unless it answers (directly where
# systemd does not run), adds the boxes (`make vagrant-box`, idempotent), then runs
# `molecule test -s vagrant`. Without KVM the VMs run under QEMU's software emulation, as the
# QEMU lab does. Needs root (or sudo) for apt and libvirt's system instance.
#
# The log goes to .cache/molecule-logs/vagrant.log; the run's time closes it.
#
#   scripts/test-vagrant.sh             the scenario
#   scripts/test-vagrant.sh --box-only  the packages, libvirtd and the boxes (`make vagrant-box`)
set -euo pipefail

cd "$(dirname "$0")/.."
packages=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients dnsmasq-base ovmf qemu-system-x86 qemu-utils)
missing=()
for pkg in "${packages[@]}"; do
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" = installed ] || missing+=("$pkg")
done
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
if [ "${#missing[@]}" -gt 0 ]; then
	echo "test-vagrant: installing ${missing[*]}"
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"${sudo[@]}" python3 molecule/lab/vagrant_lab.py libvirtd
"${sudo[@]}" python3 molecule/lab/vagrant_lab.py box
[ "${1:-}" != --box-only ] || exit 0

logs="${POOL_MOLECULE_LOG_DIR:-.cache/molecule-logs}"
mkdir -p "$logs"
# The collection as users install it, and the environment, as for the QEMU scenarios.
# shellcheck source=scripts/molecule-env.sh
source scripts/molecule-env.sh
start=$SECONDS
status=0
molecule test -s vagrant 2>&1 | tee "$logs/vagrant.log" || status=$?
echo "test-vagrant: molecule test -s vagrant exit $status after $((SECONDS - start)) s" | tee -a "$logs/vagrant.log"
exit "$status"
