#!/usr/bin/env bash
# add-shard asks the new shard its id first (issue 15, point 1): a shard
# started with --id=s5 and added as s6 is refused up front with exit 5 and a
# message saying what to do, no change starts (rebalance-status stays idle),
# a coordinator's address is refused as not a shard, and the same shard
# added under its own id goes through, with progress lines that do not read
# as failures and a summary in rebalance-status afterwards (point 5).
# Free ports. Usage: SRCROOT BUILDROOT
set -uo pipefail
src=$1
build=$2
cli=$build/client/objmeta
# shellcheck source=tests/ops/lib.sh
. "$(dirname "$0")/lib.sh"
fail() { echo "--- last output"; printf '%s\n' "${out:-}"; ops_logs; echo "check_add_shard_id: $1"; exit 1; }
ops_init addid

ops_cluster --shards 2
"$build/shard/objmeta-shard" --id=s5 --listen=127.0.0.1:0 --http-listen=off --data-dir="$tmp/s5" \
  --port-file="$tmp/s5.ports" >"$tmp/s5.log" 2>&1 &
ops_pids+=($!)
until_ok 20 test -s "$tmp/s5.ports" || fail "the new shard did not start"
s5=127.0.0.1:$(awk '$1 == "rpc" { print $2 }' "$tmp/s5.ports")

out=$("$cli" --addr "$coord" admin add-shard --id s6 --addr "$s5" 2>&1)
rc=$?
[[ $rc -eq 5 ]] || fail "add-shard with the wrong id: exit $rc, want 5"
grep -qF "has id s5, not s6" <<<"$out" || fail "the refusal does not name both ids"
grep -qF -- "--id=s6" <<<"$out" || fail "the refusal does not say how to fix it"
out=$("$cli" --addr "$coord" admin rebalance-status 2>&1) || fail "rebalance-status failed"
grep -qF "no ring change in progress" <<<"$out" || fail "a change started after the refusal"

out=$("$cli" --addr "$coord" admin add-shard --id s7 --addr "$coord" 2>&1)
rc=$?
[[ $rc -eq 5 ]] || fail "add-shard of a coordinator: exit $rc, want 5"
grep -qF "is not an objmeta-shard" <<<"$out" || fail "a coordinator is not refused as not a shard"

# Some records to move, then the change under its own id, followed to the end.
printf 'v\n' >"$tmp/v"
for i in $(seq 1 100); do
  "$cli" --addr "$coord" put "bkt/k$i" "$tmp/v" >/dev/null || fail "put bkt/k$i"
done
out=$(timeout 60 "$cli" --addr "$coord" admin add-shard --id s5 --addr "$s5" --wait 2>&1) ||
  fail "add-shard with the right id failed"
grep -qF "done: ring epoch" <<<"$out" || fail "add-shard --wait did not finish"
! grep -qE "last error|not checked yet" <<<"$out" || fail "progress reads as a failure"
# After the change: its summary (issue 15, point 5), every record still there.
out=$("$cli" --addr "$coord" admin rebalance-status 2>&1) || fail "rebalance-status after the change"
grep -qE "^last change: add-shard s5 at $s5 weight 1, done at epoch 2: [0-9]+ records" <<<"$out" ||
  fail "rebalance-status does not summarise the last change"
out=$(curl -s "http://$coord_http/metrics")
grep -q '^objmeta_coord_rebalance_phase{phase="idle"} 1' <<<"$out" || fail "rebalance phase metric"
grep -qE '^objmeta_coord_rebalance_records_copied [1-9]' <<<"$out" || fail "records copied metric"
n=$("$cli" --addr "$coord" --json ls bkt | grep -c '"key"')
[[ $n -eq 100 ]] || fail "after the change ls bkt shows $n keys, want 100"
echo "check_add_shard_id: ok"
