# gitvps node script: restic backups of a VPS's disk (`gitvps backup`). Run as
# `sh -c SCRIPT gitvps-backup ROOT REPOSITORY KNOWN_HOSTS SFTP_TO SFTP_PORT SFTP_KEY OP ARGS...`;
# the marker and lock variables are put in front of it by the planner (planner::protocol).
#
# The secrets come on standard input, one a line: the repository password, then the S3 access
# key id and secret key (empty lines when there are none). They live in this process's
# environment and restic's only: never in argv, never in a file.
#
# OP is one of:
#   backup VPS HOST TIME KIND ...   one disk, from a consistent point (KIND below); prints
#                                   `@@backup SNAPSHOT_ID BYTES`
#     lvm VG LV COW_MIB             a classic LVM snapshot VG/LV.backup, removed afterwards
#     xen-file DISK                 the image of a stopped Xen guest (a running one is refused)
#     kvm-file DISK RUN SNAP_JSON COMMIT_JSON
#                                   a running QEMU guest: its writes go to an overlay
#                                   (DISK.backup-overlay) while the base is read, then the
#                                   overlay is committed back; a stopped guest's image as it is
#   snapshots VPS...                restic's JSON list of the VPSes' snapshots
#   forget ID...                    forgets the snapshots and prunes the repository
#   check FROM SNAPSHOT MAX_BYTES   refuses (exit 1, with the reason) unless SNAPSHOT is one
#                                   backup of FROM (its `vps=FROM` tag) of at most MAX_BYTES
#   restore FROM SNAPSHOT MAX_BYTES DISK KIND
#                                   checks as `check`, then writes the backup onto DISK,
#                                   erasing it; KIND is lvm (DISK is the volume), raw or qcow2
#                                   (an image file, replaced through DISK.restore-tmp). Run by
#                                   the steps script under apply's lock, the guest stopped.
# shellcheck shell=sh disable=SC2154 # the M_* marker variables come from the header (planner::protocol)
set -u
R=${1%/}
repo=$2
known=$3
sftp_to=$4
sftp_port=$5
sftp_key=$6
op=$7
shift 7
PATH="$R/usr/local/sbin:$R/usr/sbin:$R/sbin:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
LC_ALL=C
TZ=UTC
export PATH LC_ALL TZ
IFS= read -r RESTIC_PASSWORD || RESTIC_PASSWORD=
IFS= read -r AWS_ACCESS_KEY_ID || AWS_ACCESS_KEY_ID=
IFS= read -r AWS_SECRET_ACCESS_KEY || AWS_SECRET_ACCESS_KEY=
RESTIC_REPOSITORY=$repo
export RESTIC_PASSWORD RESTIC_REPOSITORY
if [ -n "$AWS_ACCESS_KEY_ID" ]; then
  export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
else
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
fi
unset RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND
if ! command -v restic >/dev/null 2>&1; then
  echo "gitvps: restic is not installed on this node (Debian: apt install restic)" >&2
  exit 69
fi
bk_tmp=$(mktemp -d) || exit 70
# What the cleanup must undo: an LVM snapshot (VG/NAME), a QEMU overlay (RUN and its file).
bk_lv=
bk_run=
bk_overlay=
bk_commit=
# Undoes the snapshot or overlay, also after a failure; false when it could not.
bk_cleanup() {
  _bc_ok=0
  if [ -n "$bk_lv" ]; then
    if ! lvremove -f "$bk_lv" >&2 </dev/null; then
      echo "gitvps: could not remove the snapshot $bk_lv: remove it by hand (lvremove -f $bk_lv)" >&2
      _bc_ok=1
    fi
  fi
  if [ -n "$bk_overlay" ]; then
    if bk_kvm_commit; then
      rm -f "$bk_overlay"
    else
      echo "gitvps: the guest still writes to $bk_overlay: it was NOT removed; commit it (QMP block-commit) before anything else" >&2
      _bc_ok=1
    fi
  fi
  rm -rf "$bk_tmp"
  return "$_bc_ok"
}
bk_rc=0
trap 'bk_rc=$?; bk_cleanup || bk_rc=1; exit "$bk_rc"' EXIT
trap 'exit 130' INT TERM HUP

if [ -n "$sftp_to" ]; then
  printf '%s\n' "$known" >"$bk_tmp/known_hosts" || exit 70
  bk_ident=
  [ -f "$sftp_key" ] && bk_ident="-i $sftp_key"
  bk_sftp="ssh -p $sftp_port -o BatchMode=yes -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null -o UserKnownHostsFile=$bk_tmp/known_hosts $bk_ident $sftp_to -s sftp"
