# shellcheck shell=sh
# Helpers every bootstrap script sources: checks of the documented variables, exit codes,
# quoting, systemd units enabled without a chroot, the root-folder cache. See ../README.md.

# Files and folders of a root are world-readable unless a script narrows them.
umask 022

# Exit codes (sysexits.h), the same in every script:
#   64 EX_USAGE        a required variable is missing or malformed; nothing was changed
#   65 EX_DATAERR      a downloaded file does not match its checksum; nothing was unpacked
#   69 EX_UNAVAILABLE  a tool the method needs is not installed on the node
# shellcheck disable=SC2034
EX_USAGE=64 EX_DATAERR=65 EX_UNAVAILABLE=69

die() {
    _code=$1
    shift
    printf 'gitvps: %s\n' "$*" >&2
    exit "$_code"
}

# need VAR...: each variable must be set and non-empty.
need() {
    for _v in "$@"; do
        eval "_val=\${$_v-}"
        [ -n "$_val" ] || die "$EX_USAGE" "$_v is required (see bootstraps/README.md)"
    done
}

# need_tool TOOL HINT: the tool must be on PATH.
need_tool() {
    command -v "$1" >/dev/null 2>&1 || die "$EX_UNAVAILABLE" "$1 is not installed on this node: $2"
}

# matches ERE VALUE: whether the whole value (one line) matches the extended regular expression.
matches() {
    case "$2" in
        *'
'*) return 1 ;;
    esac
    printf '%s\n' "$2" | grep -Eqx -- "$1"
}

# check_var VAR ERE WHAT: a set variable must match the grammar (every line of it).
check_var() {
    eval "_val=\${$1-}"
    [ -z "$_val" ] && return 0
    printf '%s\n' "$_val" | sed '/^$/d' | grep -Evx -- "$2" >/dev/null \
        && die "$EX_USAGE" "$1 is not $3"
    return 0
}

