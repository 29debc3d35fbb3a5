#!/usr/bin/env bash
# Cleanup progress that tells the truth (issue 15, point 5): while the old
# owners compact away what a ring change moved (the cleanup), `objmeta admin
# rebalance-status` (text and --json) and the coordinator's metrics show the
# compactions' table bytes read of their total, overall and per old owner,
# with a rate and an ETA measured from them; the bytes read grow and end
# equal to the total, and the summary of the finished change keeps them.
# The shards' cleanup-compact-rate knob makes the cleanup last a few
# seconds (no sleeps). Free ports. Usage: SRCROOT BUILDROOT
set -uo pipefail
src=$1
build=$2
cli=$build/client/objmeta
# shellcheck source=tests/ops/lib.sh
. "$(dirname "$0")/lib.sh"
fail() { echo "--- last output"; printf '%s\n' "${out:-}"; ops_logs; echo "check_cleanup_progress: $1"; exit 1; }
ops_init cleanup

# Each old owner holds ~4 MB of entries, read about twice (L0, then the deepest level in
# place): at 1 MiB/s its compaction takes a few seconds.
export OBJMETA_CLEANUP_COMPACT_RATE=1M
ops_cluster --shards 2
out=$("$build/bench/server/objmeta_bench" --addr "$coord" --preload --requests 1 --keys 8000 --value-size 1000 \
  --bucket cleanup-bkt --connections 4 2>&1) || fail "preloading 8000 records"
"$build/shard/objmeta-shard" --id=s3 --listen=127.0.0.1:0 --http-listen=off --data-dir="$tmp/s3" \
  --port-file="$tmp/s3.ports" >"$tmp/s3.log" 2>&1 &
ops_pids+=($!)
until_ok 20 test -s "$tmp/s3.ports" || fail "the new shard did not start"
s3=127.0.0.1:$(awk '$1 == "rpc" { print $2 }' "$tmp/s3.ports")
out=$("$cli" --addr "$coord" admin add-shard --id s3 --addr "$s3" 2>&1) || fail "add-shard"

# Follow the change to its end, keeping every status seen in the cleanup.
: >"$tmp/seen.json"
text_seen=""
end=$((SECONDS + 90))
while :; do
  out=$("$cli" --addr "$coord" --json admin rebalance-status 2>&1) || fail "rebalance-status --json"
  phase=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["phase"])' "$out")
  if [[ $phase == cleanup ]]; then
    printf '%s\n' "$out" | tr -d '\n' >>"$tmp/seen.json"
    echo >>"$tmp/seen.json"
    if [[ -z $text_seen ]]; then
      text=$("$cli" --addr "$coord" admin rebalance-status 2>&1) || fail "rebalance-status"
      if grep -qE 'old owners compacting: [0-9.]+ [KMG]?i?B of [0-9.]+ [KMG]?i?B \([0-9]+%\) [0-9.]+ [KMG]?i?B/s ETA [0-9]' <<<"$text"; then
        text_seen=$text
        curl -s "http://$coord_http/metrics" >"$tmp/cleanup.metrics"
      fi
    fi
  fi
  [[ $phase == idle ]] && break
  ((SECONDS < end)) || fail "the change did not finish within 90 s"
  sleep 0.2
done
out=$(cat "$tmp/seen.json")
[[ -n $text_seen ]] || fail "the text status never showed the compactions' bytes, rate and ETA"
grep -qE '^(s1|s2) +compacting +[0-9.]+ [KMG]?i?B of ' <<<"$text_seen" ||
  { out=$text_seen; fail "the text status has no line for the old owner compacting"; }
grep -qE '^objmeta_coord_rebalance_cleanup_bytes\{state="total",shard="s[12]"\} [1-9]' \
  "$tmp/cleanup.metrics" || fail "no per-owner cleanup bytes metric during the cleanup"
grep -qE '^objmeta_coord_rebalance_eta_seconds [0-9.]*[1-9]' "$tmp/cleanup.metrics" ||
  fail "no ETA metric during the cleanup"

final=$("$cli" --addr "$coord" --json admin rebalance-status 2>&1) || fail "rebalance-status after"
text=$("$cli" --addr "$coord" admin rebalance-status 2>&1) || fail "rebalance-status (text) after"
out=$(python3 - "$tmp/seen.json" "$final" <<'EOF'
import json, sys
seen = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
final = json.loads(sys.argv[2])
err = []
if len(seen) < 3:
    err.append(f"only {len(seen)} statuses seen in the cleanup")
done = [s["cleanup_bytes_done"] for s in seen]
if any(b < a for a, b in zip(done, done[1:])):
    err.append(f"cleanup bytes done went backwards: {done}")
if len(set(done)) < 3:
    err.append(f"cleanup bytes done did not grow (values {sorted(set(done))})")
for s in seen:
    if not 0 <= s["cleanup_bytes_done"] <= s["cleanup_bytes_total"]:
        err.append(f"done {s['cleanup_bytes_done']} > total {s['cleanup_bytes_total']}")
    if s["cleanup_bytes_total"] <= 0:
        err.append("a cleanup status without a total")
    for c in s["cleanup"]:
        if c["state"] == "compacting" and not 0 <= c["bytes_done"] <= c["bytes_total"]:
            err.append(f"owner {c['shard']}: {c['bytes_done']} of {c['bytes_total']}")
if not any(s["rate_bytes_per_sec"] > 0 and s["eta_ms"] > 0 for s in seen):
    err.append("no cleanup status with a rate and an ETA")
if final["phase"] != "idle" or final["cleanup_bytes_total"] <= 0 or \
        final["cleanup_bytes_done"] != final["cleanup_bytes_total"]:
    err.append(f"summary: {final['cleanup_bytes_done']} of {final['cleanup_bytes_total']}")
owners = {c["shard"]: c for c in final["cleanup"]}
if sorted(owners) != ["s1", "s2"]:
    err.append(f"summary owners {sorted(owners)}")
for c in owners.values():
    if c["state"] != "done" or c["bytes_total"] <= 0 or c["bytes_done"] != c["bytes_total"]:
        err.append(f"summary owner {c}")
print("\n".join(err) if err else f"ok: {len(seen)} statuses, done {done[0]} .. {done[-1]}")
sys.exit(1 if err else 0)
EOF
) || fail "cleanup progress"
echo "$out"
grep -qE '^cleanup: old owners compacted from .* \(compactions read ([0-9.]+ [KMG]?i?B) of \1 \(100%\)\)' <<<"$text" ||
  { out=$text; fail "the summary does not keep the compactions' bytes"; }
echo "check_cleanup_progress: ok"
