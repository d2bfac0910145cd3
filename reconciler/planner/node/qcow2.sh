# gitvps node library: qcow2 images for the steps script (POSIX sh, sourced, never run alone).
# shellcheck shell=sh
# q2_need: qemu-img, or a clear error.
q2_need() {
  command -v qemu-img >/dev/null 2>&1 && return 0
  echo "gitvps: qemu-img is not installed on this node (apt-get install qemu-utils): qcow2 images need it" >&2
  return 69
}
# q2_size IMAGE: prints the virtual size in bytes, read from the qcow2 header (magic QFI\xfb at
# byte 0, the size as a big-endian u64 at byte 24).
q2_size() {
  q2_f=$1
  # shellcheck disable=SC2046 # od prints 32 hex words
  set -- $(od -An -tx1 -N32 "$q2_f")
  if [ $# -ne 32 ] || [ "$1$2$3$4" != 514649fb ]; then
    echo "gitvps: $q2_f is not a qcow2 image" >&2
    return 1
  fi
  echo $((0x${25}${26}${27}${28}${29}${30}${31}${32}))
}
# q2_unpack IMAGE: its content as a sparse raw file, IMAGE.raw-tmp.
q2_unpack() {
  rm -f "$1.raw-tmp"
  qemu-img convert -q -f qcow2 -O raw "$1" "$1.raw-tmp" && return 0
  rm -f "$1.raw-tmp"
  return 1
}
# q2_nsnap IMAGE: prints how many internal snapshots IMAGE holds (nb_snapshots, a big-endian
# u32 at byte 60 of the header), without running qemu-img.
q2_nsnap() {
  # shellcheck disable=SC2046 # od prints 64 hex words
  set -- $(od -An -tx1 -N64 "$1")
  if [ $# -ne 64 ]; then
    echo 0
    return 0
  fi
  echo $((0x${61}${62}${63}${64}))
}
# q2_snap_has IMAGE NAME: true when IMAGE holds the internal snapshot NAME (-U: a running
# QEMU holds the image's lock).
q2_snap_has() {
  [ "$(q2_nsnap "$1")" -gt 0 ] || return 1
  q2_l=$(qemu-img snapshot -U -l "$1") || return 1
  while read -r _ q2_tag _; do
    [ "$q2_tag" != "$2" ] || return 0
  done <<LIST
$q2_l
LIST
  return 1
}
# q2_pack IMAGE: IMAGE.raw-tmp back into IMAGE, through IMAGE.new and a rename; the raw file
# is removed either way. An image with internal snapshots is copied to IMAGE.new and the raw
# file written into that copy's current state (`convert -n`), so that the snapshots stay.
q2_pack() {
  rm -f "$1.new"
  if [ "$(q2_nsnap "$1")" -gt 0 ]; then
    cp --sparse=always "$1" "$1.new" &&
      qemu-img convert -q -n -f raw -O qcow2 "$1.raw-tmp" "$1.new" && mv -f "$1.new" "$1"
  else
    qemu-img convert -q -f raw -O qcow2 "$1.raw-tmp" "$1.new" && mv -f "$1.new" "$1"
  fi && {
    rm -f "$1.raw-tmp"
    return 0
  }
  rm -f "$1.new" "$1.raw-tmp"
  return 1
}
# q2_snap IMAGE RUN take|delete NAME QMP: takes or deletes the internal snapshot NAME, through
# QEMU's QMP (the command QMP) while the guest of run folder RUN runs, else with qemu-img on
# the free image. Nothing to do when the snapshot already is (take) or is not (delete) there.
q2_snap() {
  if q2_snap_has "$1" "$4"; then
    [ "$3" = delete ] || return 0
  else
    [ "$3" = take ] || return 0
  fi
  if kvm_alive "$2"; then
    kvm_qmp "$2/qmp.sock" "$5" >/dev/null
    return
  fi
  disk_free "$1" || return 1
  case $3 in
    take) qemu-img snapshot -c "$4" "$1" ;;
    *) qemu-img snapshot -d "$4" "$1" ;;
  esac
}
# q2_revert IMAGE NAME RUN: brings the free image back to its snapshot NAME. A snapshot taken
# before a grow has the smaller size: the image is grown back, with its filesystem. The
# guest's kernel is taken again from the reverted disk.
q2_revert() {
  if ! q2_snap_has "$1" "$2"; then
    echo "gitvps: $1 holds no snapshot $2: nothing was reverted" >&2
    return 1
  fi
  q2_before=$(q2_size "$1") || return 1
  qemu-img snapshot -a "$2" "$1" || return 1
  q2_after=$(q2_size "$1") || return 1
  if [ "$q2_after" -lt "$q2_before" ]; then
    qemu-img resize -q -f qcow2 "$1" "$q2_before" || return 1
  fi
  q2_unpack "$1" || return 1
  if [ "$q2_after" -lt "$q2_before" ]; then
    e2fsck -f -p "$1.raw-tmp"
    q2_rc=$?
    if [ "$q2_rc" -gt 2 ] || ! resize2fs "$1.raw-tmp"; then
      rm -f "$1.raw-tmp"
      return 1
    fi
    kvm_store_kernel "$1.raw-tmp" "$3" || { rm -f "$1.raw-tmp"; return 1; }
    q2_pack "$1"
    return
  fi
  kvm_store_kernel "$1.raw-tmp" "$3" || { rm -f "$1.raw-tmp"; return 1; }
  rm -f "$1.raw-tmp"
}
