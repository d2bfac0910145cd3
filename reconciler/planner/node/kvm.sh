# gitvps KVM node library: POSIX sh functions that start, stop, reset and observe QEMU guests.
# Functions only (no top-level effects): concatenated in front of the steps and observe scripts.
#
# Needs qemu-system-x86_64, socat (QMP), debugfs (e2fsprogs) and coreutils. Errors go to stderr
# as `gitvps: ...` lines. Exit codes: 0 ok, 1 failure, 3 QMP error reply, 4 QMP does not answer,
# 69 a tool is missing. Internal names start with _kvm and each function's variables with its
# own prefix (_kq_, _ks_, ...) so that they never clobber the caller's.

_kvm_err() {
  printf 'gitvps: %s\n' "$*" >&2
}

# Fails with 69 and an install hint when the command $1 (package $2) is missing.
_kvm_need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  _kvm_err "${3:+$3: }$1 is not installed on this node (apt-get install $2)"
  return 69
}

# A JSON string's content from arbitrary text; plain words (the usual case) without a fork.
_kvm_json() {
  case $1 in
    *[!A-Za-z0-9._:/+=@-]*)
      printf '%s' "$1" | tr '\n\t\r' '   ' | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
      ;;
    *) printf '%s' "$1" ;;
  esac
}

# True when process $1 is the QEMU whose pidfile is $2/qemu.pid. The arguments in
# /proc/PID/cmdline are NUL-separated; read drops the NULs, the pidfile path still shows. A
# zombie has an empty cmdline, a reused pid another one: neither counts.
_kvm_running() {
  _kn_cmd=
  IFS= read -r _kn_cmd <"/proc/$1/cmdline" 2>/dev/null
  # An empty read is a zombie, or a process the kernel could not read at that instant (its
  # memory map changing): ask once more before calling it gone.
  [ -n "$_kn_cmd" ] || IFS= read -r _kn_cmd <"/proc/$1/cmdline" 2>/dev/null
  case $_kn_cmd in
    *"$2/qemu.pid"*) return 0 ;;
  esac
  return 1
}

# Waits up to $3 seconds for process $1 (the QEMU of run folder $2) to be gone.
_kvm_gone() {
  _kg_n=$(($3 * 5))
  while _kvm_running "$1" "$2"; do
    [ "$_kg_n" -gt 0 ] || return 1
    _kg_n=$((_kg_n - 1))
    sleep 0.2
  done
  return 0
}

# Removes what a QEMU that is gone leaves behind (it removes them itself unless killed).
_kvm_clean() {
  rm -f "$1/qemu.pid" "$1/qmp.sock" "$1/console.sock"
}

# Prints the last lines of QEMU's own output ($2) as error lines of VPS $1.
_kvm_tail() {
  [ -s "$2" ] || return 0
  tail -n 20 "$2" | while IFS= read -r _kl_l || [ -n "$_kl_l" ]; do
    _kvm_err "$1: $_kl_l"
  done
}

# kvm_qmp SOCK COMMAND_JSON: one QMP command. Prints the {"return": ...} line. Returns 0, 3 on an
# error reply (its desc on stderr), 4 when the socket cannot be connected or does not answer
# within KVM_QMP_TIMEOUT seconds (default 5), 69 without socat.
#
# socat connects and runs the dialog in a child sh whose stdin/stdout are the socket: greeting,
# qmp_capabilities, its return, the command, then lines up to the first return or error (event
# lines, such as the POWERDOWN that comes before system_powerdown's return, are skipped). The
# child hands the reply back on fd 3 behind a marker; socat's own errors come on stderr. The
# dialog and the command reach the child through the environment: socat's address syntax gives
# meaning to quotes, commas and colons, so the SYSTEM string holds none of them. The socket is
# connected by its name from its folder (no socat syntax from the path, no 108-byte limit).
kvm_qmp() {
  _kvm_need socat socat || return 69
  _kq_t=${KVM_QMP_TIMEOUT:-5}
  case $_kq_t in '' | *[!0-9]* | 0) _kq_t=5 ;; esac
  case $1 in
    */*) _kq_dir=${1%/*} _kq_name=${1##*/} ;;
    *) _kq_dir=. _kq_name=$1 ;;
  esac
  [ -n "$_kq_dir" ] || _kq_dir=/
  case $_kq_name in
    '' | *[!A-Za-z0-9._-]*)
      _kvm_err "QMP socket name $1 has characters socat cannot take"
      return 1
      ;;
  esac
  if [ ! -S "$1" ]; then
    _kvm_err "QMP socket $1 does not answer: no such socket"
    return 4
  fi
  # shellcheck disable=SC2016 # expanded by the child sh
  _kq_dialog='IFS= read -r _l || exit 0
