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
tmp=$(mktemp -d "${TMPDIR:-/tmp}/objmeta-ops-readme-XXXXXX")
d=$tmp/c
cpid=""
cleanup() {
  [[ -n $cpid ]] && kill -TERM "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
  [[ -n ${TU_KEEP:-} ]] || rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "--- quick start block"; printf '%s\n' "$block"
  echo "--- its output"; cat "$tmp/run.out" 2>/dev/null
  for f in "$d"/*.log; do echo "--- $f"; tail -20 "$f"; done
  echo "check_readme_quickstart: $1"
  exit 1
}
until_ok() { local end=$((SECONDS + $1)); shift; until "$@"; do ((SECONDS < end)) || return 1; sleep 0.05; done; }

# The first ```sh block after "## Quick start".
block=$(awk '/^## Quick start/ { q = 1 } q && /^```sh/ { on = 1; next } on && /^```/ { exit } on' "$src/README.md")
[[ -n $block ]] || fail "no sh block under '## Quick start' in README.md"

"$src/scripts/cluster.sh" --build "$build" --port 0 --data "$d" >"$tmp/cluster.out" 2>&1 &
cpid=$!
until_ok 60 grep -q '^coord=' "$d/cluster.info" 2>/dev/null || fail "the cluster did not come up"
coord=$(sed -n 's/^coord=//p' "$d/cluster.info")
coord_http=$(sed -n 's/^http=//p' "$d/cluster.info")
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
