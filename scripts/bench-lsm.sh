#!/usr/bin/env bash
# Run bench/lsm/lsm_bench: objmeta's LSM engine against RocksDB and LevelDB.
#
#   scripts/bench-lsm.sh                      2M keys of random (incompressible) 256-byte
#                                             values, uniform reads, every engine and workload
#   scripts/bench-lsm.sh --values=json        ~200-byte JSON metadata values (compressible)
#   scripts/bench-lsm.sh --dist=zipf          Zipfian reads (theta 0.99)
#   scripts/bench-lsm.sh --num=5000000 --cache-mb=8 --workloads=fillrandom --settle=120 \
#       --shape-ms=2000                       the tree shape over a 5M fill and until L0 settles
#   scripts/bench-lsm.sh --hog=2              the same beside 2 busy threads (CPU competition)
#   scripts/bench-lsm.sh --num=500000         fewer keys (2 shared cores: ~10 min)
#   scripts/bench-lsm.sh --workloads=fillrandom,readrandom --engines=objmeta,rocksdb
#   scripts/bench-lsm.sh --workloads=fillrandom --keep --verbose   then
#   scripts/bench-lsm.sh --workloads=readmissing --keep --verbose  reruns one read
#                                             workload on the same filled databases;
#                                             --verbose prints each engine's files per level
#
# Installs librocksdb-dev and libleveldb-dev with apt if they are missing,
# configures a release build in build-bench with -Dbench_peers=enabled (only
# the lsm and bench modules), builds lsm_bench and runs it with the given
# options; databases go to $LSM_BENCH_DIR (default /tmp/lsm_bench), which
# needs about 3x the logical data size free. Prints the comparison table; each
# row's note ends with the engine's L0 table count and the process RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for p in librocksdb-dev libleveldb-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  echo "bench-lsm: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Release build; warnings are not errors here (a newer compiler's new warning
# must not stop a benchmark run; the normal builds keep -Werror).
if [[ ! -f build-bench/build.ninja ]]; then
  meson setup build-bench -Dmodules=lsm,bench -Dbuildtype=release -Dwerror=false \
    -Dbench_peers=enabled >/dev/null
fi
ninja -C build-bench bench/lsm/lsm_bench >/dev/null

dir=${LSM_BENCH_DIR:-/tmp/lsm_bench}
echo "bench-lsm: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
exec build-bench/bench/lsm/lsm_bench --db-dir="$dir" "$@"