case $_l in \{\"QMP\"*) ;; *) exit 0 ;; esac
printf "%s\n" "{\"execute\":\"qmp_capabilities\"}"
_ok=
while IFS= read -r _l; do
  case $_l in
    \{\"return\"*) _ok=1; break ;;
    \{\"error\"*) printf "@@qmp %s\n" "$_l" >&3; exit 0 ;;
  esac
done
[ -n "$_ok" ] || exit 0
printf "%s\n" "$KVM_QMP_CMD"
while IFS= read -r _l; do
  case $_l in \{\"return\"*|\{\"error\"*) printf "@@qmp %s\n" "$_l" >&3; exit 0 ;; esac
done'
  # shellcheck disable=SC2016 # expanded by the child sh
  _kq_out=$(cd "$_kq_dir" 2>&1 &&
    KVM_QMP_CMD=$2 KVM_QMP_DIALOG=$_kq_dialog timeout -s KILL $((_kq_t * 2 + 1)) \
      socat -T "$_kq_t" "UNIX-CONNECT:$_kq_name,connect-timeout=$_kq_t" \
      'SYSTEM:set -f;IFS=;eval $KVM_QMP_DIALOG' </dev/null 2>&1 3>&1 >/dev/null)
  case $_kq_out in
    *'@@qmp '*)
      _kq_r=${_kq_out#*@@qmp }
      _kq_r=${_kq_r%%
*}
      # QMP ends its lines with CR LF.
      case $_kq_r in *'}') ;; *) _kq_r=${_kq_r%?} ;; esac
      case $_kq_r in
        '{"return"'*)
          printf '%s\n' "$_kq_r"
          return 0
          ;;
      esac
      _kq_d=${_kq_r#*\"desc\": \"}
      _kq_d=${_kq_d%%\"\}*}
      _kvm_err "QMP $2 failed on $1: $_kq_d"
      return 3
      ;;
  esac
  # socat's errors look like `2026/01/02 03:04:05 socat[123] E connect(...): Connection refused`.
  _kq_d=
  case $_kq_out in
    *'] E '*)
      _kq_d=${_kq_out#*\] E }
      _kq_d=": ${_kq_d%%
*}"
      ;;
  esac
  _kvm_err "QMP socket $1 does not answer within ${_kq_t}s$_kq_d"
  return 4
}

# kvm_alive RUN: true when RUN/qemu.pid names a live QEMU started with that pidfile. Sets
# _kvm_pid.
kvm_alive() {
  _kvm_pid=
  _ka_run=${1%/}
  [ -f "$_ka_run/qemu.pid" ] || return 1
  IFS= read -r _kvm_pid <"$_ka_run/qemu.pid" 2>/dev/null
  case $_kvm_pid in '' | *[!0-9]*) return 1 ;; esac
  _kvm_running "$_kvm_pid" "$_ka_run"
}

# debugfs request $1 on disk $2, read-only, without reading the bitmaps (-c) and without a pager.
_kvm_debugfs() {
  DEBUGFS_PAGER=__none__ debugfs -c -R "$1" "$2"
}

