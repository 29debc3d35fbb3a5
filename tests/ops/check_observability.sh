#!/usr/bin/env bash
# Observability an operator expects (issue 15, point 7), against a local
# cluster on free ports:
#  - the coordinator's /healthz is 200 "ok" with every shard up, 429
#    "degraded" naming the shard when one is down, while /readyz stays 200;
#  - every /metrics answer passes `promtool check metrics` and carries the
#    process_* metrics and objmeta_build_info;
#  - deploy/prometheus passes `promtool check rules` / `check config`, the
#    Grafana dashboard is sane JSON (unique panel ids, grid positions,
#    queries), and every objmeta_* / process_* metric that the rules and the
#    dashboard query exists in the servers' /metrics.
# Usage: SRCROOT BUILDROOT
set -uo pipefail
src=$1
build=$2
if ! command -v promtool >/dev/null; then
  echo "check_observability: promtool not installed (Debian package prometheus; scripts/install-deps.sh); skipping"
  exit 77
fi
# shellcheck source=tests/ops/lib.sh
. "$(dirname "$0")/lib.sh"
fail() { echo "--- last output"; printf '%s\n' "${out:-}"; ops_logs; echo "check_observability: $1"; exit 1; }
ops_init obs

rules=$src/deploy/prometheus/objmeta-alerts.yml
dash=$src/deploy/grafana/objmeta-dashboard.json
out=$(promtool check rules "$rules" 2>&1) || fail "promtool check rules"
out=$(cd "$src/deploy/prometheus" && promtool check config prometheus.yml 2>&1) || fail "promtool check config"

ops_cluster
s1_http=127.0.0.1:$(awk '$1 == "http" { print $2 }' "$d/s1.ports")

# Metrics: valid exposition, process metrics, build info.
curl -sf "http://$coord_http/metrics" >"$tmp/coord.metrics" || fail "coordinator /metrics"
curl -sf "http://$s1_http/metrics" >"$tmp/shard.metrics" || fail "shard /metrics"
for m in coord shard; do
  out=$(promtool check metrics <"$tmp/$m.metrics" 2>&1) || fail "promtool check metrics ($m)"
  for want in process_cpu_seconds_total process_resident_memory_bytes process_open_fds \
              process_max_fds process_start_time_seconds 'objmeta_build_info{version="'; do
    grep -q "^$want" "$tmp/$m.metrics" || fail "$m /metrics lacks $want"
  done
done
grep -q 'binary="objmeta-coord"' "$tmp/coord.metrics" || fail "build_info does not name objmeta-coord"

# The dashboard and the rules query only metrics that exist.
out=$(python3 - "$dash" "$rules" "$tmp/coord.metrics" "$tmp/shard.metrics" <<'EOF'
import json, re, sys
dash_path, rules_path, *metric_files = sys.argv[1:]
errors = []
d = json.load(open(dash_path))
for k, t in (("title", str), ("uid", str), ("panels", list), ("schemaVersion", int),
             ("templating", dict), ("time", dict)):
    if not isinstance(d.get(k), t):
        errors.append(f"dashboard: '{k}' missing or not {t.__name__}")
ids, exprs = set(), []
for p in d.get("panels", []):
    if p.get("id") in ids:
        errors.append(f"dashboard: panel id {p.get('id')} twice")
    ids.add(p.get("id"))
    g = p.get("gridPos", {})
    if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
        errors.append(f"dashboard: panel '{p.get('title')}' has a bad gridPos {g}")
    if p.get("type") == "row":
        continue
    if not p.get("title") or not p.get("targets"):
        errors.append(f"dashboard: panel {p.get('id')} lacks a title or targets")
    for t in p.get("targets", []):
        if not t.get("expr") or not t.get("refId"):
            errors.append(f"dashboard: panel '{p.get('title')}' has a target without expr/refId")
        exprs.append(t.get("expr", ""))
for v in d.get("templating", {}).get("list", []):
    q = v.get("query")
    exprs.append(q.get("query", "") if isinstance(q, dict) else "")
exprs.append(open(rules_path).read())
have = set()
for f in metric_files:
    for line in open(f):
        if line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            have.add(name)
            have.add(re.sub(r"_bucket$", "", name))  # a histogram by its own name
used = set(re.findall(r"\b((?:objmeta|process)_[a-z0-9_]+)", "\n".join(exprs)))
for name in sorted(used):
    if name not in have:
        errors.append(f"queried metric {name} is not exported")
print("\n".join(errors) or f"{len(used)} metric names checked, {len(ids)} panels")
sys.exit(1 if errors else 0)
EOF
) || fail "dashboard / rules check"
echo "$out"

# Health: ok with all shards up; degraded (429, naming s2) with s2 down; ready throughout.
code() { curl -s -o "$tmp/body" -w '%{http_code}' "http://$1"; }
healthy() { [[ $(code "$coord_http/healthz") == 200 ]]; }
until_ok 20 healthy || fail "/healthz is not 200 with every shard up: $(cat "$tmp/body")"
grep -qx ok "$tmp/body" || fail "/healthz body: $(cat "$tmp/body")"
[[ $(code "$coord_http/readyz") == 200 ]] || fail "/readyz is not 200"
[[ $(code "$s1_http/readyz") == 200 ]] || fail "the shard's /readyz is not 200"
kill -TERM "$(cat "$d/s2.pid")"
degraded() { [[ $(code "$coord_http/healthz") == 429 ]]; }
until_ok 20 degraded || fail "/healthz is not 429 with s2 down: $(cat "$tmp/body")"
grep -q "^degraded: 1 of 3 shards down; s2: " "$tmp/body" || fail "/healthz body: $(cat "$tmp/body")"
[[ $(code "$coord_http/readyz") == 200 ]] || fail "/readyz is not 200 while degraded"
echo "check_observability: ok"
