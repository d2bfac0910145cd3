
# gitvps import on a KVM node: after the observe report, one more JSON line with the arguments
# each running guest's QEMU was started with (/proc/PID/cmdline, NUL-separated), read by
# `planner::import::found_kvm`. Read only, like the report.
kvm_import_args() {
  printf '{"args":['
  _ki_sep=
  for _ki_run in "$R/var/lib/gitvps/kvm"/*/; do
    _ki_run=${_ki_run%/}
    kvm_alive "$_ki_run" || continue
    printf '%s{"name":"' "$_ki_sep"
    _kvm_json "${_ki_run##*/}"
    printf '","argv":['
    _ki_s=
    # shellcheck disable=SC2154 # _kvm_pid: set by kvm_alive (node/kvm.sh)
    while IFS= read -r _ki_a; do
      printf '%s"' "$_ki_s"
      _kvm_json "$_ki_a"
      printf '"'
      _ki_s=,
    done <<ARGS
$(tr '\000' '\n' <"/proc/$_kvm_pid/cmdline")
ARGS
    printf ']}'
    _ki_sep=,
  done
  printf ']}\n'
}
kvm_import_args
