# gitvps observe: print this node's live state as one JSON document on stdout.
# Run as `sh -c SCRIPT gitvps-observe ROOT BACKEND STORE HYPERVISOR` (xen or kvm; on KVM
# nodes the script starts with node/kvm.sh). POSIX sh, the hypervisor's own tools and
# coreutils only; nothing of gitvps is installed here.
set -u
R=${1%/}
backend=$2
store=$3
hv=${4:-xen}
PATH="$R/usr/local/sbin:$R/usr/sbin:$R/sbin:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
export PATH
LC_ALL=C
export LC_ALL
tmp=$(mktemp) || exit 70
report=$(mktemp) || exit 70
trap 'rm -f "$tmp" "$report"' EXIT
# The report is written to a file and sent in one piece: many small writes
# would become many small SSH packets.
exec 3>&1 >"$report"

# A JSON string from arbitrary text: escape \ and ", fold control characters.
esc() { printf '%s' "$1" | tr '\n\t\r' '   ' | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }
# Prints a JSON string's content; plain words (the usual case) without a fork.
pstr() {
  case $1 in
    *[!A-Za-z0-9._:+-]*) esc "$1" ;;
    *) printf '%s' "$1" ;;
  esac
}

# A command's stdout as raw JSON, or null plus its error text.
raw() {
  key=$1; shift
  if out=$("$@" 2>"$tmp"); then
    [ -n "$out" ] || out=null
    printf '"%s":%s,' "$key" "$out"
  else
    printf '"%s":null,"%s_error":"%s",' "$key" "$key" "$(esc "$(cat "$tmp")")"
  fi
}

printf '{"version":1,"hypervisor":"%s",' "$hv"
case $hv in
  kvm)
    kvm_observe "$R"
    kvm_observe_filters
    cfgdir="$R/etc/gitvps/kvm"
    cfgext=args
    ;;
  *)
    raw domains_long xl list -l
    if out=$(xl list 2>"$tmp"); then
      printf '"domains":['
      sep=
      printf '%s\n' "$out" | sed 1d | while read -r name id mem vcpus st rest; do
        [ -n "$name" ] || continue
        printf '%s{"name":"' "$sep"; pstr "$name"
        printf '","id":"'; pstr "$id"
        printf '","mem":"'; pstr "$mem"
        printf '","vcpus":"'; pstr "$vcpus"
        printf '","state":"'; pstr "$st"
        printf '"}'
        sep=,
      done
      printf '],'
    else
      printf '"domains":null,"domains_error":"%s",' "$(esc "$(cat "$tmp")")"
    fi
    cfgdir="$R/etc/xen/gitvps"
    cfgext=cfg
    ;;
esac
case $backend in
  lvm) raw lvs lvs --reportformat json -o lv_name,vg_name,lv_size --units b --nosuffix "$store" ;;
  file)
    # Raw images (<vps>.img: the file's size) and qcow2 images (<vps>.qcow2: the virtual size,
    # a big-endian u64 at byte 24 of the header, after the magic QFI\xfb; a .qcow2 without that
    # header is reported with its file size and format "unknown").
    printf '"images":['
    sep=
    for f in "$R$store"/*.img "$R$store"/*.qcow2; do
      [ -f "$f" ] || continue
      n=${f##*/}
      case $n in
        *.qcow2)
          n=${n%.qcow2}
          # shellcheck disable=SC2046 # od prints 32 hex words
          set -- $(od -An -tx1 -N32 "$f")
          if [ $# -eq 32 ] && [ "$1$2$3$4" = 514649fb ]; then
            fmt=qcow2
            size=$((0x${25}${26}${27}${28}${29}${30}${31}${32}))
          else
            fmt=unknown
            size=$(stat -c %s "$f")
          fi
          ;;
        *)
          n=${n%.img}
          fmt=raw
          size=$(stat -c %s "$f")
          ;;
      esac
      printf '%s{"name":"' "$sep"; pstr "$n"
      printf '","size":%s,"format":"%s"}' "$size" "$fmt"
      sep=,
    done
    printf '],'
    ;;
esac
printf '"configs":['
sep=
# One sha256sum for every config (a fork per file would dominate on a large node).
set -- "$cfgdir"/*."$cfgext"
if [ -f "$1" ]; then
  sha256sum "$@" | while read -r h f; do
    n=${f##*/}
    printf '%s{"name":"' "$sep"; pstr "${n%."$cfgext"}"
    printf '","sha256":"%s"}' "$h"
    sep=,
  done
fi
printf '],"records":['
sep=
for f in "$R/var/lib/gitvps/state"/*.json; do
  [ -f "$f" ] || continue
  n=${f##*/}
  # Records are one line of JSON that gitvps wrote; read them without a fork.
  IFS= read -r rec <"$f" || [ -n "$rec" ] || rec=null
  printf '%s{"name":"' "$sep"; pstr "${n%.json}"
  printf '","record":%s}' "$rec"
  sep=,
done
printf '],"consoles":['
sep=
set -- "$R/var/lib/gitvps/console"/*/.ssh/authorized_keys
if [ -f "$1" ]; then
  sha256sum "$@" | while read -r h f; do
    n=${f%/.ssh/authorized_keys}
    printf '%s{"name":"' "$sep"; pstr "${n##*/}"
    printf '","sha256":"%s"}' "$h"
    sep=,
  done
fi
printf '],"now":%s}\n' "$(date +%s)"
exec 1>&3 3>&-
cat "$report"
