# shellcheck shell=sh
# Debian and Ubuntu: debootstrap into TARGET (through the root cache), the customisation both
# share, systemd-networkd for Debian and netplan for Ubuntu. Sourced after common.sh.

# debootstrap_install COMPONENTS KEYRING PACKAGES GENERIC_SCRIPT
#   COMPONENTS      archive components, comma-separated (main / main,universe)
#   KEYRING         the archive keyring on the node (GITVPS_KEYRING overrides it)
#   PACKAGES        what a bootable server needs on top of the variant (--include);
#                   GITVPS_BOOTABLE=0 leaves it out (tests)
#   GENERIC_SCRIPT  debootstrap's script for a release newer than the node's debootstrap
debootstrap_install() {
    check_target
    check_target_empty
    need OS_RELEASE OS_ARCH
    check_var OS_RELEASE '[a-z0-9][a-z0-9.-]*' "a release code name"
    check_var OS_ARCH '[a-z0-9]+' "a Debian architecture name"
    _components=$1
    _keyring=${GITVPS_KEYRING:-$2}
    _packages=$3
    bootable || _packages=
    _variant=${GITVPS_DEBOOTSTRAP_VARIANT:-minbase}
    check_var GITVPS_DEBOOTSTRAP_VARIANT 'minbase|buildd|default' "minbase, buildd or default"
    _key=$(cache_key debootstrap "$OS_RELEASE" "$OS_ARCH" "$_variant" "$_components" "$_packages")
    if cache_restore "$_key"; then
        return 0
    fi
    need GITVPS_MIRROR
    check_var GITVPS_MIRROR "$URL_RE" "a mirror URL"
    need_tool debootstrap "install it with apt-get install debootstrap"
    [ -f "$_keyring" ] || die "$EX_UNAVAILABLE" "the archive keyring $_keyring is not on this node (install it, or name another in GITVPS_KEYRING)"
    use_proxy
    # A release newer than the node's debootstrap is installed with the family's generic script.
    _script=/usr/share/debootstrap/scripts/$OS_RELEASE
    [ -e "$_script" ] || _script=/usr/share/debootstrap/scripts/$4
    set -- --arch="$OS_ARCH" --components="$_components" --keyring="$_keyring"
    [ "$_variant" = default ] || set -- "$@" --variant="$_variant"
    [ -z "$_packages" ] || set -- "$@" --include="$_packages"
    block_services
    debootstrap "$@" "$OS_RELEASE" "$TARGET" "$GITVPS_MIRROR" "$_script"
    unblock_services
    # What debootstrap copied in from the node never belongs to a VPS.
    rm -f "$TARGET/etc/resolv.conf" "$TARGET/etc/hostname"
    rm -rf "$TARGET/var/cache/apt/archives/"*.deb "$TARGET/var/lib/apt/lists/"*_Packages
    cache_save "$_key"
}

# debian_kernel: the kernel package for VPS_HYPERVISOR (default xen). A Xen PV guest boots through
# PV GRUB (grub-x86_64-xen.bin), which unpacks only gzip, xz or lzo kernels: Debian's cloud kernel
# is LZ4 ("not xen image", the domain stays in GRUB), its generic kernel xz. The root boots under
# every guest type, since a type change rewrites only the domain's config; KVM keeps the cloud
# kernel.
debian_kernel() {
    need OS_ARCH
    check_var VPS_HYPERVISOR 'xen|kvm' "xen or kvm"
    if [ "${VPS_HYPERVISOR:-xen}" = kvm ]; then
        printf 'linux-image-cloud-%s' "$OS_ARCH"
    else
        printf 'linux-image-%s' "$OS_ARCH"
    fi
}

# apt_sources LINE...: the guest's /etc/apt/sources.list, one "deb" line per argument.
apt_sources() {
    {
        echo "# Written by gitvps."
        for _line in "$@"; do printf 'deb %s\n' "$_line"; done
    } | put etc/apt/sources.list 644
}