# Sets _kvm_path to the regular file that guest path $2 leads to on the ext2/3/4 filesystem of
# disk $1, following symbolic links as the guest would (debugfs's cat and dump do not follow a
# final link). 1 when there is no such file; 2 (with a message) for a link that is unsafe to
# hand to debugfs or a loop. Guest paths are guest-controlled: only plain characters go into a
# debugfs command.
_kvm_resolve() {
  _kr_p=$2
  _kr_n=0
  while [ "$_kr_n" -lt 16 ]; do
    case $_kr_p in
      *[!A-Za-z0-9._+~/-]*)
        _kvm_err "disk $1: the guest's $2 leads to a path with unexpected characters"
        return 2
        ;;
    esac
    _kr_out=$(_kvm_debugfs "stat $_kr_p" "$1" 2>&1)
    case $_kr_out in
      *'Type: regular'*)
        _kvm_path=$_kr_p
        _kvm_size=${_kr_out#*Size: }
        _kvm_size=${_kvm_size%%[!0-9]*}
        return 0
        ;;
      *'Type: symlink'*'Fast link dest: "'*)
        _kr_t=${_kr_out#*Fast link dest: \"}
        _kr_t=${_kr_t%%
*}
        _kr_t=${_kr_t%\"}
        ;;
      *'Type: symlink'*)
        # A long target is not in the inode: it is the link's data.
        _kr_t=$(_kvm_debugfs "cat $_kr_p" "$1" 2>/dev/null)
        ;;
      *) return 1 ;;
    esac
    case $_kr_t in
      '') return 1 ;;
      /*) _kr_p=$_kr_t ;;
      *) _kr_p=${_kr_p%/*}/$_kr_t ;;
    esac
    _kr_n=$((_kr_n + 1))
  done
  _kvm_err "disk $1: too many symbolic links from the guest's $2"
  return 2
}

# Copies guest file $2 (_kvm_size bytes) of disk $1 to $3, checking the size.
_kvm_extract() {
  _kvm_debugfs "cat $2" "$1" >"$3.tmp" 2>/dev/null
  _kx_s=$(wc -c <"$3.tmp") || return 1
  if [ "$_kx_s" != "$_kvm_size" ]; then
    rm -f "$3.tmp"
    _kvm_err "disk $1: read $_kx_s of the $_kvm_size bytes of the guest's $2"
    return 1
  fi
  mv -f "$3.tmp" "$3"
}

# kvm_kernel DISK RUN: copies the guest's kernel and initrd from the ext2/3/4 filesystem on DISK
# (the whole disk, as root=/dev/nvme0n1) to RUN/vmlinuz and RUN/initrd.img, like pvgrub would:
# /vmlinuz, /boot/vmlinuz (following links), else the newest /boot/vmlinuz-VERSION (version
# order). The initrd is /boot/initrd.img-VERSION of that kernel, or /initrd.img, /boot/initrd.img
# for an unversioned one. Without one RUN/initrd.img is an empty file: QEMU takes an empty
# -initrd and the kernel boots without an initramfs (measured with Debian 12's cloud kernel).
# Raw disks only (debugfs cannot read qcow2): a qcow2 disk's kernel is stored by
# kvm_store_kernel when its OS is written.
kvm_kernel() {
  _kk_disk=$1
  _kk_run=${2%/}
  _kvm_need debugfs e2fsprogs || return 69
  if [ ! -e "$_kk_disk" ]; then
    _kvm_err "disk $_kk_disk does not exist"
    return 1
  fi
  _kk_out=$(_kvm_debugfs 'stat /' "$_kk_disk" 2>&1)
  case $_kk_out in
    *'Type: directory'*) ;;
    *)
      _kk_out=$(printf '%s\n' "$_kk_out" | grep -v -e '^debugfs [0-9]' -e 'catastrophic mode' | head -n 1)
      _kvm_err "disk $_kk_disk: no ext2/3/4 filesystem to take the guest kernel from: $_kk_out"
      return 1
      ;;
  esac
  _kk_k=
  for _kk_p in /vmlinuz /boot/vmlinuz; do
    _kvm_resolve "$_kk_disk" "$_kk_p"
    case $? in
      0) _kk_k=$_kvm_path && break ;;
      2) return 1 ;;
    esac
  done
  if [ -z "$_kk_k" ]; then
    # `ls -p` lines: /INODE/MODE/UID/GID/NAME/SIZE/
    _kk_v=$(_kvm_debugfs 'ls -p /boot' "$_kk_disk" 2>/dev/null |
      sed -n 's|^/[0-9]*/[0-7]*/[0-9]*/[0-9]*/vmlinuz-\([0-9][A-Za-z0-9._+~-]*\)/.*|\1|p' |
      sort -V | tail -n 1)
    if [ -n "$_kk_v" ]; then
      _kvm_resolve "$_kk_disk" "/boot/vmlinuz-$_kk_v"
      case $? in
        0) _kk_k=$_kvm_path ;;
        2) return 1 ;;
      esac
    fi
  fi
  if [ -z "$_kk_k" ]; then
    _kvm_err "disk $_kk_disk: no guest kernel (none of /vmlinuz, /boot/vmlinuz, /boot/vmlinuz-*)"
    return 1
  fi
  mkdir -p "$_kk_run" || return 1
  _kvm_extract "$_kk_disk" "$_kk_k" "$_kk_run/vmlinuz" || return 1
  case ${_kk_k##*/} in
    vmlinuz-?*) set -- "${_kk_k%/*}/initrd.img-${_kk_k##*/vmlinuz-}" ;;
    *) set -- /initrd.img /boot/initrd.img ;;
  esac
  for _kk_p in "$@"; do
    _kvm_resolve "$_kk_disk" "$_kk_p"
    case $? in
      0)
        _kvm_extract "$_kk_disk" "$_kvm_path" "$_kk_run/initrd.img"
        return
        ;;
      2) return 1 ;;
    esac
  done
  : >"$_kk_run/initrd.img"
}

