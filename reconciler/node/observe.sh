# gitvps observe: print this node's live state as one JSON document on stdout.
# Run as `sh -s -- ROOT BACKEND STORE` with this script on stdin. POSIX sh, the
# hypervisor's own tools and coreutils only; nothing of gitvps is installed here.
set -u
R=${1%/}
backend=$2
store=$3
PATH="$R/usr/local/sbin:$R/usr/sbin:$R/sbin:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
export PATH
LC_ALL=C
export LC_ALL
tmp=$(mktemp) || exit 70
trap 'rm -f "$tmp"' EXIT

# A JSON string from arbitrary text: escape \ and ", fold control characters.
esc() { printf '%s' "$1" | tr '\n\t\r' '   ' | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }

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

printf '{"version":1,'
printf '"uname":"%s",' "$(esc "$(uname -sr)")"
raw domains_long xl list -l
if out=$(xl list 2>"$tmp"); then
  printf '"domains":['
  sep=
  printf '%s\n' "$out" | sed 1d | while read -r name id mem vcpus st rest; do
    [ -n "$name" ] || continue
    printf '%s{"name":"%s","id":"%s","mem":"%s","vcpus":"%s","state":"%s"}' "$sep" \
      "$(esc "$name")" "$(esc "$id")" "$(esc "$mem")" "$(esc "$vcpus")" "$(esc "$st")"
    sep=,
  done
  printf '],'
else
  printf '"domains":null,"domains_error":"%s",' "$(esc "$(cat "$tmp")")"
fi
case $backend in
  lvm) raw lvs lvs --reportformat json -o lv_name,vg_name,lv_size --units b --nosuffix "$store" ;;
  file)
    printf '"images":['
    sep=
    for f in "$R$store"/*.img; do
      [ -f "$f" ] || continue
      n=${f##*/}
      printf '%s{"name":"%s","size":%s}' "$sep" "$(esc "${n%.img}")" "$(stat -c %s "$f")"
      sep=,
    done
    printf '],'
    ;;
esac
printf '"configs":['
sep=
for f in "$R/etc/xen/gitvps"/*.cfg; do
  [ -f "$f" ] || continue
  n=${f##*/}
  h=$(sha256sum "$f") || h=
  printf '%s{"name":"%s","sha256":"%s"}' "$sep" "$(esc "${n%.cfg}")" "${h%% *}"
  sep=,
done
printf '],"records":['
sep=
for f in "$R/var/lib/gitvps/state"/*.json; do
  [ -f "$f" ] || continue
  n=${f##*/}
  printf '%s{"name":"%s","record":%s}' "$sep" "$(esc "${n%.json}")" "$(cat "$f")"
  sep=,
done
printf '],"now":%s}\n' "$(date +%s)"
