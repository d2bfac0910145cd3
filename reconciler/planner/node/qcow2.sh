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
# q2_pack IMAGE: IMAGE.raw-tmp back into IMAGE, through IMAGE.new and a rename; the raw file
# is removed either way.
q2_pack() {
  rm -f "$1.new"
  if qemu-img convert -q -f raw -O qcow2 "$1.raw-tmp" "$1.new" && mv -f "$1.new" "$1"; then
    rm -f "$1.raw-tmp"
    return 0
  fi
  rm -f "$1.new" "$1.raw-tmp"
  return 1
}