fi

# restic with the repository's options; the caller gives its standard input.
rs() {
  if [ -n "$sftp_to" ]; then
    restic --cache-dir "$R/var/cache/gitvps-restic" -o "sftp.command=$bk_sftp" "$@"
  else
    restic --cache-dir "$R/var/cache/gitvps-restic" "$@"
  fi
}

# The size of a block device or an image file, in bytes.
bk_size() {
  blockdev --getsize64 "$1" 2>/dev/null || stat -L -c %s "$1"
}

# Waits until QEMU's block job is ready (or gone, with $2 = gone), at most 10 minutes.
bk_kvm_wait() {
  _bw_i=0
  while [ "$_bw_i" -lt 6000 ]; do
    _bw_j=$(kvm_qmp "$1/qmp.sock" '{"execute":"query-block-jobs"}') || return 1
    case $2 in
      ready) case $_bw_j in *'"ready": true'* | *'"ready":true'*) return 0 ;; esac ;;
      gone) case $_bw_j in *gitvps-backup*) ;; *) return 0 ;; esac ;;
    esac
    sleep 0.1
    _bw_i=$((_bw_i + 1))
  done
  echo "gitvps: QEMU's block job did not become $2 in time" >&2
  return 1
}

# Commits the overlay back into the base while the guest runs (an active commit).
bk_kvm_commit() {
  kvm_qmp "$bk_run/qmp.sock" "$bk_commit" >/dev/null || return 1
  bk_kvm_wait "$bk_run" ready || return 1
  kvm_qmp "$bk_run/qmp.sock" '{"execute":"block-job-complete","arguments":{"device":"gitvps-backup"}}' >/dev/null || return 1
  bk_kvm_wait "$bk_run" gone
}

# backup VPS HOST TIME KIND ...
bk_backup() {
  vps=$1 host=$2 at=$3 kind=$4
  shift 4
  exec 9>"$R/var/lib/gitvps/lock" || return 70
  if ! flock -w "$LOCK_WAIT_SECS" 9; then
    echo "gitvps: another apply or backup held the node's lock for $LOCK_WAIT_SECS s" >&2
    return "$EXIT_LOCKED"
  fi
  name="$vps.img"
  case $kind in
    lvm)
      vg=$1 lv=$2 cow=$3
      # A snapshot left by a crashed run goes first.
      if lvs "$vg/$lv.backup" >/dev/null 2>&1 </dev/null; then
        lvremove -f "$vg/$lv.backup" >&2 </dev/null || return 1
      fi
      lvcreate -s -L "${cow}m" -n "$lv.backup" "$vg/$lv" >&2 </dev/null || return 1
      bk_lv="$vg/$lv.backup"
      src="$R/dev/$vg/$lv.backup"
      ;;
    xen-file)
      src=$1
      if xl list "$vps" >/dev/null 2>&1 </dev/null; then
        echo "gitvps: $vps runs on file storage, which has no snapshot: stop it for its backup, or keep Xen guests on LVM" >&2
        return 1
      fi
      ;;
    kvm-file)
      src=$1
      case $src in *.qcow2) name="$vps.qcow2" ;; esac
      if kvm_alive "$2"; then
        bk_run=$2
        bk_commit=$4
        rm -f "$src.backup-overlay"
        kvm_qmp "$bk_run/qmp.sock" "$3" >/dev/null || return 1
        bk_overlay="$src.backup-overlay"
      fi
      ;;
    *)
      echo "gitvps: unknown disk kind $kind" >&2
      return 64
      ;;
  esac
  size=$(bk_size "$src") || return 1
  if [ -n "$at" ]; then
    rs backup --json --stdin --stdin-filename "$name" --host "$host" --tag "vps=$vps,bytes=$size" --time "$at" <"$src" >"$bk_tmp/out" || return $?
  else
    rs backup --json --stdin --stdin-filename "$name" --host "$host" --tag "vps=$vps,bytes=$size" <"$src" >"$bk_tmp/out" || return $?
  fi
  id=$(sed -n 's/.*"snapshot_id":"\([0-9a-f]*\)".*/\1/p' "$bk_tmp/out" | tail -n 1)
  if [ -z "$id" ]; then
    echo "gitvps: restic reported no snapshot id" >&2
    return 1
  fi
  echo "@@backup $id $size"
}

