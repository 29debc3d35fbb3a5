#!/usr/bin/env bash
# Run scripts/cluster.sh --simple --demo-only on free ports and check what
# the demo shows: objects stored, a delimiter listing with common prefixes,
# an object read back, and --if-absent refused with exit code 3. (The
# default, replicated cluster and its failover drill:
# tests/ops/check_cluster_replicated.sh.)
# Usage: SRCROOT BUILDROOT [CLUSTER.SH OPTIONS...] (e.g. --tls)
set -uo pipefail
src=$1
build=$2
shift 2
data=$(mktemp -d "${TMPDIR:-/tmp}/objmeta-cluster-test-XXXXXX")
trap 'rm -rf "$data"' EXIT
out=$(timeout 90 "$src/scripts/cluster.sh" --build "$build" --port 0 --data "$data/c" --simple --demo-only "$@" 2>&1)
rc=$?
fail() { printf '%s\n' "$out"; for f in "$data"/c/*.log; do echo "--- $f"; tail -20 "$f"; done; echo "check_cluster_demo: $1"; exit 1; }
[[ $rc -eq 0 ]] || fail "cluster.sh exited with $rc"
for want in "stored demo-bucket/photos/2024/cat.jpg" "PRE photos/2024/" "PRE photos/2025/" \
            "hello from objmeta" "exit 3: the key exists" "cluster: demo done" "stopping 4 processes"; do
  grep -qF -- "$want" <<<"$out" || fail "missing from the demo output: $want"
done
# --tls: the servers really served TLS
if [[ " $* " == *" --tls "* ]] && ! grep -q "tls=on" "$data"/c/coord.log; then
  fail "--tls given but the coordinator did not serve TLS"
fi
# Every process must be gone: the servers' pids are in their logs' port files' owners.
if pgrep -f -- "--data-dir=$data/c/" >/dev/null; then
  fail "processes still running after the demo"
fi
echo "check_cluster_demo: ok"
