# gitvps node script: one side of moving a VPS's disk to another node (POSIX sh). The reconciler
# runs it on both nodes at once and carries the stream between them, so the nodes need no trust
# in each other. Run as `sh -c SCRIPT gitvps-move ROOT ACTION ARGS...`, where ACTION is
#   probe VPS FROM DISK   prints `codec zstd` or `codec gzip`, and `verified SHA256` when this node
#                         holds a copy of VPS's disk from FROM that was checked end to end;
#   send DISK CODEC       (under the node's lock) the disk, compressed, on stdout; on stderr at
#                         the end `gitvps-bytes N` (the disk's size) and `gitvps-sha256 SHA256`
#                         of the disk's bytes. A qcow2 image with a backing file is refused (the
#                         copy would carry the overlay alone);
#   recv DISK CODEC MODE BYTES
#                         (under the node's lock) the compressed disk from stdin into DISK (a
#                         fresh logical volume or image file, made beforehand), flushed to disk;
#                         MODE: dense, sparse (holes left for zeros), or image (DISK emptied
#                         first, then written sparse: a qcow2 image, whose copy is the source's
#                         file); on stderr at the end `gitvps-sha256 SHA256` of the first BYTES
#                         of DISK (the source's size; all of it in image mode) read back while
#                         the flush writes it out, reported once the flush is done.
# No byte of the disk crosses a pipe but the compressed stream: on the source the codec and the
# checksum each read the disk (locked, its domain stopped: both see the same bytes), on the
# target the codec writes the disk itself and the checksum reads back what the flush writes out.
# The marker and limit variables are put in front of it by the planner (planner::protocol).
# shellcheck shell=sh disable=SC2154 # the M_* marker and limit variables come from the header
R=${1%/}
action=$2
shift 2
PATH="$R/usr/local/sbin:$R/usr/sbin:$R/sbin:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
export PATH
LC_ALL=C
export LC_ALL
lock() {
  mkdir -p "$R/var/lib/gitvps/state" || exit 70
  exec 9>"$R/var/lib/gitvps/lock" || exit 70
  if ! flock -w "$LOCK_WAIT_SECS" 9; then echo "$M_LOCKED" >&2; exit "$EXIT_LOCKED"; fi
}
# The size of the disk $1 in bytes.
size_of() {
  if [ -b "$1" ]; then blockdev --getsize64 "$1"; else wc -c <"$1"; fi
}
# The SHA-256 of stdin, its hex digest first on the line: OpenSSL's where the node has it (it
# uses the CPU's SHA instructions: about five times coreutils' speed), else coreutils'. Both
# ends may differ in the tool; the digest is the same.
sha256() {
  if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi
}
# Fails the send or receive when any part of it did ($1: the parts that failed).
fail_if() {
  if [ -n "$1" ]; then
    echo "gitvps: the copy failed in:$1" >&2
    exit 1
  fi
}
case $action in
  probe)
    if command -v zstd >/dev/null 2>&1; then echo "codec zstd"; else echo "codec gzip"; fi
    m="$R/var/lib/gitvps/state/$1.moved"
    if [ -f "$m" ] && [ -e "$3" ]; then
      read -r from sha <"$m" || from=
      [ "$from" = "$2" ] && echo "verified $sha"
    fi
    exit 0
    ;;
  send)
    lock
    [ -e "$1" ] || { echo "gitvps: no disk $1 here" >&2; exit 1; }
    case $1 in
      *.qcow2)
        # The backing file's offset, a big-endian u64 at byte 8 of the qcow2 header.
        if [ "$(od -An -tx1 -j8 -N8 "$1" | tr -d ' \n')" != 0000000000000000 ]; then
          echo "gitvps: $1 has a backing file: a move copies the image alone (qemu-img convert it into a standalone image first)" >&2
          exit 1
        fi
        ;;
    esac
    size=$(size_of "$1") || { echo "gitvps: cannot read the size of $1" >&2; exit 1; }
    # The checksum reads the disk beside the codec (the second read mostly from the page cache).
    (
      s=$(sha256 <"$1") || exit 1
      echo "gitvps-sha256 ${s%% *}" >&2
    ) &
    sum=$!
    err=
    case $2 in
      zstd) zstd -1 -T0 -q -c <"$1" || err=" zstd" ;;
      gzip) gzip -1 -c <"$1" || err=" gzip" ;;
      *) echo "gitvps: unknown codec $2" >&2; err=" codec" ;;
    esac
    wait "$sum" || err="$err sha256"
    fail_if "$err"
    echo "gitvps-bytes $size" >&2
    ;;
  recv)
    lock
    [ -e "$1" ] || { echo "gitvps: no disk $1 here" >&2; exit 1; }
    sparse=
    case $3 in
      sparse) sparse=1 ;;
      image)
        sparse=1
        : >"$1" || { echo "gitvps: cannot empty $1" >&2; exit 1; }
        ;;
    esac
    # The codec writes the disk itself (`1<>`: opened for writing where it is, not truncated),
    # through the page cache; the flush below puts it on disk before the source can go. gzip
    # cannot leave holes, so a sparse write goes through dd there (gzip being the fallback);
    # if gzip fails in that pipe the read-back below differs from the source's and the move
    # fails on the mismatch.
    err=
    case $2$sparse in
      zstd) zstd -d -q -c 1<>"$1" || err=" zstd" ;;
      zstd1) zstd -d -q -c --sparse 1<>"$1" || err=" zstd" ;;
      gzip) gzip -d -c 1<>"$1" || err=" gzip" ;;
      gzip1) gzip -d -c | dd of="$1" bs=1M iflag=fullblock conv=notrunc,sparse status=none ||
        err=" gzip" ;;
      *) echo "gitvps: unknown codec $2" >&2; err=" codec" ;;
    esac
    fail_if "$err"
    # The flush and the read-back run side by side: the checksum reads the pages the flush is
    # writing out (the page cache holds them until they are on disk), and neither waits for
    # the other. Both must succeed before the checksum is reported.
    dd of="$1" conv=notrunc,fsync count=0 status=none </dev/null &
    flush=$!
    # What is on the disk now, read back: the first BYTES (a logical volume may be larger than
    # the source's, rounded up to its extents), or all of it when that is its size.
    if [ "$3" = image ] || [ "${4:-0}" -eq 0 ] || [ "$(size_of "$1")" = "$4" ]; then
      s=$(sha256 <"$1") || err=" sha256"
    else
      s=$(dd if="$1" bs=1M count="$4" iflag=count_bytes status=none | sha256) || err=" sha256"
    fi
    wait "$flush" || err="$err flush"
    fail_if "$err"
    echo "gitvps-sha256 ${s%% *}" >&2
    ;;
  *)
    echo "gitvps: unknown action $action" >&2
    exit 2
    ;;
esac
