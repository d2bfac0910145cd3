# gitvps node script: the runtime of a steps script (POSIX sh). The planner puts the marker
# variables in front and the step functions s0, s1, ... and their `run` lines after it.
# shellcheck shell=sh disable=SC2154,SC2034 # the M_* marker variables come from the header (planner::protocol); bad is read by the closing line the planner appends
set -u
R=$1
# The backup repository's secrets (apply.sh): out of the environment at once, so that no step's
# program sees them; a restore hands them to restic on its input (see node/backup.sh).
rs_pw=${GITVPS_RESTIC_PW-}
rs_ak=${GITVPS_RESTIC_AK-}
rs_sk=${GITVPS_RESTIC_SK-}
unset GITVPS_RESTIC_PW GITVPS_RESTIC_AK GITVPS_RESTIC_SK
PATH="$R/usr/local/sbin:$R/usr/sbin:$R/sbin:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
export PATH
LC_ALL=C
export LC_ALL
# Each step's output goes to its own file here, shown (its tail) when it fails.
logs=$(mktemp -d) || exit 70
trap 'rm -rf "$logs"' EXIT
# VPSes with a failed step: their later steps are skipped, the others go on.
failed=" "
# Whether a group (one VPS's steps) failed, and the groups running in the background.
bad=0
pids=
running=0
record() {
  d="$R/var/lib/gitvps/state"
  { [ -d "$d" ] || mkdir -p "$d"; } && printf '%s\n' "$2" >"$d/.$1.tmp" && mv "$d/.$1.tmp" "$d/$1.json"
}
# One `lvs` for every disk check of the run: `lv_list VG` (put at the start by the planner when
# a step creates or removes a disk) keeps the group's LV names as " a b ". Each VPS's steps touch
# only that VPS's LVs, and `lv_made`/`lv_gone` keep its own entry up to date (in its group's
# subshell too). When the listing fails, `has_lv` asks `lvs` for each LV, as before.
lv_names=
lv_listed=0
lv_list() {
  out=$(lvs --noheadings -o lv_name "$1" 2>/dev/null) || return 0
  set -f
  lv_names=" "
  for l in $out; do lv_names="$lv_names$l "; done
  set +f
  lv_listed=1
}
# has_lv VG LV: whether the logical volume exists.
has_lv() {
  if [ "$lv_listed" = 1 ]; then
    case $lv_names in *" $2 "*) return 0 ;; esac
    return 1
  fi
  lvs "$1/$2" >/dev/null 2>&1
}
lv_made() { lv_names="$lv_names$1 "; }
lv_gone() {
  case $lv_names in *" $1 "*) lv_names="${lv_names%% "$1" *} ${lv_names#* "$1" }" ;; esac
}
# The same for Xen's domains: one `xl list` (`dom_list`, put at the start when a step starts a
# domain) for the checks of the starts; `has_dom NAME` asks `xl list NAME` when it failed.
dom_names=
dom_listed=0
dom_list() {
  out=$(xl list 2>/dev/null) || return 0
  dom_names=" "
  head=1
  while read -r name rest; do
    [ -z "$head" ] || { head=; continue; }
    [ -z "$name" ] || dom_names="$dom_names$name "
  done <<LIST
$out
LIST
  dom_listed=1
}
has_dom() {
  if [ "$dom_listed" = 1 ]; then
    case $dom_names in *" $1 "*) return 0 ;; esac
    return 1
  fi
  xl list "$1" >/dev/null 2>&1
}
# A VPS's stop, destroy and start update its entry: a start after its own stop is never skipped.
dom_made() { dom_names="$dom_names$1 "; }
dom_gone() {
  case $dom_names in *" $1 "*) dom_names="${dom_names%% "$1" *} ${dom_names#* "$1" }" ;; esac
}
# unheld WHAT FILE: fails, naming them, when processes hold FILE open (their /proc/PID/fd), so
# that it is not touched: a guest started by hand, a stale QEMU, a guest that still boots an ISO.
unheld() {
  d=$(readlink -f "$2" 2>/dev/null) || d=$2
  d=$(printf '%s' "$d" | sed 's/[][*?\\]/\\&/g')
  users=$(find /proc/[0-9]*/fd -lname "$d" 2>/dev/null | cut -d/ -f3 | sort -u | tr '\n' ' ')
  [ -z "$users" ] && return 0
  for p in $users; do printf 'gitvps: the %s %s is in use by process %s (%s): not touching it\n' "$1" "$2" "$p" "$(cat "/proc/$p/comm" 2>/dev/null)" >&2; done
  return 1
}
# Refuses to touch a disk that a process holds open.
disk_free() { unheld disk "$1"; }
# fetch_iso URL SHA256 MAX_BYTES FILE: an ISO into the node's cache (FILE is named by its
# sha256), over http(s) only (redirects too), at most MAX_BYTES, kept only when its sha256 is
# SHA256; a cached FILE is checked again and kept. VPSes that share an ISO fetch it side by
# side: one fetch at a time (a lock on the cache folder), so the later ones find it cached.
fetch_iso() {
  mkdir -p "${4%/*}" || return 1
  (
    flock 8 || exit 1
    fetch_iso_now "$@"
  ) 8<"${4%/*}"
}
fetch_iso_now() {
  if [ -f "$4" ] && [ "$(sha256sum <"$4" | cut -d' ' -f1)" = "$2" ]; then
    printf 'gitvps: %s is in the cache already\n' "$4"
    return 0
  fi
  t="$4.part"
  rm -f "$t"
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --proto =http,https --proto-redir =http,https --max-redirs 5 \
      --connect-timeout 30 --max-filesize "$3" -o "$t" -- "$1" || {
      rc=$?
      rm -f "$t"
      [ "$rc" = 63 ] && printf 'gitvps: %s is larger than %s bytes: refused\n' "$1" "$3" >&2
      printf 'gitvps: fetching %s failed (curl exit %s); nothing attached\n' "$1" "$rc" >&2
      return 1
    }
  elif command -v wget >/dev/null 2>&1; then
    # wget has no size bound: the stream is cut one byte past it and refused below.
    { wget -q -T 30 --max-redirect=5 -O - -- "$1" || echo "gitvps-wget-failed" >"$t.err"; } |
      head -c "$(($3 + 1))" >"$t"
    if [ -e "$t.err" ]; then
      rm -f "$t" "$t.err"
      printf 'gitvps: fetching %s failed (wget); nothing attached\n' "$1" >&2
      return 1
    fi
  else
    printf 'gitvps: neither curl nor wget on this node: cannot fetch %s\n' "$1" >&2
    return 1
  fi
  n=$(wc -c <"$t") || return 1
  if [ "$n" -gt "$3" ]; then
    rm -f "$t"
    printf 'gitvps: %s is larger than %s bytes: refused; nothing attached\n' "$1" "$3" >&2
    return 1
  fi
  got=$(sha256sum <"$t" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    rm -f "$t"
    printf 'gitvps: sha256 mismatch for %s: expected %s, got %s; nothing attached\n' "$1" "$2" "$got" >&2
    return 1
  fi
  mv -f "$t" "$4"
}
run() {
  i=$1
  v=$2
  shift 2
  case $failed in
    *" $v "*) echo "$M_SKIP $i"; return 0 ;;
  esac
  echo "$M_BEGIN $i"
  # One log file per VPS, truncated by each of its steps (which run one after another): no
  # `rm` per step; the folder goes at the end.
  if "$@" >"$logs/$v" 2>&1; then
    echo "$M_OK $i"
  else
    rc=$?
    # awk ends every line, the last one too (a console's last line may have no newline, and
    # must not swallow the marker after it), and writes each line at once: with groups
    # running side by side, a line is never split by another group's.
    tail -n 30 "$logs/$v" | awk -v p="$M_OUT $i" '{ print p " " substr($0, 1, 2000); fflush() }'
    echo "$M_FAIL $i $rc"
    failed="$failed$v "
  fi
}
# node_step I FN: a step of the node rather than of one VPS (the removal of a cached ISO), run
# after every VPS's steps; skipped when one of them failed, since a guest that was to let go
# of what it removes may still hold it.
node_step() {
  if [ "$bad" != 0 ]; then
    echo "$M_SKIP $1"
    return 0
  fi
  run "$1" "@$1" "$2"
}
# group FN: runs one VPS's steps (the function FN). With AT_ONCE above 1 it runs in the
# background, at most AT_ONCE groups at a time (a full batch is waited for); otherwise here.
group() {
  if [ "$AT_ONCE" -le 1 ]; then
    "$1"
    [ "$failed" = " " ] || bad=1
    return 0
  fi
  ("$1" && [ "$failed" = " " ]) &
  pids="$pids $!"
  running=$((running + 1))
  [ "$running" -lt "$AT_ONCE" ] || finish
}
# finish: waits for the groups in the background; a phase ends with it.
finish() {
  for p in $pids; do
    wait "$p" || bad=1
  done
  pids=
  running=0
}
