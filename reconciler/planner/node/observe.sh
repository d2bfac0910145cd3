# gitvps observe: print this node's live state as one JSON document on stdout.
# Run as `sh -c SCRIPT gitvps-observe ROOT BACKEND STORE HYPERVISOR NOW` (xen or kvm; on KVM
# nodes the script starts with node/kvm.sh; NOW: the control machine's clock, Unix seconds).
# POSIX sh and the hypervisor's and storage's own tools only: on Xen with LVM it execs `xl`
# once, `lvs` and one `sha256sum`, nothing else (no temporary file, no `date`, `sed` or `cat`);
# `gitvps import` sets `long=1` in front of it for `xl list -l` too (the guests' configs, which
# only import reads). Nothing of gitvps is installed here.
set -u
R=${1%/}
backend=$2
store=$3
hv=${4:-xen}
now=${5:-0}
case $now in '' | *[!0-9]*) now=0 ;; esac
PATH="$R/usr/local/sbin:$R/usr/sbin:$R/sbin:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
export PATH
LC_ALL=C
export LC_ALL

NL='
'
# A space and a tab.
BLANKS=' 	'
# Splitting a command's output in memory: `split_on CHARS` makes CHARS the field separators
# and turns globbing off for the unquoted expansion that follows, `unsplit` restores both.
# (`read` would take a byte per system call from a pipe or a here-document.)
split_on() {
  IFS=$1
  set -f
}
unsplit() {
  unset IFS
  set +f
}

# A JSON string from arbitrary text: escape \ and ", fold control characters. Forks, so it is
# only used for error text and unusual names.
esc() { printf '%s' "$1" | tr '\n\t\r' '   ' | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }
# Prints a JSON string's content; plain words (the usual case) without a fork.
pstr() {
  case $1 in
    *[!A-Za-z0-9._:+-]*) esc "$1" ;;
    *) printf '%s' "$1" ;;
  esac
}
# `"KEY":null,"KEY_error":"...",` with the stderr of running the command again: failures are
# rare, and the second run spares every run a temporary file for stderr.
failed() {
  key=$1
  shift
  printf '"%s":null,"%s_error":"%s",' "$key" "$key" "$(esc "$("$@" 2>&1 >/dev/null)")"
}
# A command's stdout as raw JSON, or null plus its error text.
raw() {
  if out=$(shift && "$@" 2>/dev/null); then
    [ -n "$out" ] || out=null
    printf '"%s":%s,' "$1" "$out"
  else
    failed "$@"
  fi
}

report() {
  printf '{"version":1,"hypervisor":"%s",' "$hv"
  case $hv in
    kvm)
      kvm_observe "$R"
      kvm_observe_filters
      cfgdir="$R/etc/gitvps/kvm"
      cfgext=args
      ;;
    *)
      [ "${long-}" != 1 ] || raw domains_long xl list -l
      if out=$(xl list 2>/dev/null); then
        printf '"domains":['
        sep=
        head=1
        split_on "$NL"
        for line in $out; do
          # The first line is xl's header.
          [ -z "$head" ] || { head=; continue; }
          split_on "$BLANKS"
          # shellcheck disable=SC2086 # fields on purpose, globbing is off
          set -- $line
          unsplit
          [ $# -gt 0 ] || continue
          printf '%s{"name":"' "$sep"; pstr "$1"
          printf '","id":"'; pstr "${2-}"
          printf '","mem":"'; pstr "${3-}"
          printf '","vcpus":"'; pstr "${4-}"
          printf '","state":"'; pstr "${5-}"
          printf '"}'
          sep=,
        done
        unsplit
        printf '],'
      else
        failed domains xl list
      fi
      cfgdir="$R/etc/xen/gitvps"
      cfgext=cfg
      ;;
  esac
  rescue_images
  case $backend in
    lvm) raw lvs lvs --reportformat json -o lv_name,vg_name,lv_size,origin --units b --nosuffix "$store" ;;
    file) images ;;
  esac
  # One sha256sum for every config and console key (a fork per file would dominate on a large
  # node); `hashed` picks its lines apart.
  set --
  for f in "$cfgdir"/*."$cfgext"; do
    [ -f "$f" ] && set -- "$@" "$f"
  done
  for f in "$R/var/lib/gitvps/console"/*/.ssh/authorized_keys; do
    [ -f "$f" ] && set -- "$@" "$f"
  done
  sums=
  [ $# -eq 0 ] || sums=$(sha256sum "$@")
  printf '"configs":['
  hashed configs
  printf '],"records":['
  sep=
  for f in "$R/var/lib/gitvps/state"/*.json; do
    [ -f "$f" ] || continue
    n=${f##*/}
    # Records are one line of a JSON object that gitvps wrote; read them without a fork. One
    # that is not (truncated, overwritten) is reported as such, never pasted into the report.
    rec=
    IFS= read -r rec <"$f" || [ -n "$rec" ] || rec=
    printf '%s{"name":"' "$sep"; pstr "${n%.json}"
    case $rec in
      '{'*'}') printf '","record":%s}' "$rec" ;;
      *) printf '","record":null,"error":"not one line of a JSON object"}' ;;
    esac
    sep=,
  done
  printf '],"consoles":['
  hashed consoles
  # The ISO cache (node/steps.sh's fetch_iso): the sha256 of each ISO kept, from its file
  # name; a glob, no exec. Names of hex digits only (the planner keeps those of 64).
  printf '],"isos":['
  sep=
  for f in "$R/var/cache/gitvps/iso"/*.iso; do
    n=${f##*/}
    n=${n%.iso}
    case $n in '' | *[!0-9a-f]*) continue ;; esac
    [ -f "$f" ] || continue
    printf '%s"%s"' "$sep" "$n"
    sep=,
  done
  printf '],"now":%s}' "$now"
}

