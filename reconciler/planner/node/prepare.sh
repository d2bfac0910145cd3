# shellcheck shell=sh
# gitvps node script: preparing a fresh Debian as a node (`gitvps node prepare`). The probe
# functions print one fact a line, `KIND STATE NAME` (NAME is the rest of the line); the fix
# functions change one thing each and print `changed KIND NAME`. planner::prepare appends the
# calls, every argument quoted; nothing here decides what to change.

# The system folders first, whoever logs in and however sudo sets PATH.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH

die() {
    printf 'gitvps-prepare: %s\n' "$1" >&2
    exit 1
}

# probe_access: who we are, and whether `sudo -n sh` works (the one command the reconciler runs
# through sudo, and the one the rule allows), as the login user.
probe_access() {
    printf 'uid %s -\n' "$(id -u)"
    if command -v sudo >/dev/null 2>&1 && sudo -n sh -c true 2>/dev/null; then
        echo "sudo yes -"
    else
        echo "sudo no -"
    fi
}

# probe_os: ID and VERSION_ID of /etc/os-release, in a subshell (its variables stay there).
probe_os() {
    if [ -r /etc/os-release ]; then
        (
            # shellcheck disable=SC1091 # the node's own file
            . /etc/os-release
            printf 'os %s %s\n' "${ID:-unknown}" "${VERSION_ID:-unknown}"
        )
    else
        echo "os missing /etc/os-release"
    fi
}

# probe_pkg PKG...: installed or missing, from dpkg's database.
probe_pkg() {
    for _p in "$@"; do
        case $(dpkg-query -W -f='${db:Status-Abbrev}' "$_p" 2>/dev/null) in
        ii*) printf 'pkg installed %s\n' "$_p" ;;
        *) printf 'pkg missing %s\n' "$_p" ;;
        esac
    done
}

# probe_cmd CMD...: found on PATH or not.
probe_cmd() {
    for _c in "$@"; do
        if command -v "$_c" >/dev/null 2>&1; then
            printf 'cmd yes %s\n' "$_c"
        else
            printf 'cmd no %s\n' "$_c"
        fi
    done
}

# probe_link NAME: a bridge, another kind of interface, or none.
probe_link() {
    if [ -d "/sys/class/net/$1/bridge" ]; then
        printf 'link bridge %s\n' "$1"
    elif [ -e "/sys/class/net/$1" ]; then
        printf 'link other %s\n' "$1"
    else
        printf 'link missing %s\n' "$1"
    fi
}

# probe_vg NAME: a volume group, something else under /dev/NAME, or none.
probe_vg() {
    if command -v vgs >/dev/null 2>&1 && vgs "$1" >/dev/null 2>&1; then
        printf 'vg vg %s\n' "$1"
    elif [ -e "/dev/$1" ]; then
        printf 'vg other %s\n' "$1"
    else
        printf 'vg missing %s\n' "$1"
    fi
}

# probe_dir PATH: a folder, something else, or nothing.
probe_dir() {
    if [ -d "$1" ]; then
        printf 'dir dir %s\n' "$1"
    elif [ -e "$1" ] || [ -L "$1" ]; then
        printf 'dir other %s\n' "$1"
    else
        printf 'dir missing %s\n' "$1"
    fi
}

# probe_user USER KEY: the account, and whether KEY is in its authorized_keys.
probe_user() {
    if ! id -u "$1" >/dev/null 2>&1; then
        printf 'user missing %s\n' "$1"
        printf 'authkey no %s\n' "$1"
        return 0
    fi
    printf 'user yes %s\n' "$1"
    _home=$(getent passwd "$1" | cut -d: -f6)
    if [ -n "$_home" ] && [ -f "$_home/.ssh/authorized_keys" ] &&
        grep -qF -- "$2" "$_home/.ssh/authorized_keys"; then
        printf 'authkey yes %s\n' "$1"
    else
        printf 'authkey no %s\n' "$1"
    fi
}

# probe_file PATH: the sha256 of its content, or missing.
probe_file() {
    if [ -f "$1" ]; then
        printf 'file %s %s\n' "$(sha256sum <"$1" | cut -d' ' -f1)" "$1"
    else
        printf 'file missing %s\n' "$1"
    fi
}

# fix_packages PKG...: installs them from the mirror the node's own apt sources name.
fix_packages() {
    DEBIAN_FRONTEND=noninteractive
    export DEBIAN_FRONTEND
    apt-get update -qq >&2 || die "apt-get update failed (check the mirror in the node's /etc/apt/sources.list*)"
    apt-get install -y -qq --no-install-recommends "$@" >&2 || die "apt-get install $* failed"
    for _p in "$@"; do printf 'changed pkg %s\n' "$_p"; done
}

# fix_bridge NAME: creates the bridge and sets it up (the uplink and address are the operator's).
fix_bridge() {
    ip link add "$1" type bridge || die "cannot create the bridge $1"
    ip link set "$1" up || die "cannot set the bridge $1 up"
    printf 'changed link %s\n' "$1"
}

# fix_dir PATH: creates the image folder (root only).
fix_dir() {
    mkdir -p "$1" || die "cannot create $1"
    chmod 0700 "$1" || die "cannot chmod $1"
    printf 'changed dir %s\n' "$1"
}

# fix_user USER: creates the login account with a home and sh; its password `*` matches none
# and, unlike useradd's locked `!`, lets sshd accept its key with or without PAM.
fix_user() {
    useradd --create-home --shell /bin/sh --password '*' "$1" || die "useradd $1 failed"
    printf 'changed user %s\n' "$1"
}

# fix_authkey USER KEY: appends KEY to the user's authorized_keys.
fix_authkey() {
    _home=$(getent passwd "$1" | cut -d: -f6)
    [ -n "$_home" ] || die "$1 has no home folder"
    mkdir -p "$_home/.ssh" || die "cannot create $_home/.ssh"
    printf '%s\n' "$2" >>"$_home/.ssh/authorized_keys" || die "cannot write $_home/.ssh/authorized_keys"
    chmod 0700 "$_home/.ssh" && chmod 0600 "$_home/.ssh/authorized_keys" &&
        chown -R "$1:" "$_home/.ssh" || die "cannot set the owner of $_home/.ssh"
    printf 'changed authkey %s\n' "$1"
}

# fix_sudoers PATH CONTENT: writes the rule beside PATH (a name with a dot, which sudo skips),
# checks it with visudo, moves it in place, then checks the whole configuration again.
fix_sudoers() {
    _dir=${1%/*}
    mkdir -p "$_dir" || die "cannot create $_dir"
    _tmp=$(mktemp "$_dir/.gitvps.XXXXXX") || die "cannot write in $_dir"
    printf '%s' "$2" >"$_tmp" && chmod 0440 "$_tmp" || {
        rm -f "$_tmp"
        die "cannot write $_tmp"
    }
    visudo -c -q -f "$_tmp" >&2 || {
        rm -f "$_tmp"
        die "visudo refuses the rule: nothing changed"
    }
    mv -f "$_tmp" "$1" || die "cannot move the rule to $1"
    visudo -c -q >&2 || {
        rm -f "$1"
        die "visudo refuses the configuration with $1: the rule is removed again"
    }
    printf 'changed file %s\n' "$1"
}
