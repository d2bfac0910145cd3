# gitvps node script: the apply envelope. Takes the node's lock, observes, prints the observed
# marker, then reads `go`, the backup repository's secrets (three lines: the restic password and
# the S3 keys, empty when none) and the steps script from its input; anything else: exits, acting
# on nothing. The secrets go to the steps script in its environment only, never into a file.
# Run as `sh -c SCRIPT gitvps-apply ROOT BACKEND PLACE HYPERVISOR OBSERVE_SCRIPT NOW`; the marker
# and limit variables are put in front of it by the planner (planner::protocol).
# shellcheck shell=sh disable=SC2154 # the M_* marker variables come from the header (planner::protocol)
R=${1%/}
mkdir -p "$R/var/lib/gitvps/state" || exit 70
exec 9>"$R/var/lib/gitvps/lock" || exit 70
if ! flock -w "$LOCK_WAIT_SECS" 9; then echo "$M_LOCKED"; exit "$EXIT_LOCKED"; fi
# The observe script runs in a subshell of this one (a fork, no new sh to exec).
observe=$5
(set -- "$1" "$2" "$3" "$4" "$6" && eval "$observe") || exit $?
echo "$M_OBSERVED"
IFS= read -r go || exit 0
[ "$go" = go ] || exit 0
IFS= read -r pw || exit 0
IFS= read -r ak || exit 0
IFS= read -r sk || exit 0
steps=$(mktemp) || exit 70
cat >"$steps"
GITVPS_RESTIC_PW=$pw GITVPS_RESTIC_AK=$ak GITVPS_RESTIC_SK=$sk sh "$steps" "$R"
rc=$?
rm -f "$steps"
exit $rc
