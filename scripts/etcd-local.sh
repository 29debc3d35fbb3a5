#!/usr/bin/env bash
# Run a local etcd cluster of 3 members on loopback, for objmeta's etcd mode
# (coordinators with --etcd): losing any one member keeps etcd available.
# Data under DIR/etcd/m{0,1,2}; logs in DIR/etcd/m*.log. Runs in the
# foreground; Ctrl-C (or SIGTERM) stops the members.
#
#   scripts/etcd-local.sh [--data DIR] [--port P] [--members N] [--fresh]
#   scripts/etcd-local.sh --endpoints [--port P] [--members N]   # print the client URLs
#
# Member i serves clients on 127.0.0.1:(P+2i) and peers on 127.0.0.1:(P+2i+1)
# (default P = 2379). --port 0: a block of 2N ports below 32768 that no TCP
# socket uses (ss; etcd cannot report ports it picked itself), kept in DIR/etcd/port
# so that the next start on DIR finds its members at the same addresses.
# Ready when every member answers /health; the client endpoints (for
# --etcd=) are printed then, on the line "... members ready; endpoints URLS".
set -euo pipefail

data=${OBJMETA_CLUSTER_DATA:-$PWD/objmeta-cluster-data}
port=2379
members=3
fresh=0
print_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --data) data=$2; shift ;;
    --port) port=$2; shift ;;
    --members) members=$2; shift ;;
    --fresh) fresh=1 ;;
    --endpoints) print_only=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "etcd-local.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$members" =~ ^[1-7]$ ]] || { echo "etcd-local.sh: --members takes 1..7" >&2; exit 2; }
[[ "$port" =~ ^[0-9]+$ ]] && (( port == 0 || (port >= 1024 && port <= 65000) )) ||
  { echo "etcd-local.sh: --port takes 0 or 1024..65000" >&2; exit 2; }
dir=$data/etcd
if (( port == 0 )) && [[ -s $dir/port ]]; then
  port=$(cat "$dir/port")
elif (( port == 0 )); then
  (( print_only == 0 )) || { echo "etcd-local.sh: --endpoints --port 0: no $dir/port yet" >&2; exit 2; }
  # local ports of every TCP socket (any state: listeners, connections, TIME_WAIT)
  in_use=$(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u) ||
    { echo "etcd-local.sh: --port 0 needs ss (Debian iproute2)" >&2; exit 1; }
  for (( tries = 0; ; tries++ )); do
    (( tries < 50 )) || { echo "etcd-local.sh: no free block of $(( 2 * members )) ports" >&2; exit 1; }
    port=$(( 20000 + RANDOM % 12000 )) # below the kernel's ephemeral range (32768-)
    taken=0
    for (( i = 0; i < 2 * members; i++ )); do
      grep -qx "$(( port + i ))" <<<"$in_use" && taken=1
    done
    (( taken == 0 )) && break
  done
  mkdir -p "$dir"
  echo "$port" >"$dir/port"
fi

client_url() { echo "http://127.0.0.1:$(( port + 2 * $1 ))"; }
peer_url() { echo "http://127.0.0.1:$(( port + 2 * $1 + 1 ))"; }
endpoints=""
cluster=""
for (( i = 0; i < members; i++ )); do
  endpoints+="${endpoints:+,}$(client_url $i)"
  cluster+="${cluster:+,}m$i=$(peer_url $i)"
done
if [[ $print_only -eq 1 ]]; then
  echo "$endpoints"
  exit 0
fi

etcd_bin=${ETCD_BIN:-$(command -v etcd || true)}
[[ -x "$etcd_bin" ]] || { echo "etcd-local.sh: etcd not installed (scripts/install-deps.sh installs etcd-server)" >&2; exit 1; }

if [[ $fresh -eq 1 ]]; then
  rm -rf "$dir/m"*
fi
mkdir -p "$dir"
pids=()
stop_all() {
  trap - INT TERM EXIT
  if [[ ${#pids[@]} -gt 0 ]]; then
    echo "etcd-local: stopping ${#pids[@]} members"
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop_all INT TERM EXIT

for (( i = 0; i < members; i++ )); do
  state=new
  [[ -d $dir/m$i/member ]] && state=existing
  "$etcd_bin" --name "m$i" --data-dir "$dir/m$i" \
    --listen-client-urls "$(client_url $i)" --advertise-client-urls "$(client_url $i)" \
    --listen-peer-urls "$(peer_url $i)" --initial-advertise-peer-urls "$(peer_url $i)" \
    --initial-cluster "$cluster" --initial-cluster-token objmeta-local \
    --initial-cluster-state "$state" --logger zap --log-level warn \
    >"$dir/m$i.log" 2>&1 &
  pids+=($!)
done

# Wait (with a deadline) until every member reports healthy.
deadline=$(( SECONDS + 30 ))
for (( i = 0; i < members; i++ )); do
  until curl -fsS "$(client_url $i)/health" 2>/dev/null | grep -q '"health":"true"'; do
    if (( SECONDS > deadline )); then
      echo "etcd-local.sh: member m$i not healthy within 30 s; see $dir/m$i.log" >&2
      exit 1
    fi
    kill -0 "${pids[$i]}" 2>/dev/null || { echo "etcd-local.sh: member m$i exited; see $dir/m$i.log" >&2; exit 1; }
    sleep 0.2
  done
done
echo "etcd-local: $members members ready; endpoints $endpoints"
echo "etcd-local: start coordinators with --etcd=$endpoints --etcd-prefix=/objmeta/local"
wait -n "${pids[@]}" || true
echo "etcd-local: a member exited; stopping" >&2