# kvm_store_kernel RAW RUN: takes the guest kernel and initrd from the raw image RAW as
# kvm_kernel does and stores them as RUN/boot-vmlinuz and RUN/boot-initrd.img: what a guest on
# a qcow2 disk (which debugfs cannot read) boots. The install, reinstall and fsck steps call it
# on the raw copy they write the image from.
kvm_store_kernel() {
  _kb_run=${2%/}
  _kb_tmp=$_kb_run/.boot-tmp
  rm -rf "$_kb_tmp"
  if kvm_kernel "$1" "$_kb_tmp" &&
    mv -f "$_kb_tmp/vmlinuz" "$_kb_run/boot-vmlinuz" &&
    mv -f "$_kb_tmp/initrd.img" "$_kb_run/boot-initrd.img"; then
    rm -rf "$_kb_tmp"
    return 0
  fi
  rm -rf "$_kb_tmp"
  return 1
}

# _kvm_boot_stored VPS RUN IMAGE: copies the kernel and initrd kvm_store_kernel stored to
# RUN/vmlinuz and RUN/initrd.img, for a guest on the qcow2 disk IMAGE. None stored (a VPS moved
# here from another node, whose run folder stayed there, or a run folder lost): they are taken
# from the image first, through a sparse raw copy beside it (IMAGE.raw-tmp, removed after).
_kvm_boot_stored() {
  if [ ! -f "$2/boot-vmlinuz" ] || [ ! -f "$2/boot-initrd.img" ]; then
    _kvm_need qemu-img qemu-utils "$1" || return 69
    rm -f "$3.raw-tmp"
    if ! qemu-img convert -q -f qcow2 -O raw "$3" "$3.raw-tmp"; then
      rm -f "$3.raw-tmp"
      _kvm_err "$1: no kernel stored for this qcow2 disk ($2/boot-vmlinuz), and $3 cannot be read to take it from: reinstall the VPS"
      return 1
    fi
    kvm_store_kernel "$3.raw-tmp" "$2"
    _kbs_rc=$?
    rm -f "$3.raw-tmp"
    if [ "$_kbs_rc" -ne 0 ]; then
      _kvm_err "$1: no kernel stored for this qcow2 disk ($2/boot-vmlinuz), and none found on it: reinstall the VPS"
      return 1
    fi
    echo "gitvps: $1: the guest kernel was taken from its qcow2 disk (none was stored in $2)" >&2
  fi
  cp -f "$2/boot-vmlinuz" "$2/vmlinuz.tmp" && mv -f "$2/vmlinuz.tmp" "$2/vmlinuz" &&
    cp -f "$2/boot-initrd.img" "$2/initrd.img.tmp" && mv -f "$2/initrd.img.tmp" "$2/initrd.img" &&
    return 0
  rm -f "$2/vmlinuz.tmp" "$2/initrd.img.tmp"
  _kvm_err "$1: cannot copy the stored kernel in $2"
  return 1
}

