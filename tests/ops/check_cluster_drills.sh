#!/usr/bin/env bash
# The local cluster as a practice ground (issue 15, points 2 and 3):
#  - a second scripts/cluster.sh (or scripts/run.sh) on the same data
#    directory is refused with exit 3, says how to reach the running cluster,
#    and changes nothing (the running shard's log and port file stay as they
#    were; run.sh neither installs nor builds);
#  - a shard stopped cleanly (SIGTERM) stays stopped and the rest runs on;
#  - with --restart a shard killed with SIGKILL is started again on the same
#    port, and the coordinator and the other shards keep their pids;
#  - stopping cluster.sh stops every process it started.
# All listeners are on free ports (--port 0). Usage: SRCROOT BUILDROOT
set -uo pipefail
src=$1
build=$2
cli=$build/client/objmeta
# shellcheck source=tests/ops/lib.sh
. "$(dirname "$0")/lib.sh"
fail() { ops_logs; echo "check_cluster_drills: $1"; exit 1; }
alive() { kill -0 "$1" 2>/dev/null; }
ops_init drill

ops_cluster --restart
pid_s1=$(cat "$d/s1.pid") pid_s2=$(cat "$d/s2.pid") pid_s3=$(cat "$d/s3.pid") pid_c=$(cat "$d/coord.pid")
ports_s2=$(cat "$d/s2.ports")
log_before=$(wc -c <"$d/s1.log")

# A second cluster on the same directory: refused, nothing touched.
out2=$("$src/scripts/cluster.sh" --build "$build" --port 0 --data "$d" 2>&1)
rc=$?
[[ $rc -eq 3 ]] || { echo "$out2"; fail "second start: exit $rc, want 3"; }
for want in "already runs on $d" "--addr $coord" "--port" "--data"; do
  grep -qF -- "$want" <<<"$out2" || { echo "$out2"; fail "second start does not say: $want"; }
done
# run.sh refuses the same way before it installs or builds anything.
out3=$("$src/scripts/run.sh" --data "$d" 2>&1)
rc=$?
[[ $rc -eq 3 ]] || { echo "$out3"; fail "run.sh on a running cluster: exit $rc, want 3"; }
grep -qF -- "--addr $coord" <<<"$out3" || { echo "$out3"; fail "run.sh does not say how to reach it"; }
! grep -q "install-deps" <<<"$out3" || fail "run.sh ran install-deps before refusing"
(( $(wc -c <"$d/s1.log") >= log_before )) || fail "the second start emptied s1.log"
[[ -s $d/s1.ports && -s $d/coord.ports ]] || fail "the second start removed port files"
"$cli" --addr "$coord" ping >/dev/null || fail "the coordinator stopped answering after the second start"

# A clean stop of s3: reported, not restarted, the rest runs on.
kill -TERM "$pid_s3"
until_ok 20 grep -q "s3 stopped; the other 3 keep running" "$tmp/cluster.out" || fail "s3's stop not reported"
# A crash of s2: restarted on the same port.
kill -KILL "$pid_s2"
until_ok 20 grep -q "restarted s2" "$tmp/cluster.out" || fail "s2 was not restarted"
[[ $(cat "$d/s2.pid") != "$pid_s2" ]] || fail "s2.pid still names the killed process"
[[ $(cat "$d/s2.ports") == "$ports_s2" ]] || fail "s2 came back on other ports"
[[ ! -e $d/s3.pid ]] || fail "s3 was restarted after a clean stop"
for p in "$pid_s1" "$pid_c" "$cpid"; do alive "$p" || fail "pid $p stopped with s2 or s3"; done
up() { "$cli" --addr "$coord" ping 2>/dev/null | grep -q 'shards_up=2/3'; }
until_ok 20 up || fail "the coordinator does not see s1 and the restarted s2 up"

# Stopping cluster.sh stops everything it started.
pid_s2b=$(cat "$d/s2.pid")
kill -TERM "$cpid"
wait "$cpid"
cpid=""
for p in "$pid_s1" "$pid_s2b" "$pid_c"; do
  ! alive "$p" || fail "pid $p still runs after cluster.sh stopped"
done
[[ ! -e $d/cluster.info ]] || fail "cluster.info left behind"
echo "check_cluster_drills: ok"
