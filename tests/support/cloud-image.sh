#!/bin/sh
# A Debian 12 "cloud image" for the KVM rig (tests/src/media.rs): debootstrap from MIRROR with
# cloud-init, made into a qcow2 disk image holding one ext4 filesystem (no partition table),
# the way gitvps's own installs are, so the rig boots its kernel directly. cloud-init finds the
# NoCloud seed by its `cidata` label and configures the rest (keys, host name, network).
# debootstrap resolves no virtual packages: python3-cffi-backend provides what
# python3-cryptography (through cloud-init) needs.
# Usage: cloud-image.sh MIRROR OUT.qcow2   (as root; OUT is written through a temporary name)
set -eu
mirror=$1
out=$2
work=$(mktemp -d "$out.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
debootstrap --variant=minbase \
    --include=systemd-sysv,udev,dbus,linux-image-cloud-amd64,initramfs-tools,openssh-server,iproute2,ca-certificates,cloud-init,python3-cffi-backend \
    bookworm "$root" "$mirror"
# What a cloud image leaves to the first boot: the host name, the machine id, the network.
rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
: >"$root/etc/machine-id"
printf 'LABEL=cloudimg-rootfs / ext4 defaults 0 1\n' >"$root/etc/fstab"
# cloud-init renders the seed's network-config for systemd-networkd (minbase has no ifupdown)
# and looks for NoCloud only.
mkdir -p "$root/etc/cloud/cloud.cfg.d" "$root/etc/systemd/system/multi-user.target.wants" \
    "$root/etc/systemd/system/sockets.target.wants"
# The locale cloud-init would set (en_US.UTF-8) is not generated in a minbase root: C.UTF-8 is.
cat >"$root/etc/cloud/cloud.cfg.d/90-rig.cfg" <<'EOF'
datasource_list: [NoCloud, None]
locale: C.UTF-8
system_info:
  network:
    renderers: [networkd]
EOF
ln -sf /lib/systemd/system/systemd-networkd.service \
    "$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
ln -sf /lib/systemd/system/systemd-networkd.socket \
    "$root/etc/systemd/system/sockets.target.wants/systemd-networkd.socket"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*_Packages \
    "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale"
truncate -s 3G "$work/disk.raw"
mke2fs -q -F -t ext4 -L cloudimg-rootfs -d "$root" "$work/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$out.tmp"
mv -f "$out.tmp" "$out"
