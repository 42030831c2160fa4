#!/bin/sh
# Customisation of the POOL lab image, run inside the mmdebstrap chroot.
# Part of the image recipe: any change here changes the image hash.
set -eu

echo pool-lab >/etc/hostname
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >/etc/hosts
printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t1\n' >/etc/fstab
# Each VM gets its own machine-id at first boot.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id

# No SSH host keys in the image: each VM makes its own at first boot.
rm -f /etc/ssh/ssh_host_*
# Root by key only; no password anywhere.
usermod -p '*' root
mkdir -p /etc/ssh/sshd_config.d /root/.ssh
chmod 700 /root/.ssh
cat >/etc/ssh/sshd_config.d/pool-lab.conf <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
EOF

# First-boot (and every-boot) setup from the kernel command line:
# hostname, addresses, /etc/hosts, the controller's SSH key, host keys.
cat >/usr/local/sbin/pool-lab-setup <<'EOF'
#!/bin/sh
# Applies the per-VM settings that pool_lab.py passes as pool_lab.* kernel
# parameters, so the shared base image stays untouched.
set -eu
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^pool_lab\.$1=//p" | tail -n 1; }
by_mac() {
	for d in /sys/class/net/*; do
		if [ "$(cat "$d/address" 2>/dev/null)" = "$1" ]; then
			basename "$d"
			return 0
		fi
	done
	return 1
}

name="$(arg hostname)"
[ -n "$name" ] || { echo "pool-lab-setup: no pool_lab.hostname on the kernel command line"; exit 0; }
echo "$name" >/etc/hostname
echo "$name" >/proc/sys/kernel/hostname

# Hosts file: localhost plus every lab node (pool_lab.hosts=name=v4=v6,...).
{
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
	printf '127.0.1.1\t%s\n' "$name"
	arg hosts | tr ',' '\n' | while IFS='=' read -r n v4 v6; do
		[ -n "$n" ] || continue
		printf '%s\t%s\n%s\t%s\n' "$v4" "$n" "$v6" "$n"
	done
} >/etc/hosts.new
mv /etc/hosts.new /etc/hosts

key="$(arg key)"
if [ -n "$key" ]; then
	umask 077
	mkdir -p /root/.ssh
	echo "$key" | base64 -d >/root/.ssh/authorized_keys.new
	mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys
	umask 022
fi
# ed25519 only: RSA key generation takes half a minute under TCG.
[ -e /etc/ssh/ssh_host_ed25519_key ] ||
	ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f /etc/ssh/ssh_host_ed25519_key

# NICs are found by MAC: the user-mode NIC keeps eth0, each private link's NIC takes
# the link's interface name (pool_lab.links=IFNAME=MAC=IPV4/LEN=IPV6/LEN,...).
# Wait for udev to have probed them all.
umac="$(arg umac)"
links="$(arg links | tr ',' ' ')"
i=0
for l in $links; do
	mac="$(echo "$l" | cut -d= -f2)"
	until by_mac "$mac" >/dev/null; do
		i=$((i + 1))
		[ "$i" -lt 1200 ] || { echo "pool-lab-setup: NIC $mac not found"; exit 1; }
		sleep 0.1
	done
done
until by_mac "$umac" >/dev/null; do
	i=$((i + 1))
	[ "$i" -lt 1200 ] || { echo "pool-lab-setup: NIC $umac not found"; exit 1; }
	sleep 0.1
done
udev="$(by_mac "$umac")"
ip link set dev lo up
if [ "$(arg mgmt)" = dhcp ]; then
	# A management network with DHCP (the Vagrant boxes: libvirt's network, whose leases tell
	# Vagrant the address): systemd-networkd asks for one on that NIC alone.
	# networkd would drop the routes it did not make when it starts (the unreachable ones below).
	mkdir -p /run/systemd/network /run/systemd/networkd.conf.d
	printf '[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n' \
		>/run/systemd/networkd.conf.d/pool-lab.conf
	printf '[Match]\nMACAddress=%s\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' "$umac" \
		>/run/systemd/network/10-pool-lab-mgmt.network
	systemctl start --no-block systemd-networkd.service
else
	# QEMU's user-mode network: its fixed addresses.
	ip link set dev "$udev" up
	ip addr replace 10.0.2.15/24 dev "$udev"
	ip route replace default via 10.0.2.2 dev "$udev"
	echo 'nameserver 10.0.2.3' >/etc/resolv.conf
fi
# No node forwards between its links, and the lab's ranges are unreachable except through a
# node's own links: a node that shares no link with another has no path to it (nor out
# through the user-mode NIC).
sysctl -q -w net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
unreachable="$(arg unreachable)"
if [ -n "$unreachable" ]; then
	ip route replace unreachable "${unreachable%%=*}"
	ip -6 route replace unreachable "${unreachable#*=}"
fi
for l in $links; do
	IFS='=' read -r ifname mac ipv4 ipv6 <<LINK
$l
LINK
	dev="$(by_mac "$mac")"
	if [ "$dev" != "$ifname" ]; then
		ip link set dev "$dev" down
		ip link set dev "$dev" name "$ifname"
	fi
	sysctl -q -w "net.ipv6.conf.$ifname.accept_ra=0"
	ip link set dev "$ifname" up
	ip addr replace "$ipv4" dev "$ifname"
	ip -6 addr replace "$ipv6" dev "$ifname" nodad
	echo "pool-lab-setup: $name $ifname $ipv4 $ipv6"
done
EOF
chmod 755 /usr/local/sbin/pool-lab-setup

cat >/etc/systemd/system/pool-lab-setup.service <<'EOF'
[Unit]
Description=POOL lab per-VM setup (hostname, addresses, SSH keys)
DefaultDependencies=no
After=local-fs.target systemd-udev-trigger.service
Wants=network-pre.target
Before=network-pre.target ssh.service systemd-user-sessions.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/pool-lab-setup
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
EOF
systemctl enable pool-lab-setup.service

# A persistent journal: the kernel log of a boot that ended in a power cycle (pool_lab.py reset)
# is still there to be checked for kernel reports (molecule/lab/kernel_log.py).
mkdir -p /var/log/journal

# Keep boots short under TCG: nothing periodic, no waiting for the network.
systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer \
	e2scrub_all.timer e2scrub_reap.service fstrim.timer \
	systemd-networkd-wait-online.service >/dev/null 2>&1 || true

# A small initrd: only what mounting /dev/vda needs (TCG unpacks and probes
# everything else slowly); the root fs loads the rest through udev.
printf 'MODULES=list\n' >/etc/initramfs-tools/conf.d/pool-lab.conf
printf '%s\n' virtio_pci virtio_blk virtio_net ext4 crc32c_generic >>/etc/initramfs-tools/modules
printf 'blacklist floppy\n' >/etc/modprobe.d/pool-lab.conf

# The image must boot its own kernel and build modules against it.
kver="$(ls /lib/modules)"
[ "$(echo "$kver" | wc -l)" -eq 1 ] || { echo "customize: expected one kernel, got: $kver" >&2; exit 1; }
[ -e "/lib/modules/$kver/build" ] || { echo "customize: headers for $kver missing" >&2; exit 1; }
update-initramfs -u -k "$kver"
apt-get clean
