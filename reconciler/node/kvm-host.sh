# gitvps KVM host plumbing: the tap and bridge of a guest, and its CPU share in a cgroup.
# Sourced with kvm.sh; reads the `#gitvps key=value` directives of a guest's .args file.

# kvm_directive ARGS KEY: the value of `#gitvps ... KEY=value ...` in ARGS (empty when absent).
kvm_directive() {
    sed -n "s/^#gitvps .*[ ]$2=\\([^ ]*\\).*/\\1/p; s/^#gitvps $2=\\([^ ]*\\).*/\\1/p" "$1" | head -n 1
}

# kvm_net_up VPS ARGS: creates the guest's tap and puts it on its bridge (bridge mode only).
kvm_net_up() {
    _tap=$(kvm_directive "$2" tap)
    [ -n "$_tap" ] || return 0
    _br=$(kvm_directive "$2" bridge)
    command -v ip >/dev/null 2>&1 || { echo "gitvps: $1: ip (iproute2) is not installed on this node" >&2; return 69; }
    ip link show "$_br" >/dev/null 2>&1 || { echo "gitvps: $1: the bridge $_br does not exist on this node (create it, or set [kvm] bridge in the node file)" >&2; return 1; }
    if ! ip link show "$_tap" >/dev/null 2>&1; then
        ip tuntap add dev "$_tap" mode tap || { echo "gitvps: $1: cannot create the tap $_tap" >&2; return 1; }
    fi
    ip link set "$_tap" master "$_br" up || { echo "gitvps: $1: cannot put $_tap on $_br" >&2; return 1; }
}

# kvm_net_down VPS ARGS: removes the guest's tap once QEMU is gone.
kvm_net_down() {
    _tap=$(kvm_directive "$2" tap)
    [ -n "$_tap" ] || return 0
    if ip link show "$_tap" >/dev/null 2>&1; then
        ip link del "$_tap" || { echo "gitvps: $1: cannot remove the tap $_tap" >&2; return 1; }
    fi
}

# kvm_limits VPS RUN ARGS: moves the guest's QEMU into a cgroup v2 group with its CPU weight and
# cap, where the node has a writable cgroup v2 hierarchy; elsewhere it says so and goes on.
kvm_limits() {
    _w=$(kvm_directive "$3" cpu-weight)
    _cap=$(kvm_directive "$3" cpu-cap)
    _cg=/sys/fs/cgroup
    if [ ! -f "$_cg/cgroup.controllers" ] || ! grep -qw cpu "$_cg/cgroup.controllers" || [ ! -w "$_cg" ]; then
        echo "gitvps: $1: no writable cgroup v2 with the cpu controller here: CPU weight and cap not applied"
        return 0
    fi
    _pid=$(cat "$2/qemu.pid" 2>/dev/null) || return 0
    _g="$_cg/gitvps.slice"
    mkdir -p "$_g" 2>/dev/null || { echo "gitvps: $1: cannot make $_g: CPU limits not applied"; return 0; }
    grep -qw cpu "$_g/cgroup.subtree_control" 2>/dev/null || echo +cpu >"$_cg/cgroup.subtree_control" 2>/dev/null || :
    echo +cpu >"$_g/cgroup.subtree_control" 2>/dev/null || :
    mkdir -p "$_g/$1" 2>/dev/null || { echo "gitvps: $1: cannot make its cgroup: CPU limits not applied"; return 0; }
    [ -z "$_w" ] || echo "$_w" >"$_g/$1/cpu.weight" 2>/dev/null || :
    if [ -n "$_cap" ] && [ "$_cap" -gt 0 ]; then
        echo "$((_cap * 1000)) 100000" >"$_g/$1/cpu.max" 2>/dev/null || :
    else
        echo "max 100000" >"$_g/$1/cpu.max" 2>/dev/null || :
    fi
    echo "$_pid" >"$_g/$1/cgroup.procs" 2>/dev/null || echo "gitvps: $1: cannot move QEMU into $_g/$1: CPU limits not applied"
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
