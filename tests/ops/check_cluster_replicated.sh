#!/usr/bin/env bash
# The README's run command's cluster (issue 18, point 6): scripts/cluster.sh
# by default, on free ports -- a 3-member etcd, 3 coordinators, 3 replica
# groups x 3 replicas -- and its demo, which kills the primary of group s1
# with kill -9 and lists the bucket (a listing needs every group) and reads
# a key right after:
#  - the demo ends ("demo done", exit 0) and both reads answered;
#  - group s1 has a new primary in term 2, the killed replica is back;
#  - stopping cluster.sh leaves no process of the cluster running.
# With --tls: every server serves TLS and the replicas ship to each other
# over mutual TLS (shard/REPLICATION.md).
# Skipped (77) when etcd is not installed.
# Usage: SRCROOT BUILDROOT [--tls]
set -uo pipefail
src=$1
build=$2
shift 2
# shellcheck source=tests/ops/lib.sh
. "$(dirname "$0")/lib.sh"
fail() { echo "--- last output"; printf '%s\n' "${out:-}"; ops_logs; echo "check_cluster_replicated: $1"; exit 1; }
command -v "${ETCD_BIN:-etcd}" >/dev/null || { echo "check_cluster_replicated: etcd not installed; skipped"; exit 77; }
ops_init cluster-replicated

out=$(timeout 150 "$src/scripts/cluster.sh" --build "$build" --port 0 --data "$d" --fresh --demo-only "$@" 2>&1)
rc=$?
[[ $rc -eq 0 ]] || fail "cluster.sh --demo-only: exit $rc"
grep -q "^cluster: group s3 " <<<"$out" || fail "no third replica group started"
grep -q "^== failover: kill -9 of group s1's primary" <<<"$out" || fail "the demo killed no primary"
after=$(sed -n '/^== failover/,$p' <<<"$out")
grep -q "answered [0-9]* ms after the kill" <<<"$after" || fail "the listing after the kill did not answer"
grep -q "readme.txt" <<<"$after" || fail "the listing after the kill lacks readme.txt"
grep -q "^hello from objmeta" <<<"$after" || fail "the read after the kill did not answer"
grep -Eq "^s1 +leader key: r[0-9] 2;" <<<"$after" || fail "group s1 is not led in term 2 after the kill"
grep -q "^cluster: demo done" <<<"$out" || fail "the demo did not end"
if [[ " $* " == *" --tls "* ]]; then
  n=$(grep -l "tls=on" "$d"/s*-r*.log | wc -l)
  [[ $n -eq 9 ]] || fail "--tls: $n of 9 replicas served TLS"
fi
gone() { ! pgrep -f -- "$d" >/dev/null; }
until_ok 20 gone || { out=$(pgrep -af -- "$d"); fail "processes left after cluster.sh stopped"; }
printf '%s\n' "$(grep "answered [0-9]* ms after the kill" <<<"$after")"
echo "check_cluster_replicated: ok"