# check_target: TARGET is an existing absolute folder, and never the node's own root.
check_target() {
    need TARGET
    case "$TARGET" in
        /*) ;;
        *) die "$EX_USAGE" "TARGET must be an absolute path, not '$TARGET'" ;;
    esac
    [ -d "$TARGET" ] || die "$EX_USAGE" "TARGET '$TARGET' is not a folder"
    [ "$(cd "$TARGET" && pwd -P)" != / ] || die "$EX_USAGE" "TARGET must not be the node's root folder"
}

# check_target_empty: install_os fills only an empty folder (lost+found aside).
check_target_empty() {
    for _f in "$TARGET"/* "$TARGET"/.[!.]* "$TARGET"/..?*; do
        [ -e "$_f" ] || [ -L "$_f" ] || continue
        [ "$_f" = "$TARGET/lost+found" ] && continue
        die "$EX_USAGE" "TARGET '$TARGET' is not empty: install_os only fills an empty filesystem"
    done
}

# The grammar of every documented input; values are validated upstream, and again here.
HOST_RE='[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*'
V4_RE='[0-9]{1,3}(\.[0-9]{1,3}){3}'
V6_RE='[0-9a-f:]*:[0-9a-f:.]*'
KEY_RE='(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+=*( [A-Za-z0-9 @._:+=/,-]*)?'
HASH_RE='\$[0-9a-z]+\$[A-Za-z0-9./$=,]+'
URL_RE='[A-Za-z0-9._~:/?=&%+@,-]+'

# check_vps_vars: the VPS's variables, for the scripts that write them into the root.
check_vps_vars() {
    need VPS_HOSTNAME VPS_IPV4
    check_var VPS_HOSTNAME "$HOST_RE" "a host name"
    check_var VPS_ID '[a-z][a-z0-9]*(-[a-z0-9]+)*' "an id"
    set -f
    for _a in $VPS_IPV4; do matches "$V4_RE/[0-9]{1,2}" "$_a" || die "$EX_USAGE" "VPS_IPV4: '$_a' is not address/prefix"; done
    for _a in ${VPS_IPV6-}; do matches "$V6_RE/[0-9]{1,3}" "$_a" || die "$EX_USAGE" "VPS_IPV6: '$_a' is not address/prefix"; done
    for _a in ${VPS_DNS-}; do matches "$V4_RE|$V6_RE" "$_a" || die "$EX_USAGE" "VPS_DNS: '$_a' is not an IP address"; done
    set +f
    check_var VPS_GATEWAY4 "$V4_RE" "an IPv4 address"
    check_var VPS_GATEWAY6 "$V6_RE" "an IPv6 address"
    check_var VPS_SSH_KEYS "$KEY_RE" "authorized_keys lines (one key per line)"
    check_var VPS_ROOT_PASSWORD_HASH "$HASH_RE" "a crypt hash (\$id\$salt\$hash); a password is never accepted"
    check_var VPS_HYPERVISOR 'xen|kvm' "xen or kvm"
    check_var VPS_ROOT_LABEL '[A-Za-z0-9_-]{1,16}' "a filesystem label (at most 16 letters, digits, - or _)"
}

# The filesystem label of the VPS's root (the node makes the filesystem with it).
root_label() {
    printf '%s' "${VPS_ROOT_LABEL:-gitvps-root}"
}

# sq VALUE: VALUE as one single-quoted shell word.
sq() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# first_word LIST: the first of a space-separated list.
first_word() {
    set -f
    # shellcheck disable=SC2086
    set -- $1
    set +f
    printf '%s' "${1-}"
}

# put PATH MODE: writes stdin to TARGET/PATH (folders made as needed) with the mode.
put() {
    mkdir -p "$(dirname "$TARGET/$1")"
    rm -f "$TARGET/$1"
    cat >"$TARGET/$1"
    chmod "$2" "$TARGET/$1"
}

# enable_unit UNIT WANTED_BY [FROM]: what `systemctl enable` does, without a chroot.
# FROM is the folder the unit lives in inside the guest (default /etc/systemd/system);
# a templated UNIT like serial-getty@ttyS0.service links to its template file.
enable_unit() {
    _from=${3:-/etc/systemd/system}
    _file=$1
    case "$1" in
        *@?*.*) _file="${1%%@*}@.${1##*.}" ;;
    esac
    mkdir -p "$TARGET/etc/systemd/system/$2.wants"
    ln -sfn "$_from/$_file" "$TARGET/etc/systemd/system/$2.wants/$1"
}

# systemd_unit_dir: where the guest's packages put their units (merged /usr or not).
systemd_unit_dir() {
    if [ -d "$TARGET/lib/systemd/system" ] && [ ! -L "$TARGET/lib" ]; then
        printf /lib/systemd/system
    else
        printf /usr/lib/systemd/system
    fi
}

# http_proxy for the downloads of this script, when GITVPS_PROXY is set.
use_proxy() {
    if [ -n "${GITVPS_PROXY-}" ]; then
        check_var GITVPS_PROXY "$URL_RE" "a proxy URL"
        http_proxy=$GITVPS_PROXY
        https_proxy=$GITVPS_PROXY
        export http_proxy https_proxy
    fi
}

# bootable: 0 when GITVPS_BOOTABLE=0 asks for a bare root (tests), 1 otherwise.
bootable() {
    [ "${GITVPS_BOOTABLE:-1}" != 0 ]
}

# --- The root-folder cache -------------------------------------------------------------
# A finished install_os root is saved as GITVPS_CACHE/roots/<key>.tar.gz; the next install
# with the same key unpacks it instead of downloading and installing again. Entries older
# than GITVPS_CACHE_MAX_AGE_DAYS (default 7) are rebuilt so new VPSes start with fresh
# packages. No GITVPS_CACHE: no cache.

# cache_key WORDS...: a file name for what the words describe.
cache_key() {
    _sum=$(printf '%s\n' "$@" | sha256sum | cut -c1-16)
    printf '%s-%s' "${OS_ID:-os}" "$_sum"
}

# cache_restore KEY: unpacks a fresh cached root into TARGET; false when there is none.
cache_restore() {
    [ -n "${GITVPS_CACHE-}" ] || return 1
    _tgz="$GITVPS_CACHE/roots/$1.tar.gz"
    [ -f "$_tgz" ] || return 1
    _age=${GITVPS_CACHE_MAX_AGE_DAYS:-7}
    matches '[0-9]+' "$_age" || die "$EX_USAGE" "GITVPS_CACHE_MAX_AGE_DAYS must be a number of days"
    if [ -n "$(find "$_tgz" -mtime +"$_age")" ]; then
        echo "gitvps: cached root $1 is older than $_age days: rebuilding it"
        rm -f "$_tgz"
        return 1
    fi
    echo "gitvps: unpacking the cached root $1"
    gzip -dc "$_tgz" | tar -C "$TARGET" --numeric-owner --xattrs --xattrs-include='*' -xpf -
}

# cache_save KEY: saves TARGET as the cached root for KEY (atomically: a crash leaves none).
cache_save() {
    [ -n "${GITVPS_CACHE-}" ] || return 0
    mkdir -p "$GITVPS_CACHE/roots"
    _tmp="$GITVPS_CACHE/roots/.$1.$$.tmp"
    tar -C "$TARGET" --numeric-owner --xattrs --xattrs-include='*' -cf - . | gzip -1 >"$_tmp"
    mv -f "$_tmp" "$GITVPS_CACHE/roots/$1.tar.gz"
    echo "gitvps: saved the root as cache entry $1"
}

# --- What custom_os does the same way for every family ---------------------------------

# The host name, /etc/hosts with the VPS's own addresses, and fstab by label.
write_identity() {
    _short=${VPS_HOSTNAME%%.*}
    printf '%s\n' "$VPS_HOSTNAME" | put etc/hostname 644
    _v4=$(first_word "$VPS_IPV4")
    _v6=$(first_word "${VPS_IPV6-}")
    {
        printf '127.0.0.1\tlocalhost\n'
        printf '%s\t%s %s\n' "${_v4%/*}" "$VPS_HOSTNAME" "$_short"
        printf '\n::1\tlocalhost ip6-localhost ip6-loopback\n'
        printf 'ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n'
        [ -z "$_v6" ] || printf '%s\t%s %s\n' "${_v6%/*}" "$VPS_HOSTNAME" "$_short"
    } | put etc/hosts 644
    printf 'LABEL=%s\t/\text4\terrors=remount-ro\t0\t1\n' "$(root_label)" | put etc/fstab 644
}

# root's authorized_keys from VPS_SSH_KEYS (.ssh 700, the file 600).
write_root_keys() {
    mkdir -p "$TARGET/root/.ssh"
    chmod 700 "$TARGET/root" "$TARGET/root/.ssh"
    printf '%s\n' "${VPS_SSH_KEYS-}" | sed '/^$/d' | put root/.ssh/authorized_keys 600
}

# root's password field in etc/shadow: VPS_ROOT_PASSWORD_HASH, or `*` (no password login).
# Edits the file in place (no chroot, no usermod): the same on every family and in tests.
set_root_password() {
    _shadow="$TARGET/etc/shadow"
    [ -f "$_shadow" ] || die 1 "TARGET has no etc/shadow: install_os did not produce a root"
    grep -q '^root:' "$_shadow" || die 1 "etc/shadow has no root entry"
    GITVPS_HASH=${VPS_ROOT_PASSWORD_HASH:-*} GITVPS_DAYS=$(($(date +%s) / 86400)) \
        awk -F: -v OFS=: '$1 == "root" { $2 = ENVIRON["GITVPS_HASH"]; if (ENVIRON["GITVPS_HASH"] != "*") $3 = ENVIRON["GITVPS_DAYS"] } { print }' \
        "$_shadow" >"$_shadow.gitvps"
    cat "$_shadow.gitvps" >"$_shadow"
    rm -f "$_shadow.gitvps"
}

# /etc/resolv.conf from VPS_DNS (a symlink, like systemd-resolved's, is replaced by a file).
write_resolv_conf() {
    rm -f "$TARGET/etc/resolv.conf"
    {
        echo "# written by gitvps from the pool's resolvers"
        set -f
        for _d in ${VPS_DNS-}; do printf 'nameserver %s\n' "$_d"; done
        set +f
    } | put etc/resolv.conf 644
}

# An empty machine-id: systemd makes a new one at first boot, so no two VPSes share it.
reset_machine_id() {
    if [ -e "$TARGET/etc/machine-id" ] || [ -d "$TARGET/etc/systemd" ]; then
        : | put etc/machine-id 444
    fi
    if [ -f "$TARGET/var/lib/dbus/machine-id" ] && [ ! -L "$TARGET/var/lib/dbus/machine-id" ]; then
        rm -f "$TARGET/var/lib/dbus/machine-id"
    fi
}

# No SSH host key is baked into the root: each VPS makes its own at first boot.
remove_host_keys() {
    rm -f "$TARGET"/etc/ssh/ssh_host_*
}

# A unit that makes the SSH host keys at first boot, before sshd (Debian and Ubuntu).
install_ssh_keygen_unit() {
    put etc/systemd/system/gitvps-ssh-keygen.service 644 <<'EOF'
# Written by gitvps: makes this VPS's own SSH host keys at its first boot.
[Unit]
Description=Generate SSH host keys (gitvps)
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target ssh.service
EOF
    enable_unit gitvps-ssh-keygen.service multi-user.target
    enable_unit gitvps-ssh-keygen.service ssh.service
}

# A getty on the console: hvc0 on Xen comes from systemd's getty generator (console=hvc0);
# KVM's serial port is enabled explicitly.
enable_serial_getty() {
    if [ "${VPS_HYPERVISOR:-xen}" = kvm ]; then
        enable_unit serial-getty@ttyS0.service getty.target "$(systemd_unit_dir)"
    fi
}

# The kernel command line's console for the hypervisor.
console_args() {
    if [ "${VPS_HYPERVISOR:-xen}" = kvm ]; then
        printf 'console=tty0 console=ttyS0,115200'
    else
        printf 'console=hvc0'
    fi
}

# /boot/grub/grub.cfg for Xen's PVH grub (and any grub that reads it): boots the distribution's
# /vmlinuz or /boot/vmlinuz links, which kernel upgrades keep current.
write_grub_cfg() {
    put boot/grub/grub.cfg 644 <<EOF
# Written by gitvps: Xen's grub-i386-xen_pvh.bin reads this file from the VPS's disk.
set timeout=1
set default=0
search --no-floppy --label --set=root $(root_label)
menuentry 'Linux' {
    if [ -e /vmlinuz ]; then
        linux /vmlinuz root=LABEL=$(root_label) ro $(console_args)
        initrd /initrd.img
    else
        linux /boot/vmlinuz root=LABEL=$(root_label) ro $(console_args)
        initrd /boot/initrd.img
    fi
}
EOF
}

# policy-rc.d that stops packages from starting services in the chroot while installing.
block_services() {
    put usr/sbin/policy-rc.d 755 <<'EOF'
#!/bin/sh
# Written by gitvps while installing: no service starts inside the install chroot.
exit 101
EOF
}

unblock_services() {
    rm -f "$TARGET/usr/sbin/policy-rc.d"
}
