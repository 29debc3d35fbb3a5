#!/usr/bin/env bash
# Install the Debian 12 packages objmeta needs, only those that are missing.
#
#   scripts/install-deps.sh           build + test dependencies
#   scripts/install-deps.sh --bench   also the benchmark peers (RocksDB, LevelDB, Redis)
#
# Idempotent: prints what it checks and installs nothing when all is there.
# Runs apt-get as root, or through sudo otherwise.
set -euo pipefail

pkgs=(
  # toolchain and build
  gcc libc6-dev pkg-config meson ninja-build git
  # libraries of the fixed stack
  libevent-dev libprotobuf-c-dev protobuf-c-compiler libxxhash-dev libzstd-dev
  libjansson-dev libinih-dev
  # TLS and client tokens (rpc/tls.c, rpc/token.c); openssl for scripts/gen-certs.sh
  libssl-dev openssl
  # tests: Check (+subunit), formatting lint, the Python protocol interop test
  check libsubunit-dev clang-format protobuf-compiler python3 python3-protobuf
  # libFuzzer smoke run: clang with its fuzzer runtime
  clang libclang-rt-14-dev
  # the local cluster's demo and scripts; curl for the README's metrics lines and
  # scripts/etcd-local.sh's readiness probe; ss (iproute2) for its free ports
  procps curl iproute2
  # deploy/ checks: promtool (alert rules, metrics format), yamllint (Kubernetes manifests)
  prometheus yamllint
  # cluster state in etcd (coordinators with --etcd; the controlplane tests
  # start a real etcd)
  etcd-server etcd-client
)
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(librocksdb-dev libleveldb-dev redis-server redis-tools)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
