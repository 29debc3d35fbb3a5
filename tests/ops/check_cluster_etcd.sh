#!/usr/bin/env bash
# scripts/cluster.sh --etcd (issue 17, point 6), on free ports:
#  - a local etcd of 3 members on loopback, each with its data under the
#    cluster directory (DIR/etcd/m0..m2), and 3 coordinators;
#  - objmeta admin status over the three shows exactly one leader, every
#    coordinator at the same ring epoch; data written through one reads
#    back through the others;
#  - stopping cluster.sh stops every process, etcd's members included.
# Skipped (77) when etcd is not installed.
# Usage: SRCROOT BUILDROOT
set -uo pipefail
src=$1
build=$2
# shellcheck source=tests/ops/lib.sh
. "$(dirname "$0")/lib.sh"
fail() { echo "--- last output"; printf '%s\n' "${out:-}"; ops_logs; echo "check_cluster_etcd: $1"; exit 1; }
command -v "${ETCD_BIN:-etcd}" >/dev/null || { echo "check_cluster_etcd: etcd not installed; skipped"; exit 77; }
ops_init cluster-etcd
cli=$build/client/objmeta

ops_cluster --etcd --shards 2
coords=$(sed -n 's/^coords=//p' "$d/cluster.info")
[[ $(tr ',' '\n' <<<"$coords" | wc -l) -eq 3 ]] || fail "want 3 coordinators, cluster.info says: $coords"
for m in m0 m1 m2; do
  [[ -d $d/etcd/$m/member ]] || fail "etcd member $m has no data under $d/etcd"
done
members=$(pgrep -f -- "--data-dir $d/etcd/m" | wc -l)
[[ $members -eq 3 ]] || fail "want 3 etcd members running, found $members"
one_leader() {
  out=$("$cli" --addr "$coords" admin status --json 2>&1) || return 1
  [[ $(grep -o '"role":"leader"' <<<"$out" | wc -l) -eq 1 ]] &&
    [[ $(grep -o '"epoch":1,' <<<"$out" | wc -l) -eq 3 ]]
}
until_ok 30 one_leader || fail "admin status: not one leader and three coordinators at epoch 1"
IFS=, read -r c1 c2 c3 <<<"$coords"
printf 'via the first\n' >"$tmp/v"
out=$("$cli" --addr "$c1" put etcd-bucket/k "$tmp/v" 2>&1) || fail "put through $c1"
for c in "$c2" "$c3"; do
  out=$("$cli" --addr "$c" get etcd-bucket/k 2>&1) || fail "get through $c"
  [[ $out == "via the first" ]] || fail "get through $c read '$out'"
done

kill -TERM "$cpid"
wait "$cpid"
cpid=""
gone() { [[ $(pgrep -f -- "$d" | wc -l) -eq 0 ]]; }
until_ok 20 gone || { out=$(pgrep -af -- "$d"); fail "processes left after cluster.sh stopped"; }
echo "check_cluster_etcd: ok"