# check FROM SNAPSHOT MAX_BYTES: sets rs_id (the full id), rs_path (the file in the snapshot)
# and rs_bytes, or says why the snapshot may not be restored here.
bk_check() {
  from=$1 snap=$2 max=$3
  if [ -z "$RESTIC_PASSWORD" ]; then
    echo "gitvps: no restic password came with this apply: set the variable named by gitvps.toml's [backup] password_env (GITVPS_RESTIC_PASSWORD unless set otherwise) where gitvps apply runs; nothing was restored" >&2
    return 1
  fi
  rs snapshots --json --tag "vps=$from" </dev/null >"$bk_tmp/list" || return 1
  # One snapshot a line (each object starts with its time), then the ones whose id starts so.
  sed 's/{"time"/\n{"time"/g' "$bk_tmp/list" | grep "\"id\":\"$snap" >"$bk_tmp/match"
  n=$(wc -l <"$bk_tmp/match")
  if [ "$n" -eq 0 ]; then
    echo "gitvps: snapshot $snap is not a backup of $from in the repository (gitvps backup list --vps $from shows them): nothing was restored" >&2
    return 1
  fi
  if [ "$n" -gt 1 ]; then
    echo "gitvps: $snap is the start of $n snapshots of $from: give more of its id" >&2
    return 1
  fi
  rs_id=$(sed 's/.*"id":"\([0-9a-f]*\)".*/\1/' "$bk_tmp/match")
  rs_path=$(sed -n 's/.*"paths":\["\([^"]*\)".*/\1/p' "$bk_tmp/match")
  rs_bytes=$(sed -n 's/.*"bytes=\([0-9]*\)".*/\1/p' "$bk_tmp/match")
  case $rs_path in
    "/$from.img" | "/$from.qcow2") ;;
    *)
      echo "gitvps: snapshot $snap holds $rs_path, not the disk of $from: nothing was restored" >&2
      return 1
      ;;
  esac
  if [ -z "$rs_bytes" ] || [ "$rs_bytes" -gt "$max" ]; then
    echo "gitvps: snapshot $snap of $from is ${rs_bytes:-of unknown size} bytes, more than the disk's $max: nothing was restored" >&2
    return 1
  fi
}

# restore FROM SNAPSHOT MAX_BYTES DISK KIND
bk_restore() {
  disk=$4 kind=$5
  bk_check "$1" "$2" "$3" || return 1
  case $kind:$rs_path in
    lvm:*.img)
      if [ ! -b "$disk" ] && [ ! -f "$disk" ]; then
        echo "gitvps: the volume $disk does not exist" >&2
        return 1
      fi
      # Opened for writing without truncating: the volume keeps its size.
      rs dump "$rs_id" "$rs_path" </dev/null 1<>"$disk" || return 1
      ;;
    raw:*.img | qcow2:*.qcow2)
      tmp="$disk.restore-tmp"
      rm -f "$tmp"
      if ! rs dump "$rs_id" "$rs_path" </dev/null >"$tmp"; then
        rm -f "$tmp"
        return 1
      fi
      # A raw image keeps its size (a backup of a smaller disk leaves the rest empty).
      if [ "$kind" = raw ] && [ -e "$disk" ]; then
        cur=$(stat -L -c %s "$disk") || cur=0
        got=$(stat -c %s "$tmp") || got=0
        if [ "$got" -lt "$cur" ] && ! truncate -s "$cur" "$tmp"; then
          rm -f "$tmp"
          return 1
        fi
      fi
      if ! mv -f "$tmp" "$disk"; then
        rm -f "$tmp"
        return 1
      fi
      ;;
    *)
      echo "gitvps: snapshot $2 holds ${rs_path#/}, which cannot be written onto a $kind disk: nothing was restored" >&2
      return 1
      ;;
  esac
  echo "gitvps: restored snapshot $rs_id ($rs_bytes bytes) onto $disk" >&2
}

case $op in
  backup) bk_backup "$@" ;;
  check) bk_check "$@" ;;
  restore) bk_restore "$@" ;;
  snapshots)
    n=$#
    for v in "$@"; do set -- "$@" --tag "vps=$v"; done
    shift "$n"
    rs snapshots --json "$@" </dev/null
    ;;
  forget) rs forget --prune "$@" </dev/null >&2 ;;
  *)
    echo "gitvps: unknown operation $op" >&2
    exit 64
    ;;
esac
