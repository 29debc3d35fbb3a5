#!/usr/bin/env bash
# Request ids carried from coordinator to shard (issue 15, point 7), against
# a local cluster of 3 shards with log-format=json and log-level=debug:
#  - every line of every log is one JSON object;
#  - a Store through the coordinator with --request-id: the id is in the
#    coordinator's log and in the owning shard's (found by asking each shard
#    for the key directly), in no other shard's;
#  - a List with --request-id: the id is in the coordinator's log and in
#    every shard's;
#  - error answers: a bad bucket (refused by the coordinator) and a failed
#    --if-version (refused by the owning shard) are logged with their status
#    and the id, and the tool prints the id it used;
#  - the tool makes an id when given none and prints it on an error, and
#    sends it with the admin commands too; the coordinator makes one for a
#    request without any (the load generator's) and passes it to the shard.
# Usage: SRCROOT BUILDROOT
set -uo pipefail
src=$1
build=$2
# shellcheck source=tests/ops/lib.sh
. "$(dirname "$0")/lib.sh"
fail() { echo "--- last output"; printf '%s\n' "${out:-}"; ops_logs; echo "check_request_ids: $1"; exit 1; }
ops_init rid

# The servers read OBJMETA_<KEY> (config precedence: default, file, environment, flags).
OBJMETA_LOG_FORMAT=json OBJMETA_LOG_LEVEL=debug ops_cluster --shards 3
cli() { "$build/client/objmeta" --addr "$coord" "$@"; }
shards=(s1 s2 s3)
echo "a record" >"$tmp/data"

# logged ID PROCESS: the lines of PROCESS's log (JSON) with request_id ID,
# as "level module msg" lines, by a python filter (no jq dependency).
logged() {
  python3 - "$d/$2.log" "$1" <<'EOF'
import json, sys
path, rid = sys.argv[1:]
for n, line in enumerate(open(path, errors="replace"), 1):
    line = line.strip()
    if not line.startswith("{"):
        continue  # cluster.sh's own notes
    try:
        o = json.loads(line)
    except ValueError:
        print(f"BAD-JSON line {n}: {line[:200]}")
        continue
    if o.get("request_id") == rid:
        print(o["level"], o["module"], o["msg"])
EOF
}
# wait_logged ID PROCESS PATTERN: a line with ID whose text matches PATTERN shows up (logs are
# written as the answers leave, so poll briefly).
wait_logged() {
  local end=$((SECONDS + 10))
  until logged "$1" "$2" | grep -qE "$3"; do
    ((SECONDS < end)) || { out=$(logged "$1" "$2"); return 1; }
    sleep 0.1
  done
}

out=$(cli put --request-id ops-store-1 rid-bucket/k1 "$tmp/data" 2>&1) || fail "put"
wait_logged ops-store-1 coord 'request op=store .*status=OK' ||
  fail "the coordinator's log has no store line with request id ops-store-1"
owner=""
for s in "${shards[@]}"; do
  s_addr=127.0.0.1:$(awk '$1 == "rpc" { print $2 }' "$d/$s.ports")
  if "$build/client/objmeta" --addr "$s_addr" head rid-bucket/k1 >/dev/null 2>&1; then
    owner=$s
    wait_logged ops-store-1 "$s" 'request op=store .*status=OK' ||
      fail "the owning shard $s's log has no store line with request id ops-store-1"
  elif [[ -n $(logged ops-store-1 "$s" | grep 'op=store') ]]; then
    out=$(logged ops-store-1 "$s")
    fail "shard $s does not own rid-bucket/k1 but logged its store"
  fi
done
[[ -n $owner ]] || fail "no shard holds rid-bucket/k1"

out=$(cli ls --request-id ops-list-1 rid-bucket 2>&1) || fail "ls"
[[ $out == *k1* ]] || fail "ls does not show k1"
wait_logged ops-list-1 coord 'request op=list .*status=OK' ||
  fail "the coordinator's log has no list line with request id ops-list-1"
for s in "${shards[@]}"; do
  wait_logged ops-list-1 "$s" 'request op=list .*status=OK' ||
    fail "shard $s's log has no list line with request id ops-list-1 (List asks every shard)"
done

# Error answers: refused by the coordinator, and by the owning shard.
out=$(cli put --request-id ops-bad-1 Bad_Bucket/k1 "$tmp/data" 2>&1) && fail "a bad bucket was stored"
[[ $out == *"(request id ops-bad-1)"* ]] || fail "the tool does not print the request id of a failure"
wait_logged ops-bad-1 coord 'op=store .*status=INVALID_ARGUMENT .*msg="bucket: ' ||
  fail "the coordinator's log has no INVALID_ARGUMENT line with request id ops-bad-1"
out=$(cli put --request-id ops-pre-1 --if-version 1 rid-bucket/k1 "$tmp/data" 2>&1) &&
  fail "a store with a stale --if-version succeeded"
wait_logged ops-pre-1 "$owner" 'op=store .*status=PRECONDITION_FAILED' ||
  fail "the owning shard's log has no PRECONDITION_FAILED line with request id ops-pre-1"
wait_logged ops-pre-1 coord 'op=store .*status=PRECONDITION_FAILED' ||
  fail "the coordinator's log has no PRECONDITION_FAILED line with request id ops-pre-1"

# An id made by the tool, printed with the error, found in the logs.
out=$(cli head rid-bucket/missing 2>&1) && fail "head of a missing key succeeded"
made=$(sed -n 's/.*(request id \(cli-[0-9a-f]*\)).*/\1/p' <<<"$out")
[[ -n $made ]] || fail "the tool printed no request id it made"
wait_logged "$made" coord 'op=head .*status=NOT_FOUND' || fail "the made id $made is not in the coordinator's log"

# The admin commands carry the tool's id too.
out=$(cli --request-id ops-admin-1 admin rebalance-status 2>&1) || fail "rebalance-status"
wait_logged ops-admin-1 coord 'request op=rebalance_status .*status=OK' ||
  fail "the coordinator's log has no rebalance_status line with request id ops-admin-1"

# A request without an id (the load generator sends none): the coordinator makes one and
# passes it to the owning shard.
out=$("$build/bench/server/objmeta_bench" --addr "$coord" --preload --keys 1 --requests 1 --bucket rid-bench \
  2>&1) || fail "objmeta_bench --preload"
# made_id: the id of the coordinator's first OK store line whose id it made
made_id() {
  python3 - "$d/coord.log" <<'PY'
import json, re, sys
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("{"):
        o = json.loads(line)
        if re.match(r"request op=store .*status=OK", o["msg"]) and \
                re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", o.get("request_id", "")):
            print(o["request_id"])
            break
PY
}
until_ok 10 test -n "$(made_id)" || fail "the coordinator made no request id for a store without one"
made=$(made_id)
found=0
for s in "${shards[@]}"; do
  logged "$made" "$s" | grep -q 'op=store .*status=OK' && found=$((found + 1))
done
[[ $found -eq 1 ]] || fail "the coordinator's id $made is in $found shard logs, want 1 (the owner)"
for p in coord "${shards[@]}"; do
  out=$(logged none "$p" | grep BAD-JSON) && fail "$p's log has lines that are not JSON"
done
echo "check_request_ids: ok (owner of rid-bucket/k1: $owner)"
