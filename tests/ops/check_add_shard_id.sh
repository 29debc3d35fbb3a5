#!/usr/bin/env bash
# add-shard asks the new shard its id first (issue 15, point 1): a shard
# started with --id=s5 and added as s6 is refused up front with exit 5 and a
# message saying what to do, no change starts (rebalance-status stays idle),
# a coordinator's address is refused as not a shard, and the same shard
# added under its own id goes through. Free ports. Usage: SRCROOT BUILDROOT
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

out=$(timeout 60 "$cli" --addr "$coord" admin add-shard --id s5 --addr "$s5" --wait 2>&1) ||
  fail "add-shard with the right id failed"
grep -qF "done: ring epoch" <<<"$out" || fail "add-shard --wait did not finish"
echo "check_add_shard_id: ok"
