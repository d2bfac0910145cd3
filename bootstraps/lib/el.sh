# shellcheck shell=sh
# Enterprise Linux 9 (Rocky, Alma): `dnf --installroot` into TARGET (through the root cache),
# the customisation and NetworkManager keyfiles. Sourced after common.sh.

# The dnf architecture of a Debian-style OS_ARCH.
el_arch() {
    case "$OS_ARCH" in
        amd64) printf x86_64 ;;
        arm64) printf aarch64 ;;
        *) die "$EX_USAGE" "OS_ARCH '$OS_ARCH' is not amd64 or arm64" ;;
    esac
}

# dnf_install GPGKEY PACKAGES BARE_PACKAGES
#   GPGKEY         the release key, a path under GITVPS_MIRROR (GITVPS_KEYRING: a file or URL instead)
#   PACKAGES       what a bootable server needs (space-separated, groups as @name)
#   BARE_PACKAGES  the smallest root, when GITVPS_BOOTABLE=0
# GITVPS_MIRROR is the distribution's tree: <mirror>/<release>/BaseOS/<arch>/os/ must exist.
dnf_install() {
    check_target
    check_target_empty
    need OS_RELEASE OS_ARCH
    check_var OS_RELEASE '[0-9][0-9.]*' "a release number"
    _packages=$2
    bootable || _packages=$3
    _arch=$(el_arch)
    _key=$(cache_key dnf "$OS_RELEASE" "$_arch" "$_packages")
    if cache_restore "$_key"; then
        return 0
    fi
    need GITVPS_MIRROR
    check_var GITVPS_MIRROR "$URL_RE" "a mirror URL"
    check_var GITVPS_KEYRING "$URL_RE" "a key file or URL"
    need_tool dnf "install it (apt-get install dnf on a Debian node) to bootstrap Enterprise Linux"
    _gpgkey=${GITVPS_KEYRING:-$GITVPS_MIRROR/$1}
    case "$_gpgkey" in
        /*) _gpgkey="file://$_gpgkey" ;;
    esac
    _tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$_tmp'" EXIT
    {
        echo "[main]"
        echo "gpgcheck=1"
        echo "install_weak_deps=False"
        echo "keepcache=True"
        [ -z "${GITVPS_PROXY-}" ] || printf 'proxy=%s\n' "$GITVPS_PROXY"
    } >"$_tmp/dnf.conf"
    for _repo in BaseOS AppStream; do
        printf '[gitvps-%s]\nname=%s\nbaseurl=%s/%s/%s/%s/os/\ngpgcheck=1\ngpgkey=%s\n\n' \
            "$_repo" "$_repo" "$GITVPS_MIRROR" "$OS_RELEASE" "$_repo" "$_arch" "$_gpgkey"
    done >"$_tmp/gitvps.repo"
    block_services
    set -f
    # shellcheck disable=SC2086
    dnf -y --config="$_tmp/dnf.conf" --setopt=reposdir="$_tmp" \
        --setopt=cachedir="${GITVPS_CACHE:-$_tmp}/dnf" \
        --installroot="$TARGET" --releasever="$OS_RELEASE" --forcearch="$_arch" \
        install $_packages
    set +f
    unblock_services
    rm -f "$TARGET/etc/resolv.conf" "$TARGET/etc/hostname"
    cache_save "$_key"
}

# el_custom_os: everything but the network, for Enterprise Linux.
el_custom_os() {
    check_target
    check_vps_vars
    write_identity
    write_root_keys
    set_root_password
    write_resolv_conf
    reset_machine_id
    # sshd-keygen@.service makes the host keys at first boot by itself.
    remove_host_keys
    enable_serial_getty
    _dir=$(systemd_unit_dir)
    enable_unit sshd.service multi-user.target "$_dir"
    enable_unit NetworkManager.service multi-user.target "$_dir"
    # grub.cfg boots /vmlinuz and /initrd.img: links to the newest kernel, kept current by a
    # kernel-install plugin.
    write_grub_cfg
    put etc/kernel/install.d/95-gitvps-links.install 755 <<'EOF'
#!/bin/sh
# Written by gitvps: keeps /vmlinuz and /initrd.img on the newest kernel for /boot/grub/grub.cfg.
[ "$1" = add ] || exit 0
ln -sfn "boot/vmlinuz-$2" /vmlinuz
ln -sfn "boot/initramfs-$2.img" /initrd.img
EOF
    _kernel=$(find "$TARGET/boot" -maxdepth 1 -name 'vmlinuz-*' ! -name '*rescue*' 2>/dev/null | sed 's|.*/vmlinuz-||' | sort -V | tail -n 1)
    if [ -n "$_kernel" ]; then
        ln -sfn "boot/vmlinuz-$_kernel" "$TARGET/vmlinuz"
        ln -sfn "boot/initramfs-$_kernel.img" "$TARGET/initrd.img"
    fi
    # Files written from outside carry no SELinux label: relabel at first boot.
    : >"$TARGET/.autorelabel"
}

# A stable UUID for the VPS's connection, derived from its id.
nm_uuid() {
    printf 'gitvps-%s' "${VPS_ID:-$VPS_HOSTNAME}" | sha256sum | cut -c1-32 |
        sed 's/^\(.\{8\}\)\(.\{4\}\)\(.\{4\}\)\(.\{4\}\)\(.\{12\}\)$/\1-\2-\3-\4-\5/'
}

# nm_keyfile: /etc/NetworkManager/system-connections/gitvps.nmconnection (mode 600).
# The NIC is matched by name: eth0 on Xen, en* (named by PCI slot) on KVM.
# shellcheck disable=SC2153
nm_keyfile() {
    check_target
    check_vps_vars
    set -f
    _dns4=
    _dns6=
    for _d in ${VPS_DNS-}; do
        case "$_d" in
            *:*) _dns6="$_dns6$_d;" ;;
            *) _dns4="$_dns4$_d;" ;;
        esac
    done
    {
        echo "# Written by gitvps for ${VPS_ID:-this VPS}: its addresses from the inventory."
        echo "[connection]"
        echo "id=gitvps"
        printf 'uuid=%s\n' "$(nm_uuid)"
        echo "type=ethernet"
        echo "autoconnect=true"
        echo
        echo "[match]"
        echo "interface-name=eth*;en*;"
        echo
        echo "[ethernet]"
        echo
        echo "[ipv4]"
        echo "method=manual"
        _i=1
        for _a in $VPS_IPV4; do
            printf 'address%s=%s\n' "$_i" "$_a"
            _i=$((_i + 1))
        done
        [ -z "${VPS_GATEWAY4-}" ] || printf 'gateway=%s\n' "$VPS_GATEWAY4"
        [ -z "$_dns4" ] || printf 'dns=%s\n' "$_dns4"
        echo
        echo "[ipv6]"
        if [ -n "${VPS_IPV6-}" ]; then
            echo "method=manual"
            _i=1
            for _a in $VPS_IPV6; do
                printf 'address%s=%s\n' "$_i" "$_a"
                _i=$((_i + 1))
            done
            [ -z "${VPS_GATEWAY6-}" ] || printf 'gateway=%s\n' "$VPS_GATEWAY6"
        else
            echo "method=link-local"
        fi
        [ -z "$_dns6" ] || printf 'dns=%s\n' "$_dns6"
    } | put etc/NetworkManager/system-connections/gitvps.nmconnection 600
    set +f
}
