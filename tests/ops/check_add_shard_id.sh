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
tmp=$(mktemp -d "${TMPDIR:-/tmp}/objmeta-ops-addid-XXXXXX")
d=$tmp/c
cpid="" spid=""
cleanup() {
  [[ -n $spid ]] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
  [[ -n $cpid ]] && kill -TERM "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
  [[ -n ${TU_KEEP:-} ]] || rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "--- last output"; printf '%s\n' "${out:-}"
  for f in "$d"/*.log "$tmp"/*.log; do echo "--- $f"; tail -20 "$f"; done
  echo "check_add_shard_id: $1"
  exit 1
}
until_ok() { local end=$((SECONDS + $1)); shift; until "$@"; do ((SECONDS < end)) || return 1; sleep 0.05; done; }

"$src/scripts/cluster.sh" --build "$build" --port 0 --shards 2 --data "$d" >"$tmp/cluster.out" 2>&1 &
cpid=$!
until_ok 60 grep -q '^coord=' "$d/cluster.info" 2>/dev/null || fail "the cluster did not come up"
coord=$(sed -n 's/^coord=//p' "$d/cluster.info")
"$build/shard/objmeta-shard" --id=s5 --listen=127.0.0.1:0 --http-listen=off --data-dir="$tmp/s5" \
  --port-file="$tmp/s5.ports" >"$tmp/s5.log" 2>&1 &
spid=$!
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