# disk_in_use DISK: prints `PID (comm)` for every process holding DISK open (symlinks resolved,
# as /dev/VG/LV -> /dev/dm-N); true when there is any.
disk_in_use() {
  _du_t=$(readlink -f -- "$1" 2>/dev/null) || _du_t=$1
  [ -n "$_du_t" ] || _du_t=$1
  # find -lname takes a pattern: escape the pattern characters of the path.
  case $_du_t in
    *[][*?\\]*) _du_t=$(printf '%s\n' "$_du_t" | sed 's/[][*?\\]/\\&/g') ;;
  esac
  find /proc/[0-9]*/fd -lname "$_du_t" 2>/dev/null | {
    _du_last=
    while IFS= read -r _du_f; do
      _du_p=${_du_f#/proc/}
      _du_p=${_du_p%%/*}
      [ "$_du_p" != "$_du_last" ] || continue
      _du_last=$_du_p
      _du_c=
      IFS= read -r _du_c <"/proc/$_du_p/comm" 2>/dev/null
      printf '%s (%s)\n' "$_du_p" "$_du_c"
    done
    [ -n "$_du_last" ]
  }
}

# Sets _kvm_val to the QEMU option value at the start of $1 (up to a lone comma; `,,` is an
# escaped comma), and _kvm_rest to what follows that comma.
_kvm_optval() {
  _kvm_val=
  _kvm_rest=
  _kv_v=$1
  while :; do
    case $_kv_v in
      *,*)
        _kvm_val=$_kvm_val${_kv_v%%,*}
        _kv_v=${_kv_v#*,}
        case $_kv_v in
          ,*)
            _kvm_val=$_kvm_val,
            _kv_v=${_kv_v#,}
            ;;
          *)
            _kvm_rest=$_kv_v
            return 0
            ;;
        esac
        ;;
      *)
        _kvm_val=$_kvm_val$_kv_v
        return 0
        ;;
    esac
  done
}

# Sets _kvm_fmt to the format= of the -drive options $1 (empty when it names none).
_kvm_drive_format() {
  _kvm_fmt=
  _kf_v=$1
  while [ -n "$_kf_v" ]; do
    _kvm_optval "$_kf_v"
    _kf_v=$_kvm_rest
    case $_kvm_val in format=*) _kvm_fmt=${_kvm_val#format=} ;; esac
  done
}

# kvm_start VPS ARGS RUN LOG: starts the guest from ARGS (QEMU arguments, one a line, with
# -daemonize and -pidfile RUN/qemu.pid) and waits until its QMP answers. Refuses a guest that
# is running or a disk in use; takes the guest's kernel from its first disk when ARGS boot
# RUN/vmlinuz (from a qcow2 first disk, which debugfs cannot read: the kernel kvm_store_kernel
# stored when its OS was written). QEMU's messages go to RUN/qemu.log (its tail is shown on
# failure): stderr until QEMU daemonizes, then `-D RUN/qemu.log`, which kvm_start adds (unless
# ARGS has a -D): a daemonized QEMU reopens its -D file (truncating it) as its stderr, else uses
# /dev/null.
kvm_start() {
  _ks_vps=$1
  _ks_args=$2
  _ks_run=${3%/}
  _ks_log=$4
  if kvm_alive "$_ks_run"; then
    _kvm_err "$_ks_vps: already running (pid $_kvm_pid)"
    return 1
  fi
  _kvm_need qemu-system-x86_64 qemu-system-x86 "$_ks_vps" || return 69
  _kvm_need socat socat "$_ks_vps" || return 69
  if [ ! -f "$_ks_args" ]; then
    _kvm_err "$_ks_vps: no QEMU arguments file $_ks_args"
    return 1
  fi
  set --
  _ks_prev=
  _ks_disks=
  _ks_disk=
  _ks_fmt=
  _ks_kernel=
  _ks_daemon=
  _ks_pidfile=
  _ks_debug=
  while IFS= read -r _ks_a || [ -n "$_ks_a" ]; do
    case $_ks_a in
      '' | '#'*)
        _ks_a=
        continue
        ;;
    esac
    set -- "$@" "$_ks_a"
    case $_ks_prev in
      -drive)
        _ks_v=
        case $_ks_a in
          file=*) _ks_v=${_ks_a#file=} ;;
          *,file=*) _ks_v=${_ks_a#*,file=} ;;
        esac
        if [ -n "$_ks_v" ]; then
          _kvm_optval "$_ks_v"
          _ks_disks="$_ks_disks$_kvm_val
"
          if [ -z "$_ks_disk" ]; then
            _ks_disk=$_kvm_val
            _kvm_drive_format "$_ks_a"
            _ks_fmt=$_kvm_fmt
          fi
        fi
        ;;
      -kernel) [ "$_ks_a" != "$_ks_run/vmlinuz" ] || _ks_kernel=1 ;;
      -pidfile) [ "$_ks_a" != "$_ks_run/qemu.pid" ] || _ks_pidfile=1 ;;
    esac
    case $_ks_a in
      -daemonize) _ks_daemon=1 ;;
      -D) _ks_debug=1 ;;
    esac
    _ks_prev=$_ks_a
    _ks_a=
  done <"$_ks_args"
  if [ -z "$_ks_daemon" ] || [ -z "$_ks_pidfile" ]; then
    _kvm_err "$_ks_vps: $_ks_args lacks -daemonize or -pidfile $_ks_run/qemu.pid"
    return 1
  fi
  # Each disk: it must exist and no process (another QEMU, a mount helper, dd) may hold it.
  while IFS= read -r _ks_f; do
    [ -n "$_ks_f" ] || continue
    if [ ! -e "$_ks_f" ]; then
      _kvm_err "$_ks_vps: disk $_ks_f does not exist"
      return 1
    fi
    if _ks_users=$(disk_in_use "$_ks_f"); then
      _kvm_err "$_ks_vps: disk $_ks_f is in use by $(printf '%s' "$_ks_users" | tr '\n' ' ')"
      return 1
    fi
  done <<EOF
$_ks_disks
EOF
  mkdir -p "$_ks_run" || return 1
  _kvm_clean "$_ks_run"
  if [ -n "$_ks_kernel" ]; then
    if [ -z "$_ks_disk" ]; then
      _kvm_err "$_ks_vps: $_ks_args boots the guest's kernel but has no -drive file="
      return 1
    fi
    if [ "$_ks_fmt" = qcow2 ]; then
      _kvm_boot_stored "$_ks_vps" "$_ks_run" "$_ks_disk" || return 1
    else
      kvm_kernel "$_ks_disk" "$_ks_run" || {
        _ks_rc=$?
        _kvm_err "$_ks_vps: cannot take the guest kernel from disk $_ks_disk"
        return "$_ks_rc"
      }
    fi
  fi
  cp -f "$_ks_args" "$_ks_run/cmdline" || return 1
  case $_ks_log in */?*) mkdir -p "${_ks_log%/*}/" ;; esac
  if ! { : >"$_ks_log" && chmod 600 "$_ks_log"; }; then
    _kvm_err "$_ks_vps: cannot create the console log $_ks_log"
    return 1
  fi
  [ -n "$_ks_debug" ] || set -- "$@" -D "$_ks_run/qemu.log"
  # With -daemonize QEMU returns once the guest is set up (or has failed). The daemon keeps
  # every descriptor it inherits but 0-2: close the script's own, or it would hold them open.
  : >"$_ks_run/qemu.log"
  qemu-system-x86_64 "$@" </dev/null >/dev/null 2>>"$_ks_run/qemu.log" \
    3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
  _ks_rc=$?
  if [ "$_ks_rc" -ne 0 ]; then
    _kvm_err "$_ks_vps: qemu-system-x86_64 failed to start (exit $_ks_rc):"
    _kvm_tail "$_ks_vps" "$_ks_run/qemu.log"
    return 1
  fi
  _ks_n=25
  while :; do
    kvm_qmp "$_ks_run/qmp.sock" '{"execute":"query-status"}' >/dev/null 2>&1 && return 0
    if ! kvm_alive "$_ks_run"; then
      _kvm_err "$_ks_vps: QEMU exited right after starting:"
      _kvm_tail "$_ks_vps" "$_ks_run/qemu.log"
      return 1
    fi
    [ "$_ks_n" -gt 0 ] || break
    _ks_n=$((_ks_n - 1))
    sleep 0.2
  done
  _kvm_err "$_ks_vps: QEMU (pid $_kvm_pid) started but its QMP socket $_ks_run/qmp.sock does not answer"
  return 4
}

# Ends QEMU $3 of VPS $1 (run folder $2): `quit` via QMP when $4 is 1, then SIGTERM when $5 is 1,
# then SIGKILL, and cleans up.
_kvm_end() {
  if [ "$4" = 1 ] && kvm_qmp "$2/qmp.sock" '{"execute":"quit"}' >/dev/null; then
    if _kvm_gone "$3" "$2" 10; then
      _kvm_clean "$2"
      return 0
    fi
    _kvm_err "$1: QEMU (pid $3) did not exit after quit"
  fi
  if [ "$5" = 1 ]; then
    kill -TERM "$3" 2>/dev/null
    if _kvm_gone "$3" "$2" 5; then
      _kvm_clean "$2"
      return 0
    fi
    _kvm_err "$1: QEMU (pid $3) did not exit on SIGTERM; killing it"
  fi
  kill -KILL "$3" 2>/dev/null
  if _kvm_gone "$3" "$2" 5; then
    _kvm_clean "$2"
    return 0
  fi
  _kvm_err "$1: QEMU (pid $3) did not exit on SIGKILL"
  return 1
}

# kvm_stop VPS RUN TIMEOUT: system_powerdown, up to TIMEOUT seconds for the guest to power off,
# then quit via QMP, then SIGKILL. When QMP does not answer: SIGTERM (QEMU's own orderly quit),
# then SIGKILL. No-op when not running.
kvm_stop() {
  _kp_vps=$1
  _kp_run=${2%/}
  _kp_t=${3:-}
  case $_kp_t in
    '' | *[!0-9]*)
      _kvm_err "$_kp_vps: the stop timeout must be a number of seconds, not '$_kp_t'"
      return 1
      ;;
  esac
  if ! kvm_alive "$_kp_run"; then
    _kvm_clean "$_kp_run"
    return 0
  fi
  _kp_pid=$_kvm_pid
  kvm_qmp "$_kp_run/qmp.sock" '{"execute":"system_powerdown"}' >/dev/null
  case $? in
    0)
      if _kvm_gone "$_kp_pid" "$_kp_run" "$_kp_t"; then
        _kvm_clean "$_kp_run"
        return 0
      fi
      _kvm_err "$_kp_vps: the guest did not power off within ${_kp_t}s; quitting QEMU"
      _kvm_end "$_kp_vps" "$_kp_run" "$_kp_pid" 1 0
      ;;
    69) return 69 ;;
    *)
      _kvm_err "$_kp_vps: QMP did not take system_powerdown; terminating QEMU (pid $_kp_pid)"
      _kvm_end "$_kp_vps" "$_kp_run" "$_kp_pid" 0 1
      ;;
  esac
}

