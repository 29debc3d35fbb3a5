#!/usr/bin/env bash
# Install what is missing, build, and run a local cluster on loopback that
# survives kill -9 of any one process (a 3-member etcd, 3 coordinators, 3
# replica groups x 3 replicas) with a short demo; Ctrl-C stops it. Options go
# to scripts/cluster.sh (--simple for one coordinator and 3 unreplicated
# shards, --port P, --data DIR, --shards N, --replicas R, --fresh, --restart).
# A cluster already running on the same data directory is left alone: this
# script then says how to reach it or how to start a second one.
set -euo pipefail
cd "$(dirname "$0")/.."
# Refuse before installing or building anything when the data directory is taken.
rc=0
scripts/cluster.sh --check "$@" || rc=$?
[[ $rc -eq 0 ]] || exit $rc
scripts/install-deps.sh
if [[ ! -f build/build.ninja ]]; then
  meson setup build --buildtype=debugoptimized
fi
ninja -C build
exec scripts/cluster.sh --build build --demo "$@"
