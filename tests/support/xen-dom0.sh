#!/bin/sh
# The Xen test node's dom0 (tests/src/xen.rs): a Debian 12 root with Xen 4.17, LVM, sshd, sudo,
# debootstrap and the Xen GRUB images, made into the files QEMU boots it from.
# Usage: xen-dom0.sh OUT MIRROR NODE_KEY_PUB
#   OUT           a folder that does not exist yet; the caller renames it into its cache
#   MIRROR        the Debian mirror, read from the machine's apt sources by the caller
#   NODE_KEY_PUB  the reconciler's public key: the `gitvps` user's authorized_keys
# Writes OUT/root.img (ext4, the dom0's /), OUT/xen (Xen, an ELF image for QEMU's multiboot),
# OUT/vmlinuz, OUT/initrd.img and OUT/host_key.pub (the dom0's pinned ed25519 host key).
# Recipe and workarounds: ../shared/reference/xen-under-qemu.md, docs/xen.md.
set -eu
out=$1 mirror=$2 key=$3
[ ! -e "$out" ] || { echo "xen-dom0.sh: $out exists" >&2; exit 64; }
mkdir -p "$out"
root=$out/root
debootstrap --variant=minbase \
    --include=linux-image-amd64,xen-system-amd64,grub-xen-host,openssh-server,sudo,systemd-sysv,udev,iproute2,bridge-utils,e2fsprogs,lvm2,debootstrap,kmod,procps,initramfs-tools,busybox,util-linux,ca-certificates \
    bookworm "$root" "$mirror"

echo xendom0 >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 xendom0\n' >"$root/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$root/etc/fstab"
# systemd-networkd, all static, so nothing waits on DHCP at boot: eth0 on QEMU's user network
# (its fixed addresses), xenbr0 the domUs' bridge with the test pool's gateway on it, up before
# any vif joins it.
net=$root/etc/systemd/network
cat >"$net/10-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
DNS=10.0.2.3
EOF
printf '[NetDev]\nName=xenbr0\nKind=bridge\n' >"$net/20-xenbr0.netdev"
cat >"$net/20-xenbr0.network" <<'EOF'
[Match]
Name=xenbr0

[Network]
Address=10.99.0.1/24
ConfigureWithoutCarrier=yes
IgnoreCarrierLoss=yes
EOF
chroot "$root" systemctl enable systemd-networkd.service
# What the host's resolver was is of no use behind QEMU's user network.
echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
# What the test node does not need, each slow under emulation (e2scrub_reap alone took 2 of a
# 5-minute boot): xendomains would save or stop the domUs at shutdown (the test kills QEMU
# instead); nothing waits for network-online; no timers, no LVM monitoring.
for unit in xendomains.service e2scrub_reap.service e2scrub_all.timer getty-static.service \
    systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
    fstrim.timer lvm2-monitor.service systemd-pstore.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# xenconsoled logs every guest's console to /var/log/xen/console/guest-<name>.log (Debian's
# /etc/init.d/xen passes XENCONSOLED_ARGS; it reads no XENCONSOLED_TRACE).
echo 'XENCONSOLED_ARGS="--log=guest"' >>"$root/etc/default/xen"

# The reconciler's user: a key, /bin/sh, and exactly the sudo rule docs/reconciler.md lists.
chroot "$root" useradd --create-home --shell /bin/sh gitvps
chroot "$root" usermod -p '*' gitvps
mkdir -p "$root/home/gitvps/.ssh"
cp "$key" "$root/home/gitvps/.ssh/authorized_keys"
chroot "$root" chown -R gitvps:gitvps /home/gitvps/.ssh
chmod 700 "$root/home/gitvps/.ssh"
chmod 600 "$root/home/gitvps/.ssh/authorized_keys"
echo 'gitvps ALL=(root) NOPASSWD: /bin/sh' >"$root/etc/sudoers.d/gitvps"
chmod 440 "$root/etc/sudoers.d/gitvps"

[ -f "$root/etc/ssh/ssh_host_ed25519_key" ] || chroot "$root" ssh-keygen -A
cp "$root/etc/ssh/ssh_host_ed25519_key.pub" "$out/host_key.pub"
zcat "$root"/boot/xen-4.17-amd64.gz >"$out/xen"
cp "$root"/boot/vmlinuz-*-amd64 "$out/vmlinuz"
cp "$root"/boot/initrd.img-*-amd64 "$out/initrd.img"
rm -rf "$root/var/cache/apt/archives/"*.deb
mke2fs -q -t ext4 -L dom0 -d "$root" "$out/root.img" 8G
rm -rf "$root"
