# gitvps KVM host plumbing: the tap and bridge of a guest, its anti-spoofing filter and send rate
# (nftables), and its CPU share in a cgroup.
# Sourced with kvm.sh; reads the `#gitvps key=value` directives of a guest's .args file.

# kvm_directive ARGS KEY: the value of `#gitvps ... KEY=value ...` in ARGS (empty when absent).
kvm_directive() {
    sed -n "s/^#gitvps .*[ ]$2=\\([^ ]*\\).*/\\1/p; s/^#gitvps $2=\\([^ ]*\\).*/\\1/p" "$1" | head -n 1
}

# _kvm_ifname VPS WHAT NAME: fails (1, with a message) unless NAME is a network interface name:
# 1 to 15 letters, digits and `_ . -`, not starting with `-`.
_kvm_ifname() {
    case $3 in
        '' | -* | . | .. | *[!A-Za-z0-9_.-]*) ;;
        *) [ "${#3}" -gt 15 ] || return 0 ;;
    esac
    echo "gitvps: $1: the $2 \`$3\` of its arguments file is not a network interface name" >&2
    return 1
}

# kvm_net_up VPS ARGS: bridge mode only (a `tap=` directive): the guest's filter and send rate
# (kvm_guard), then its tap on its bridge. Before QEMU starts: no frame of the guest passes
# unfiltered.
kvm_net_up() {
    _tap=$(kvm_directive "$2" tap)
    [ -n "$_tap" ] || return 0
    _br=$(kvm_directive "$2" bridge)
    _kvm_ifname "$1" tap "$_tap" || return 1
    _kvm_ifname "$1" bridge "$_br" || return 1
    command -v ip >/dev/null 2>&1 || { echo "gitvps: $1: ip (iproute2) is not installed on this node" >&2; return 69; }
    ip link show "$_br" >/dev/null 2>&1 || { echo "gitvps: $1: the bridge $_br does not exist on this node (create it, or set [kvm] bridge in the node file)" >&2; return 1; }
    kvm_guard "$1" "$2" "$_tap" || return $?
    if ! ip link show "$_tap" >/dev/null 2>&1; then
        ip tuntap add dev "$_tap" mode tap || { echo "gitvps: $1: cannot create the tap $_tap" >&2; return 1; }
    fi
    ip link set "$_tap" master "$_br" up || { echo "gitvps: $1: cannot put $_tap on $_br" >&2; return 1; }
}

# kvm_net_guard VPS ARGS: loads the guest's filter again (its rules were lost while it ran).
kvm_net_guard() {
    _tap=$(kvm_directive "$2" tap)
    [ -n "$_tap" ] || return 0
    _kvm_ifname "$1" tap "$_tap" || return 1
    kvm_guard "$1" "$2" "$_tap"
}

# kvm_observe_filters: the observe fragment `"filters":[taps with rules],`, or
# `"filters":null,` without nft: which bridged guests are behind their filter.
kvm_observe_filters() {
    if ! command -v nft >/dev/null 2>&1; then
        printf '"filters":null,'
        return 0
    fi
    printf '"filters":['
    if nft list chain bridge gitvps prerouting >/dev/null 2>&1; then
        nft list map bridge gitvps taps 2>/dev/null | grep -o '"gv-[A-Za-z0-9._-]*"' | sort -u | paste -sd, - | tr -d '\n'
    fi
    printf '],'
}

# kvm_net_down VPS ARGS: once QEMU is gone, removes the guest's tap, then its filter.
kvm_net_down() {
    _tap=$(kvm_directive "$2" tap)
    [ -n "$_tap" ] || return 0
    _kvm_ifname "$1" tap "$_tap" || return 1
    if ip link show "$_tap" >/dev/null 2>&1; then
        ip link del "$_tap" || { echo "gitvps: $1: cannot remove the tap $_tap" >&2; return 1; }
    fi
    kvm_unguard "$1" "$_tap"
}

# _kvm_tapname VPS TAP: fails (1, with a message) unless TAP is a gitvps tap name (`gv-` and
# lowercase letters, digits, `-`), which is also its chain's name in nftables.
_kvm_tapname() {
    case $2 in
        gv-*[!a-z0-9-]*) ;;
        gv-?*) _kvm_ifname "$1" tap "$2" && return 0 ;;
    esac
    echo "gitvps: $1: the tap \`$2\` is not named gv-...: gitvps does not filter it" >&2
    return 1
}