# The guest's mirror: GITVPS_GUEST_MIRROR (when the node's mirror is not reachable from VPSes).
guest_mirror() {
    _m=${GITVPS_GUEST_MIRROR:-${GITVPS_MIRROR-}}
    matches "$URL_RE" "$_m" || die "$EX_USAGE" "GITVPS_MIRROR (or GITVPS_GUEST_MIRROR) is required and must be a URL"
    printf '%s' "$_m"
}

# debian_custom_os: everything but the network and the apt sources, for Debian and Ubuntu.
debian_custom_os() {
    check_target
    check_vps_vars
    write_identity
    write_root_keys
    set_root_password
    write_resolv_conf
    reset_machine_id
    remove_host_keys
    install_ssh_keygen_unit
    enable_serial_getty
    write_grub_cfg
}

# enable_networkd: systemd-networkd and its wait-online at boot (what `systemctl enable` links).
enable_networkd() {
    _dir=$(systemd_unit_dir)
    enable_unit systemd-networkd.service multi-user.target "$_dir"
    enable_unit systemd-networkd.socket sockets.target "$_dir"
    enable_unit systemd-networkd-wait-online.service network-online.target "$_dir"
}

# networkd_file: /etc/systemd/network/50-gitvps.network for the VPS's addresses.
# The NIC is matched by name: eth0 on Xen, en* (named by PCI slot) on KVM.
# shellcheck disable=SC2153
networkd_file() {
    check_target
    check_vps_vars
    set -f
    {
        echo "# Written by gitvps for ${VPS_ID:-this VPS}: its addresses from the inventory."
        echo "[Match]"
        echo "Name=eth* en*"
        echo
        echo "[Network]"
        for _a in $VPS_IPV4; do printf 'Address=%s\n' "$_a"; done
        [ -z "${VPS_GATEWAY4-}" ] || printf 'Gateway=%s\n' "$VPS_GATEWAY4"
        for _a in ${VPS_IPV6-}; do printf 'Address=%s\n' "$_a"; done
        [ -z "${VPS_GATEWAY6-}" ] || [ -z "${VPS_IPV6-}" ] || printf 'Gateway=%s\n' "$VPS_GATEWAY6"
        for _d in ${VPS_DNS-}; do printf 'DNS=%s\n' "$_d"; done
        echo "IPv6AcceptRA=no"
    } | put etc/systemd/network/50-gitvps.network 644
    set +f
    enable_networkd
}

# netplan_file: /etc/netplan/50-gitvps.yaml (mode 600, as netplan wants), rendered by networkd.
netplan_file() {
    check_target
    check_vps_vars
    set -f
    {
        echo "# Written by gitvps for ${VPS_ID:-this VPS}: its addresses from the inventory."
        echo "network:"
        echo "  version: 2"
        echo "  renderer: networkd"
        echo "  ethernets:"
        echo "    gitvps:"
        echo "      match:"
        echo "        name: \"e[nt]*\"    # eth0 on Xen, en* on KVM"
        echo "      accept-ra: false"
        echo "      addresses:"
        for _a in $VPS_IPV4 ${VPS_IPV6-}; do printf '        - "%s"\n' "$_a"; done
        if [ -n "${VPS_GATEWAY4-}" ] || { [ -n "${VPS_GATEWAY6-}" ] && [ -n "${VPS_IPV6-}" ]; }; then
            echo "      routes:"
            [ -z "${VPS_GATEWAY4-}" ] || printf '        - to: default\n          via: "%s"\n' "$VPS_GATEWAY4"
            [ -z "${VPS_GATEWAY6-}" ] || [ -z "${VPS_IPV6-}" ] || printf '        - to: default\n          via: "%s"\n' "$VPS_GATEWAY6"
        fi
        if [ -n "${VPS_DNS-}" ]; then
            echo "      nameservers:"
            echo "        addresses:"
            for _d in $VPS_DNS; do printf '          - "%s"\n' "$_d"; done
        fi
    } | put etc/netplan/50-gitvps.yaml 600
    set +f
    enable_networkd
}
