#!/usr/bin/env bash
# Install what is missing, build, and run every test suite three times: a
# normal build (-O2 -g, build/), an AddressSanitizer + UBSan build
# (build-asan/) and a ThreadSanitizer build (build-tsan/); then a short
# libFuzzer run of each fuzz target. Prints the time of each stage and the
# total (CI's budget: 20 minutes on 2 cores).
#
#   scripts/test.sh                 everything (what CI runs)
#   scripts/test.sh --quick         normal build only
#   scripts/test.sh --suite lsm     one suite, normal build only
#
# meson test runs with -v --print-errorlogs so Check's summary lines are shown.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
suite_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --suite) suite_args+=(--suite "$2"); quick=1; shift ;;
    *) echo "usage: scripts/test.sh [--quick] [--suite NAME]" >&2; exit 2 ;;
  esac
  shift
done

scripts/install-deps.sh

jobs=$(nproc 2>/dev/null || echo 2)

setup() { # dir, meson options...
  local dir=$1; shift
  if [[ -f "$dir/build.ninja" ]]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@"
  fi
}

start=$(date +%s)
t0=$start
stage_done() { # name: print the stage's time and start the next one
  echo "== $1: $(( $(date +%s) - t0 )) s (total $(( $(date +%s) - start )) s) =="
  t0=$(date +%s)
}
echo "== normal build (build/) =="
setup build --buildtype=debugoptimized
ninja -C build -j "$jobs"
meson test -C build -v --print-errorlogs --num-processes "$jobs" "${suite_args[@]}"
stage_done "normal build and tests"

if [[ $quick -eq 0 ]]; then
  echo "== AddressSanitizer + UBSan build (build-asan/) =="
  setup build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false
  ninja -C build-asan -j "$jobs"
  # UBSAN_OPTIONS=halt_on_error=1 comes from the default test setup (tests/meson.build).
  meson test -C build-asan -v --print-errorlogs --num-processes "$jobs" --no-suite lint --no-suite deploy
  stage_done "ASan+UBSan build and tests"
fi
if [[ $quick -eq 0 ]]; then
  echo "== ThreadSanitizer build (build-tsan/) =="
  setup build-tsan --buildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false
  ninja -C build-tsan -j "$jobs"
  # TSAN_OPTIONS (halt_on_error=1, second_deadlock_stack=1, tests/tsan.supp)
  # comes from the test setups (tests/meson.build; `tsan` also stretches the
  # timeouts): a report fails the test that made it, and tests/harness fails
  # a test whose child process printed one.
  # The unit, fault, integration and stress suites: that leaves out only the
  # single-threaded model tests (lsm-model*, lsm-row-cache: one caller thread,
  # ~6 of the stage's minutes under TSan), whose engine paths lsm-stress runs
  # from 8 threads at once; they still run in the two builds above.
  meson test -C build-tsan -v --print-errorlogs --num-processes "$jobs" --setup tsan \
    --suite unit --suite fault --suite integration --suite stress
  if grep -q 'WARNING: ThreadSanitizer' build-tsan/meson-logs/testlog.txt; then
    echo "tsan: a ThreadSanitizer report in build-tsan/meson-logs/testlog.txt"; exit 1
  fi
  stage_done "TSan build and tests"
fi
if [[ $quick -eq 0 ]]; then
  # The libFuzzer targets (WAL reader, SSTable reader, frame decoder, shard
  # request handling, TLS record layer), built with clang + ASan/UBSan and run briefly each. The
  # same entry points also run over fixed inputs in the suites above.
  echo "== libFuzzer smoke run (build-fuzz/, clang, ${FUZZ_SECONDS:-10} s per target) =="
  if [[ ! -f build-fuzz/build.ninja ]]; then
    CC=clang meson setup build-fuzz --buildtype=debugoptimized -Dfuzz=true \
      -Db_sanitize=address,undefined -Db_lundef=false -Dbench_peers=disabled
  fi
  targets=(fuzz_wal fuzz_sstable fuzz_frame fuzz_shard fuzz_tls_rec)
  meson compile -C build-fuzz "${targets[@]}"
  fuzz_dir=$(mktemp -d)
  for t in "${targets[@]}"; do
    exe=$(find build-fuzz/tests -name "$t" -type f -perm -u+x | head -1)
    mkdir -p "$fuzz_dir/$t"
    (cd "$fuzz_dir" && "$OLDPWD/$exe" -max_total_time="${FUZZ_SECONDS:-10}" -rss_limit_mb=2048 \
      -print_final_stats=0 "$t" 2>"$t.log") || { cat "$fuzz_dir/$t.log"; echo "fuzz: $t failed"; exit 1; }
    echo "fuzz: $t: $(grep -E '^Done [0-9]+ runs' "$fuzz_dir/$t.log")"
  done
  rm -rf "$fuzz_dir"
  stage_done "fuzz smoke"
fi
echo "== all tests passed in $(( $(date +%s) - start )) s =="