# kvm_guard VPS ARGS TAP: what the guest may send through TAP, and how fast, with nftables
# (Xen's vif ip= and rate=). The node's table `bridge gitvps` hooks bridge prerouting (every
# frame a bridge port receives, before it is forwarded or reaches the node): map `taps` sends
# the frames of each guest's tap to the chain named after the tap, and frames of a gv-* tap not
# in the map are dropped. The guest's chain passes only frames from its MAC (`mac=`), within its
# send rate (`rate=`, bytes per second: nft's limit, whose bucket holds one second of the rate
# plus a 128 KiB burst, two whole 64 KiB GSO frames), that are ARP naming its MAC and one of its
# IPv4 addresses (`ip4=a,b`), IPv4 from those, or IPv6 from its /64s (`ip6=`, written
# xxxx:xxxx:xxxx:xxxx::/64) or fe80::/64, and from `::` only duplicate address detection and
# MLD; no router advertisements or redirects, and neighbour advertisements only for its own
# addresses. Everything else (other ethertypes, VLAN tags, DHCP from 0.0.0.0) is counted and
# dropped. One nft transaction: re-running replaces the guest's chain atomically. Exit 69
# without nft: a bridged guest does not start unfiltered.
kvm_guard() {
    _kf_mac=$(kvm_directive "$2" mac)
    _kf_ip4=$(kvm_directive "$2" ip4)
    _kf_ip6=$(kvm_directive "$2" ip6)
    _kf_rate=$(kvm_directive "$2" rate)
    command -v nft >/dev/null 2>&1 || { echo "gitvps: $1: nft is not installed on this node (apt-get install nftables): a bridged guest only starts behind its anti-spoofing filter" >&2; return 69; }
    _kvm_tapname "$1" "$3" || return 1
    _kf_x='[0-9a-f][0-9a-f]'
    # shellcheck disable=SC2254 # the patterns are in variables on purpose
    case $_kf_mac in
        $_kf_x:$_kf_x:$_kf_x:$_kf_x:$_kf_x:$_kf_x) ;;
        *) echo "gitvps: $1: $2 has no valid mac= directive: not starting a bridged guest without its filter" >&2; return 1 ;;
    esac
    case $_kf_ip4 in
        *[!0-9.,]* | ,* | *, | *,,*) echo "gitvps: $1: the ip4= directive of $2 is not a list of IPv4 addresses" >&2; return 1 ;;
    esac
    case $_kf_rate in
        0* | *[!0-9]*) echo "gitvps: $1: the rate= directive of $2 is not a number of bytes per second" >&2; return 1 ;;
    esac
    # The 64-bit prefixes a neighbour advertisement's target must have (link-local and the /64s).
    _kf_na=0xfe80000000000000
    _kf_6=fe80::/64
    _kf_g=$_kf_x$_kf_x
    _kf_rest=$_kf_ip6
    while [ -n "$_kf_rest" ]; do
        _kf_p=${_kf_rest%%,*}
        case $_kf_rest in *,*) _kf_rest=${_kf_rest#*,} ;; *) _kf_rest= ;; esac
        # shellcheck disable=SC2254
        case $_kf_p in
            $_kf_g:$_kf_g:$_kf_g:$_kf_g::/64) ;;
            *) echo "gitvps: $1: the ip6= directive of $2 is not a list of /64s written xxxx:xxxx:xxxx:xxxx::/64" >&2; return 1 ;;
        esac
        _kf_h=${_kf_p%::/64}
        _kf_na="$_kf_na,0x$(printf '%s' "$_kf_h" | tr -d :)"
        _kf_6="$_kf_6,$_kf_p"
    done
    if ! _kf_out=$(_kvm_guard_rules "$3" "$_kf_mac" "$_kf_ip4" "$_kf_6" "$_kf_na" "$_kf_rate" | nft -f - 2>&1); then
        echo "gitvps: $1: nft refused the anti-spoofing rules of $3: $_kf_out" >&2
        return 1
    fi
}

# _kvm_guard_rules TAP MAC IP4S IP6NETS NA64S RATE: kvm_guard's nft script (values checked).
_kvm_guard_rules() {
    _kf_r="add rule bridge gitvps $1"
    echo "add table bridge gitvps"
    echo "add map bridge gitvps taps { type ifname : verdict; }"
    echo "add chain bridge gitvps prerouting { type filter hook prerouting priority -200; policy accept; }"
    echo "flush chain bridge gitvps prerouting"
    echo "add rule bridge gitvps prerouting iifname vmap @taps"
    echo "add rule bridge gitvps prerouting iifname \"gv-*\" counter drop"
    echo "add chain bridge gitvps $1"
    echo "flush chain bridge gitvps $1"
    echo "$_kf_r ether saddr != $2 counter drop"
    [ -z "$6" ] || echo "$_kf_r limit rate over $6 bytes/second burst 131072 bytes counter drop"
    if [ -n "$3" ]; then
        echo "$_kf_r arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether $2 arp saddr ip { $3 } accept"
        echo "$_kf_r ip saddr { $3 } accept"
    fi
    echo "$_kf_r icmpv6 type { nd-router-advert, nd-redirect } counter drop"
    echo "$_kf_r icmpv6 type nd-neighbor-advert @th,64,64 != { $5 } counter drop"
    echo "$_kf_r ip6 saddr { $4 } accept"
    echo "$_kf_r ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } accept"
    echo "$_kf_r counter drop"
    echo "add element bridge gitvps taps { \"$1\" : jump $1 }"
}

