#!/usr/bin/env bash
# Run the README's quick-start block as written (issue 15, point 6) against a
# local cluster from scripts/cluster.sh on free ports. The only rewriting:
# OBJMETA_ADDR points the tool at this cluster's coordinator, and the
# documented metrics addresses (127.0.0.1:7200, :7201) become this cluster's.
# The block runs with `bash -e` in a fresh directory whose build/ is this
# build. Usage: SRCROOT BUILDROOT
set -uo pipefail
src=$1
build=$2
# shellcheck source=tests/ops/lib.sh
. "$(dirname "$0")/lib.sh"
fail() {
  echo "--- quick start block"; printf '%s\n' "$block"
  ops_logs
  echo "check_readme_quickstart: $1"
  exit 1
}
ops_init readme

# The first ```sh block after "## Quick start".
block=$(awk '/^## Quick start/ { q = 1 } q && /^```sh/ { on = 1; next } on && /^```/ { exit } on' "$src/README.md")
[[ -n $block ]] || fail "no sh block under '## Quick start' in README.md"

ops_cluster
s1_http=127.0.0.1:$(awk '$1 == "http" { print $2 }' "$d/s1.ports")
run=${block//127.0.0.1:7200/$coord_http}
run=${run//127.0.0.1:7201/$s1_http}

mkdir -p "$tmp/w"
ln -s "$(cd "$build" && pwd)" "$tmp/w/build"
(cd "$tmp/w" && OBJMETA_ADDR=$coord bash -e -c "$run") >"$tmp/run.out" 2>&1 ||
  fail "the block failed (exit $?)"
cmp -s "$tmp/w/cat.jpg" "$tmp/w/out.jpg" || fail "out.jpg differs from cat.jpg"
for want in "stored photos/2024/cat.jpg" "PRE 2024/" '"camera": "x100"' "deleted photos/2024/cat.jpg" \
            "absent photos/2024/cat.jpg" "exit codes:" "objmeta_coord_" "objmeta_shard_"; do
  grep -qF -- "$want" "$tmp/run.out" || fail "the output lacks: $want"
done
# the compare-and-set stored a second version: two "stored" lines
[[ $(grep -c "^stored photos/2024/cat.jpg" "$tmp/run.out") -eq 2 ]] || fail "the --if-version put did not store"
echo "check_readme_quickstart: ok"