# kvm_destroy VPS RUN: quit via QMP, SIGKILL when QMP does not answer or QEMU stays; cleans up.
kvm_destroy() {
  _kd_run=${2%/}
  if ! kvm_alive "$_kd_run"; then
    _kvm_clean "$_kd_run"
    return 0
  fi
  _kd_pid=$_kvm_pid
  if [ -S "$_kd_run/qmp.sock" ]; then
    _kvm_end "$1" "$_kd_run" "$_kd_pid" 1 0
  else
    _kvm_end "$1" "$_kd_run" "$_kd_pid" 0 0
  fi
}

# kvm_reset VPS RUN: system_reset via QMP.
kvm_reset() {
  if ! kvm_alive "$2"; then
    _kvm_err "$1: not running, cannot reset"
    return 1
  fi
  kvm_qmp "${2%/}/qmp.sock" '{"execute":"system_reset"}' >/dev/null
  _kz_rc=$?
  [ "$_kz_rc" -eq 0 ] || _kvm_err "$1: reset failed"
  return "$_kz_rc"
}

# One entry of kvm_observe's guests: separator $1, run folder $2, cmdline hash $3.
_kvm_guest() {
  kvm_alive "$2" || return 0
  _ke_mem=
  _ke_cpus=
  _ke_prev=
  if [ -f "$2/cmdline" ]; then
    while IFS= read -r _ke_a || [ -n "$_ke_a" ]; do
      case $_ke_prev in
        -m) _ke_mem=$_ke_a ;;
        -smp) _ke_cpus=$_ke_a ;;
      esac
      _ke_prev=$_ke_a
      _ke_a=
    done <"$2/cmdline"
  fi
  if _ke_st=$(kvm_qmp "$2/qmp.sock" '{"execute":"query-status"}' 2>/dev/null); then
    _ke_st=${_ke_st#*\"status\": \"}
    _ke_st=${_ke_st%%\"*}
  else
    _ke_st=unresponsive
  fi
  printf '%s{"name":"' "$1"
  _kvm_json "${2##*/}"
  printf '","pid":%s,"status":"' "$_kvm_pid"
  _kvm_json "$_ke_st"
  printf '","mem":"'
  _kvm_json "$_ke_mem"
  printf '","vcpus":"'
  _kvm_json "$_ke_cpus"
  printf '","cmdline_sha256":"%s"}' "$3"
}

# kvm_observe ROOT: prints the JSON fragment (no braces, ending with a comma)
# "guests":[...],"qemu":"PATH","kvm":{"usable":BOOL,"error":"..."},
# One socat per running guest (no sleep), one sha256sum in all, one QEMU for the KVM probe.
kvm_observe() {
  _ko_root=${1%/}
  printf '"guests":['
  _ko_sep=
  set --
  for _ko_run in "$_ko_root/var/lib/gitvps/kvm"/*/; do
    _ko_run=${_ko_run%/}
    kvm_alive "$_ko_run" || continue
    if [ -f "$_ko_run/cmdline" ]; then
      set -- "$@" "$_ko_run/cmdline"
    else
      _kvm_guest "$_ko_sep" "$_ko_run" ""
      _ko_sep=,
    fi
  done
  if [ "$#" -gt 0 ]; then
    sha256sum -- "$@" | while read -r _ko_h _ko_f; do
      _kvm_guest "$_ko_sep" "${_ko_f%/cmdline}" "$_ko_h"
      _ko_sep=,
    done
  fi
  _ko_q=$(command -v qemu-system-x86_64)
  printf '],"qemu":"'
  _kvm_json "$_ko_q"
  printf '","kvm":{"usable":'
  if [ -z "$_ko_q" ]; then
    printf 'false,"error":"qemu-system-x86_64 is not installed"},'
    return 0
  fi
  # The probe sets up (without running, -S) the machine and CPU that KVM guests get: with
  # `-machine none` a nested KVM that cannot run a guest (MSR writes failing) passes.
  # A failing probe may die of an assertion: no core file (where the shell has ulimit -c), and
  # the group's stderr takes the shell's `Aborted`.
  # shellcheck disable=SC3045
  if _ko_e=$(
    ulimit -c 0 2>/dev/null
    { printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' |
      timeout 20 qemu-system-x86_64 -accel kvm -cpu host -machine q35 -S -m 16 -nodefaults \
        -no-user-config -display none -qmp stdio 2>&1 >/dev/null; } 2>/dev/null
  ); then
    printf 'true,"error":""},'
  else
    _ko_rc=$?
    # Its first line that is not a warning.
    _ko_l=
    while IFS= read -r _ko_l; do
      case $_ko_l in *'warning:'*) _ko_l= ;; *) break ;; esac
    done <<EOF
$_ko_e
EOF
    _ko_e=${_ko_l:-qemu-system-x86_64 -accel kvm exited with status $_ko_rc}
    printf 'false,"error":"'
    _kvm_json "$_ko_e"
    printf '"},'
  fi
}