# kvm_unguard VPS TAP: removes TAP's entry in map `taps` and its chain (when there are none:
# nothing to do), in one transaction.
kvm_unguard() {
    command -v nft >/dev/null 2>&1 || return 0
    nft list chain bridge gitvps prerouting >/dev/null 2>&1 || return 0
    _kvm_tapname "$1" "$2" || return 1
    if ! _kf_out=$(printf '%s\n' \
        "add map bridge gitvps taps { type ifname : verdict; }" \
        "add chain bridge gitvps $2" \
        "flush chain bridge gitvps $2" \
        "add element bridge gitvps taps { \"$2\" : jump $2 }" \
        "delete element bridge gitvps taps { \"$2\" }" \
        "delete chain bridge gitvps $2" | nft -f - 2>&1); then
        echo "gitvps: $1: nft cannot remove the anti-spoofing rules of $2: $_kf_out" >&2
        return 1
    fi
}

# kvm_limits VPS RUN ARGS: moves the guest's QEMU into a cgroup of its own with the product's
# CPU weight and cap: cgroup v2 (gitvps.slice/VPS: cpu.weight, cpu.max) or the v1 cpu
# controller (gitvps/VPS: cpu.shares, cpu.cfs_quota_us). Where neither is writable it says so
# and goes on: limits are best effort, the guest runs either way.
kvm_limits() {
    _w=$(kvm_directive "$3" cpu-weight)
    _cap=$(kvm_directive "$3" cpu-cap)
    _pid=$(cat "$2/qemu.pid" 2>/dev/null) || return 0
    _cg=${KVM_CGROUP_ROOT:-/sys/fs/cgroup}
    if [ -f "$_cg/cgroup.controllers" ] && grep -qw cpu "$_cg/cgroup.controllers"; then
        _g="$_cg/gitvps.slice"
        if mkdir -p "$_g/$1" 2>/dev/null; then
            grep -qw cpu "$_cg/cgroup.subtree_control" 2>/dev/null || echo +cpu >"$_cg/cgroup.subtree_control" 2>/dev/null || :
            echo +cpu >"$_g/cgroup.subtree_control" 2>/dev/null || :
            [ -z "$_w" ] || echo "$_w" >"$_g/$1/cpu.weight" 2>/dev/null || :
            if [ "${_cap:-0}" -gt 0 ]; then
                echo "$((_cap * 1000)) 100000" >"$_g/$1/cpu.max" 2>/dev/null || :
            else
                echo "max 100000" >"$_g/$1/cpu.max" 2>/dev/null || :
            fi
            if echo "$_pid" >"$_g/$1/cgroup.procs" 2>/dev/null; then
                echo "gitvps: $1: CPU weight ${_w:-default}, cap ${_cap:-0}% (cgroup v2 $_g/$1)"
                return 0
            fi
        fi
    elif [ -f "$_cg/cpu/cpu.shares" ]; then
        _g="$_cg/cpu/gitvps"
        if mkdir -p "$_g/$1" 2>/dev/null; then
            # cgroup v2's weight (100 by default) on v1's shares (1024 by default).
            [ -z "$_w" ] || echo "$((_w * 1024 / 100))" >"$_g/$1/cpu.shares" 2>/dev/null || :
            echo 100000 >"$_g/$1/cpu.cfs_period_us" 2>/dev/null || :
            if [ "${_cap:-0}" -gt 0 ]; then
                echo "$((_cap * 1000))" >"$_g/$1/cpu.cfs_quota_us" 2>/dev/null || :
            else
                echo -1 >"$_g/$1/cpu.cfs_quota_us" 2>/dev/null || :
            fi
            if echo "$_pid" >"$_g/$1/cgroup.procs" 2>/dev/null; then
                echo "gitvps: $1: CPU weight ${_w:-default}, cap ${_cap:-0}% (cgroup v1 $_g/$1)"
                return 0
            fi
        fi
    fi
    echo "gitvps: $1: no writable cgroup with the cpu controller here: CPU weight and cap not applied"
}

# kvm_limits_clear VPS: removes the guest's cgroup once its QEMU is gone (an empty cgroup only).
kvm_limits_clear() {
    _cg=${KVM_CGROUP_ROOT:-/sys/fs/cgroup}
    rmdir "$_cg/gitvps.slice/$1" "$_cg/cpu/gitvps/$1" 2>/dev/null || :
}

# kvm_wait_login VPS RUN LOG SECS [OFFSET]: waits until the guest's console shows a login
# prompt (after byte OFFSET of the log: a reboot's). The guest is left running when it does not
# come (nothing is destroyed); the step fails with the console's last lines.
kvm_wait_login() {
    _n=0
    _off=$((${5:-0} + 1))
    while [ "$_n" -lt "$4" ]; do
        if tail -c "+$_off" "$3" 2>/dev/null | grep -q 'login:'; then
            echo "gitvps: $1: login prompt after ${_n}s"
            return 0
        fi
        if ! kvm_alive "$2"; then
            echo "gitvps: $1: QEMU exited before the guest reached its login prompt; the console's last lines:" >&2
            tail -n 15 "$3" 2>/dev/null | tr -d '\033\r' >&2
            return 1
        fi
        sleep 1
        _n=$((_n + 1))
    done
    echo "gitvps: $1: the guest did not reach its login prompt within $4 s (it is left running); the console's last lines:" >&2
    tail -n 15 "$3" 2>/dev/null | tr -d '\033\r' >&2
    return 1
}
