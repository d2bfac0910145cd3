# gitvps node library: cloud images for the steps script (POSIX sh, sourced, never run alone).
# shellcheck shell=sh
# cloud_write IMAGE FORMAT DISK KIND BYTES RUN: writes the cloud image IMAGE (FORMAT raw or
# qcow2, never guessed) onto the VPS's disk DISK (KIND lvm, raw or qcow2) of BYTES bytes: the
# image is grown to BYTES (its filesystem is grown by cloud-init inside the guest). A qcow2
# image naming a backing file, or one larger than the disk, is refused and nothing is written.
# A file disk is written through DISK.new and a rename. RUN not empty: the guest's kernel is
# taken from the written image into RUN (a qcow2 disk booting its own kernel, KVM only).
cloud_write() {
  if ! command -v qemu-img >/dev/null 2>&1; then
    echo "gitvps: qemu-img is not installed on this node (apt-get install qemu-utils): cloud images need it" >&2
    return 69
  fi
  cw_info=$(qemu-img info -f "$2" --output=json "$1") || {
    printf 'gitvps: %s is not a %s image: nothing written\n' "$1" "$2" >&2
    return 1
  }
  case $cw_info in
    *'"backing-filename"'*)
      printf 'gitvps: the cloud image %s names a backing file: refused, nothing written\n' "$1" >&2
      return 1
      ;;
  esac
  cw_size=$(printf '%s\n' "$cw_info" | sed -n 's/^ *"virtual-size": *\([0-9][0-9]*\).*/\1/p' | head -n 1)
  if [ -z "$cw_size" ]; then
    printf 'gitvps: cannot read the size of the cloud image %s\n' "$1" >&2
    return 1
  fi
  if [ "$cw_size" -gt "$5" ]; then
    printf 'gitvps: the cloud image %s holds %s bytes, more than the disk (%s): refused, nothing written\n' "$1" "$cw_size" "$5" >&2
    return 1
  fi
  case $4 in
    lvm)
      # The volume has the disk's size already: the image is written over its start.
      qemu-img convert -q -n -f "$2" -O raw "$1" "$3" || return 1
      [ -z "$6" ] || kvm_store_kernel "$3" "$6" || return 1
      ;;
    raw | qcow2)
      rm -f "$3.new" "$3.raw-tmp"
      if [ -n "$6" ]; then
        # The kernel is read from a raw copy (debugfs cannot read qcow2), which becomes the disk.
        qemu-img convert -q -f "$2" -O raw "$1" "$3.raw-tmp" &&
          kvm_store_kernel "$3.raw-tmp" "$6" &&
          qemu-img convert -q -f raw -O "$4" "$3.raw-tmp" "$3.new"
        cw_rc=$?
        rm -f "$3.raw-tmp"
      else
        qemu-img convert -q -f "$2" -O "$4" "$1" "$3.new"
        cw_rc=$?
      fi
      if [ "$cw_rc" -ne 0 ] || ! qemu-img resize -q -f "$4" "$3.new" "$5" || ! mv -f "$3.new" "$3"; then
        rm -f "$3.new"
        return 1
      fi
      ;;
    *)
      printf 'gitvps: unknown disk kind %s\n' "$4" >&2
      return 1
      ;;
  esac
}
