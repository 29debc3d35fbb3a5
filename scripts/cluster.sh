#!/usr/bin/env bash
# Start a local objmeta cluster: one coordinator and N shards, each a separate
# process on loopback, data under one directory. Ctrl-C (or SIGTERM) stops
# them all together.
#
#   scripts/cluster.sh [--shards N] [--data DIR] [--build DIR] [--port P] [--demo] [--fresh]
#                      [--demo-only] [--tls]
#
# The coordinator listens on 127.0.0.1:P (default 7000, the objmeta tool's
# default address); shard i listens on 127.0.0.1:(P+100+i), its metrics on
# 127.0.0.1:(P+200+i); the coordinator's metrics on 127.0.0.1:(P+200).
# --port 0 puts every listener on a free port (read back from port files).
# --demo-only runs the demo and stops the cluster (used by the tests).
# --tls serves TLS everywhere with development certificates made in DIR/certs
# (scripts/gen-certs.sh); the objmeta tool then needs --ca, --cert, --key
# (printed below; the admin certificate grants the client and admin roles).
set -euo pipefail
cd "$(dirname "$0")/.."

shards=3
data=${OBJMETA_CLUSTER_DATA:-$PWD/objmeta-cluster-data}
build=build
port=7000
demo=0
fresh=0
tls=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shards) shards=$2; shift ;;
    --data) data=$2; shift ;;
    --build) build=$2; shift ;;
    --port) port=$2; shift ;;
    --demo) demo=1 ;;
    --demo-only) demo=2 ;;
    --fresh) fresh=1 ;;
    --tls) tls=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$shards" =~ ^[1-9][0-9]?$ ]] || { echo "cluster.sh: --shards takes 1..99" >&2; exit 2; }
[[ "$port" =~ ^[0-9]+$ ]] && (( port == 0 || (port >= 1024 && port <= 65000) )) ||
  { echo "cluster.sh: --port takes 0 or 1024..65000" >&2; exit 2; }

# addr BASE OFFSET: a listen address, or port 0 when the base is 0
addr() { if (( $1 == 0 )); then echo 127.0.0.1:0; else echo "127.0.0.1:$(( $1 + $2 ))"; fi; }
# port_of FILE NAME: the port a server wrote for listener NAME
port_of() { awk -v n="$2" '$1 == n { print $2 }' "$1"; }

shard_bin=$build/shard/objmeta-shard
coord_bin=$build/coordinator/objmeta-coord
cli=$build/client/objmeta
for b in "$shard_bin" "$coord_bin" "$cli"; do
  [[ -x $b ]] || { echo "cluster.sh: $b not built (run: meson setup $build && ninja -C $build)" >&2; exit 1; }
done

[[ $fresh -eq 1 ]] && rm -rf "$data"
mkdir -p "$data"
pids=()
stop_all() {
  trap - INT TERM EXIT
  if [[ ${#pids[@]} -gt 0 ]]; then
    echo
    echo "cluster: stopping ${#pids[@]} processes"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

wait_port_file() { # file pid name
  local deadline=$((SECONDS + 15))
  while [[ ! -s $1 ]]; do
    kill -0 "$2" 2>/dev/null || { echo "cluster: $3 exited; see $data/$3.log" >&2; tail -20 "$data/$3.log" >&2; exit 1; }
    (( SECONDS < deadline )) || { echo "cluster: $3 did not start within 15 s; see $data/$3.log" >&2; exit 1; }
    sleep 0.05
  done
}

tls_args=()
cli_tls=()
if [[ $tls -eq 1 ]]; then
  [[ -f $data/certs/node.pem ]] || scripts/gen-certs.sh "$data/certs" >/dev/null
  tls_args=(--tls-cert="$data/certs/node.pem" --tls-key="$data/certs/node.key"
            --tls-ca="$data/certs/ca.pem")
  cli_tls=(--ca "$data/certs/ca.pem" --cert "$data/certs/admin.pem" --key "$data/certs/admin.key")
fi

spec=""
for i in $(seq 1 "$shards"); do
  id=s$i
  rpc=$(addr "$port" $((100 + i)))
  http=$(addr "$port" $((200 + i)))
  rm -f "$data/$id.ports"
  "$shard_bin" --id="$id" --listen="$rpc" --http-listen="$http" --data-dir="$data/$id" \
    --port-file="$data/$id.ports" ${tls_args[@]+"${tls_args[@]}"} >"$data/$id.log" 2>&1 &
  pids+=($!)
  wait_port_file "$data/$id.ports" "$!" "$id"
  rpc=127.0.0.1:$(port_of "$data/$id.ports" rpc)
  http=127.0.0.1:$(port_of "$data/$id.ports" http)
  spec+="${spec:+,}$id=$rpc"
  echo "cluster: shard $id  rpc $rpc  metrics http://$http/metrics  log $data/$id.log"
done

rm -f "$data/coord.ports"
"$coord_bin" --listen="$(addr "$port" 0)" --http-listen="$(addr "$port" 200)" \
  --data-dir="$data/coord" --port-file="$data/coord.ports" --shards="$spec" \
  ${tls_args[@]+"${tls_args[@]}"} >"$data/coord.log" 2>&1 &
pids+=($!)
wait_port_file "$data/coord.ports" "$!" coord
port=$(port_of "$data/coord.ports" rpc)
http_port=$(port_of "$data/coord.ports" http)
echo "cluster: coordinator  rpc 127.0.0.1:$port  metrics http://127.0.0.1:$http_port/metrics  log $data/coord.log"

om() { echo "\$ objmeta $*"; "$cli" --addr "127.0.0.1:$port" ${cli_tls[@]+"${cli_tls[@]}"} "$@"; }
if [[ $demo -ge 1 ]]; then
  echo
  echo "== demo =="
  printf 'hello from objmeta\n' >"$data/hello.txt"
  om put demo-bucket/photos/2024/cat.jpg "$data/hello.txt" --content-type image/jpeg --meta '{"camera":"x100","tags":["cat"]}'
  om put demo-bucket/photos/2024/dog.jpg "$data/hello.txt" --meta '{"camera":"x100"}'
  om put demo-bucket/photos/2025/owl.jpg "$data/hello.txt"
  om put demo-bucket/readme.txt "$data/hello.txt" --content-type text/plain
  om ls demo-bucket --delimiter /
  om ls demo-bucket/photos/ --delimiter /
  om head demo-bucket/photos/2024/cat.jpg
  om get demo-bucket/readme.txt
  om put demo-bucket/readme.txt "$data/hello.txt" --if-absent || echo "(exit $?: the key exists, so --if-absent is refused)"
  if [[ $demo -eq 2 ]]; then
    echo "cluster: demo done"
    exit 0
  fi
fi

c="$cli"
(( port == 7000 )) || c="$cli --addr 127.0.0.1:$port"
[[ $tls -eq 0 ]] || c="$c ${cli_tls[*]}"
cat <<EOT

objmeta cluster is up ($shards shards). In another terminal, try:
  $c put my-bucket/a/b.txt /etc/hostname --meta '{"owner":"me"}'
  $c ls my-bucket --delimiter /
  $c get my-bucket/a/b.txt
  $c head my-bucket/a/b.txt --json
  $c stats
  curl -s http://127.0.0.1:$http_port/metrics | head
Press Ctrl-C to stop the cluster (data stays in $data; --fresh starts over).
EOT
wait -n "${pids[@]}" || true
echo "cluster: a process exited; stopping the others (logs in $data)"
