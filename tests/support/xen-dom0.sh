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
    --include=linux-image-amd64,xen-system-amd64,grub-xen-host,openssh-server,sudo,systemd-sysv,udev,ifupdown,bridge-utils,iproute2,isc-dhcp-client,e2fsprogs,lvm2,debootstrap,kmod,procps,initramfs-tools,busybox,util-linux,ca-certificates \
    bookworm "$root" "$mirror"

echo xendom0 >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 xendom0\n' >"$root/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$root/etc/fstab"
# eth0 reaches the mirror through QEMU's user network; xenbr0 is the domUs' bridge, with the
# test pool's gateway on it.
cat >"$root/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp

auto xenbr0
iface xenbr0 inet static
    address 10.99.0.1/24
    bridge_ports none
    bridge_stp off
    bridge_fd 0
EOF
# What the host's resolver was is of no use behind QEMU's user network.
echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
# xendomains would save or stop the domUs at shutdown: the test kills QEMU instead.
ln -sf /dev/null "$root/etc/systemd/system/xendomains.service"

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
