# gitvps collect: print this node's usage counters as one framed document on stdout (read by
# gitvps-monitor's report.rs): `@@collect 1 HV`, then one `@@begin NAME [GUEST]` ... `@@end RC`
# section per source, as the tool printed it, then `@@done`.
# Run as `sh -c SCRIPT gitvps-collect ROOT BACKEND STORE HYPERVISOR` (xen or kvm; on KVM nodes
# the script starts with node/kvm.sh). POSIX sh, the hypervisor's own tools, coreutils and
# /proc, /sys only; nothing of gitvps is installed here, nothing is changed.
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
trap 'rm -f "$tmp" "$tmp.err" "$report"' EXIT
# The document is written to a file and sent in one piece, like observe's report.
exec 3>&1 >"$report"

# sec NAME GUEST CMD...: one section; GUEST is empty for the node's own sources. A failing
# command's error output follows what it printed, for the collector's log.
sec() {
  _s_name=$1 _s_guest=$2
  shift 2
  printf '@@begin %s%s\n' "$_s_name" "${_s_guest:+ $_s_guest}"
  if "$@" >"$tmp" 2>"$tmp.err"; then _s_rc=0; else _s_rc=$?; fi
  # Every line of a body ends with a newline, and none starts the frame's @@.
  [ "$_s_rc" -eq 0 ] || cat "$tmp.err" >>"$tmp"
  sed -e 's/^@@/ @@/' "$tmp"
  printf '@@end %s\n' "$_s_rc"
}

printf '@@collect 1 %s\n' "$hv"
sec stat "" cat /proc/stat
sec meminfo "" cat /proc/meminfo
sec loadavg "" cat /proc/loadavg
case $backend in
  lvm) sec vgs "" vgs --noheadings --units b --nosuffix -o vg_free "$store" ;;
  *) sec df "" df -P -B1 "$R$store" ;;
esac
case $hv in
  kvm)
    sec clk "" getconf CLK_TCK
    cg=${KVM_CGROUP_ROOT:-/sys/fs/cgroup}
    for run in "$R/var/lib/gitvps/kvm"/*/; do
      run=${run%/}
      vps=${run##*/}
      kvm_alive "$run" || continue
      # shellcheck disable=SC2154 # set by kvm_alive
      pid=$_kvm_pid
      sec kvm "$vps" echo "$pid"
      sec pidstat "$vps" cat "/proc/$pid/stat"
      [ -f "$cg/gitvps.slice/$vps/cpu.stat" ] && sec cpustat "$vps" cat "$cg/gitvps.slice/$vps/cpu.stat"
      sec blockstats "$vps" kvm_qmp "$run/qmp.sock" '{"execute":"query-blockstats"}'
      tap=
      [ -f "$R/etc/gitvps/kvm/$vps.args" ] && tap=$(kvm_directive "$R/etc/gitvps/kvm/$vps.args" tap)
      case $tap in
        '' | *[!A-Za-z0-9_.-]* | -*) ;;
        *)
          d=/sys/class/net/$tap/statistics
          [ -d "$d" ] && sec tap "$vps" sh -c 'for f in rx_bytes rx_packets tx_bytes tx_packets; do
            IFS= read -r v <"$1/$f" || exit 1; printf "%s %s\n" "$f" "$v"; done' gitvps-tap "$d"
          ;;
      esac
    done
    ;;
  *)
    sec xl-list "" xl list
    # -f: whole names (xentop cuts them to 10 characters otherwise); -n: each vif's bytes and
    # packets (the row itself has KiB only).
    sec xentop "" xentop -b -i 1 -f -n
    ;;
esac
printf '@@done\n'
exec 1>&3 3>&-
cat "$report"