# The rescue system images (rescue = true), as `"rescue":["<vps>.<hash>",...],`: the files
# ROOT/var/lib/gitvps/rescue/<vps>.<hash>.img, no fork.
rescue_images() {
  printf '"rescue":['
  sep=
  for f in "$R/var/lib/gitvps/rescue"/*.img; do
    [ -f "$f" ] || continue
    n=${f##*/}
    printf '%s"' "$sep"; pstr "${n%.img}"; printf '"'
    sep=,
  done
  printf '],'
}

# hashed configs|consoles: the configs or the console keys among $sums, as JSON objects
# (name, sha256) separated by commas.
hashed() {
  sep=
  split_on "$NL"
  for line in $sums; do
    # `HASH  FILE` (sha256sum's text mode) or `HASH *FILE`.
    h=${line%% *}
    f=${line#"$h" }
    f=${f#[ *]}
    case $1:$f in
      configs:"$cfgdir"/*)
        n=${f##*/}
        n=${n%."$cfgext"}
        ;;
      consoles:*/.ssh/authorized_keys)
        n=${f%/.ssh/authorized_keys}
        n=${n##*/}
        ;;
      *) continue ;;
    esac
    printf '%s{"name":"' "$sep"; pstr "$n"
    printf '","sha256":"%s"}' "$h"
    sep=,
  done
  unsplit
}

# Raw images (<vps>.img: the file's size, one `stat` for all) and qcow2 images (<vps>.qcow2:
# the virtual size, a big-endian u64 at byte 24 of the header, after the magic QFI\xfb; a
# .qcow2 without that header is reported with its file size and format "unknown"). A qcow2
# image's internal snapshots (their count, a big-endian u32 at byte 60) are listed by
# `qemu-img snapshot -l` only when it has some.
images() {
  printf '"images":['
  set --
  for f in "$R$store"/*.img "$R$store"/*.qcow2; do
    [ -f "$f" ] && set -- "$@" "$f"
  done
  sizes=
  [ $# -eq 0 ] || sizes=$(stat -c '%s %n' "$@")
  sep=
  split_on "$NL"
  for line in $sizes; do
    unsplit
    # `SIZE FILE`
    size=${line%% *}
    f=${line#"$size" }
    [ -n "$f" ] || continue
    n=${f##*/}
    case $n in
      *.qcow2)
        n=${n%.qcow2}
        fmt=unknown
        nsnap=0
        # shellcheck disable=SC2046 # od prints 64 hex words
        set -- $(od -An -tx1 -N64 "$f")
        if [ $# -eq 64 ] && [ "$1$2$3$4" = 514649fb ]; then
          fmt=qcow2
          size=$((0x${25}${26}${27}${28}${29}${30}${31}${32}))
          nsnap=$((0x${61}${62}${63}${64}))
        fi
        ;;
      *)
        n=${n%.img}
        fmt=raw
        nsnap=0
        ;;
    esac
    printf '%s{"name":"' "$sep"; pstr "$n"
    printf '","size":%s,"format":"%s"' "$size" "$fmt"
    if [ "$nsnap" -gt 0 ]; then
      # -U: a running QEMU holds the image's lock. Lines: ID TAG VM-SIZE DATE ...; the two
      # header lines have no numeric ID.
      if out=$(qemu-img snapshot -U -l "$f" 2>/dev/null); then
        printf ',"snapshots":['
        ssep=
        split_on "$NL"
        for sl in $out; do
          split_on "$BLANKS"
          # shellcheck disable=SC2086 # fields on purpose, globbing is off
          set -- $sl
          unsplit
          case ${1-} in '' | *[!0-9]*) continue ;; esac
          printf '%s"' "$ssep"; pstr "${2-}"; printf '"'
          ssep=,
        done
        unsplit
        printf ']'
      else
        printf ',"snapshots":null,"snapshots_error":"%s"' "$(esc "$(qemu-img snapshot -U -l "$f" 2>&1 >/dev/null)")"
      fi
    fi
    printf '}'
    sep=,
  done
  unsplit
  printf '],'
}

# The report is built first and sent in one piece: many small writes would become many small
# SSH packets.
doc=$(report)
printf '%s\n' "$doc"
