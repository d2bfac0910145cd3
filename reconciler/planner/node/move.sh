# gitvps node script: one side of moving a VPS's disk to another node (POSIX sh). The reconciler
# runs it on both nodes at once and carries the stream between them, so the nodes need no trust
# in each other. Run as `sh -c SCRIPT gitvps-move ROOT ACTION ARGS...`, where ACTION is
#   probe VPS FROM DISK   prints `codec zstd` or `codec gzip`, and `verified SHA256` when this node
#                         holds a copy of VPS's disk from FROM that was checked end to end;
#   send DISK CODEC       (under the node's lock) the disk, compressed, on stdout; on stderr at
#                         the end `gitvps-bytes N` (the disk's size) and `gitvps-sha256 SHA256`
#                         of the bytes read. A qcow2 image with a backing file is refused (the
#                         copy would carry the overlay alone);
#   recv DISK CODEC MODE  (under the node's lock) the compressed disk from stdin into DISK (a
#                         fresh logical volume or image file, made beforehand; O_DIRECT where
#                         it opens so, flushed at the end); MODE: dense, sparse (holes left for
#                         zeros), or image (DISK emptied first, then written sparse: a qcow2
#                         image, whose copy is the source's file); on stderr at the end
#                         `gitvps-sha256 SHA256` of the bytes written.
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
# The codec's command: compress (c) or decompress (d).
codec() {
  case $1$2 in
    zstdc) zstd -1 -T0 -q -c ;;
    zstdd) zstd -d -q -c ;;
    gzipc) gzip -1 -c ;;
    gzipd) gzip -d -c ;;
    *) echo "gitvps: unknown codec $1" >&2; return 2 ;;
  esac
}
# The SHA-256 of stdin, its hex digest first on the line: OpenSSL's where the node has it (it
# uses the CPU's SHA instructions: about five times coreutils' speed), else coreutils'. Both
# ends may differ in the tool; the digest is the same.
sha256() {
  if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi
}
work() {
  t=$(mktemp -d) || exit 70
  trap 'rm -rf "$t"' EXIT
  mkfifo "$t/f" || exit 70
  sha256 <"$t/f" >"$t/sum" &
  sum=$!
}
# Ends a send or recv: fails when any part of the pipe did, else prints the checksum.
done_work() {
  wait "$sum" || echo "sha256" >>"$t/err"
  if [ -s "$t/err" ]; then
    echo "gitvps: the copy failed in: $(tr '\n' ' ' <"$t/err")" >&2
    exit 1
  fi
  echo "gitvps-sha256 $(cut -d' ' -f1 <"$t/sum")" >&2
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
    if [ -b "$1" ]; then size=$(blockdev --getsize64 "$1"); else size=$(wc -c <"$1"); fi ||
      { echo "gitvps: cannot read the size of $1" >&2; exit 1; }
    work
    { dd if="$1" bs=1M status=none || echo "dd" >>"$t/err"; } |
      { tee "$t/f" || echo "tee" >>"$t/err"; } |
      { codec "$2" c || echo "$2" >>"$t/err"; }
    echo "gitvps-bytes $size" >&2
    done_work
    ;;
  recv)
    lock
    [ -e "$1" ] || { echo "gitvps: no disk $1 here" >&2; exit 1; }
    conv=notrunc,fsync
    case $3 in
      sparse) conv=notrunc,sparse,fsync ;;
      image)
        conv=notrunc,sparse,fsync
        : >"$1" || { echo "gitvps: cannot empty $1" >&2; exit 1; }
        ;;
    esac
    # Written past the page cache (O_DIRECT) where the disk allows it: the copy must be on disk
    # before the source goes, and direct writes get it there sooner than a flush at the end.
    direct=
    dd of="$1" oflag=direct conv=notrunc count=0 status=none </dev/null 2>/dev/null && direct=1
    write() {
      if [ -n "$direct" ]; then
        dd of="$1" bs=1M iflag=fullblock oflag=direct conv="$conv" status=none
      else
        dd of="$1" bs=1M iflag=fullblock conv="$conv" status=none
      fi
    }
    work
    { codec "$2" d || echo "$2" >>"$t/err"; } |
      { tee "$t/f" || echo "tee" >>"$t/err"; } |
      { write "$1" || echo "dd" >>"$t/err"; }
    done_work
    ;;
  *)
    echo "gitvps: unknown action $action" >&2
    exit 2
    ;;
esac
