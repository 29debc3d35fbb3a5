#!/usr/bin/env bash
# Start a local objmeta cluster on loopback, every part a separate process,
# data under one directory. Ctrl-C (or SIGTERM) stops them all together.
#
#   scripts/cluster.sh [--shards N] [--replicas R] [--replicated | --etcd | --simple] [--data DIR]
#                      [--build DIR] [--port P] [--demo] [--fresh] [--restart]
#                      [--demo-only] [--check] [--tls]
#
# By default (--replicated) the cluster survives kill -9 of any one process: a local
# 3-member etcd (scripts/etcd-local.sh, client ports P+300, P+302, P+304,
# data in DIR/etcd), 3 coordinators on 127.0.0.1:P, P+1, P+2 (metrics P+200,
# P+250, P+251; one is elected leader) and N replica groups s1..sN (default
# 3) of R replicas each (default 3; shard/REPLICATION.md): replica j of group
# i is process si-rj on 127.0.0.1:(P+100+k), metrics P+200+k, k = (i-1)*R+j.
# The group configurations are written into etcd at the first start; each
# group's primary holds a 2 s lease, and a backup takes over when it dies.
# --etcd: etcd and 3 coordinators, but groups of one (--replicas 1); with
# --port 0 the coordinators take free ports and etcd a free block of 6.
# --simple: the small cluster: the cluster state in the coordinator's data
# directory (file mode), one coordinator, N shards s1..sN.
#
# The (first) coordinator listens on 127.0.0.1:P (default 7000, the objmeta
# tool's default address); with --simple shard i listens on
# 127.0.0.1:(P+100+i), its metrics on 127.0.0.1:(P+200+i); the coordinator's
# metrics on 127.0.0.1:(P+200). --port 0 puts every listener on a free port
# (read back from port files); replicas need fixed ports (the group
# configuration names them), so with replicas --port 0 picks a free base.
# A process that stops or dies leaves the others running (practise the
# failure drills of the README); --restart starts a crashed one again on the
# same ports. Each process's pid is in DIR/NAME.pid, its log in DIR/NAME.log.
# One cluster per data directory: a second start on the same DIR is refused
# (a lock on DIR) and says how to reach the running one.
# --demo-only runs the demo and stops the cluster (used by the tests).
# --check only tells whether DIR is free (exit 0) or taken (exit 3, as above).
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
restart=0
tls=0
check=0
mode=replicated
replicas=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shards | --data | --build | --port | --replicas)
      [[ $# -ge 2 ]] || { echo "cluster.sh: $1 needs a value (see --help)" >&2; exit 2; } ;;&
    --shards) shards=$2; shift ;;
    --data) data=$2; shift ;;
    --build) build=$2; shift ;;
    --port) port=$2; shift ;;
    --demo) demo=1 ;;
    --demo-only) demo=2 ;;
    --fresh) fresh=1 ;;
    --restart) restart=1 ;;
    --check) check=1 ;;
    --etcd) mode=etcd ;;
    --tls) tls=1 ;;
    --replicas) replicas=$2; shift ;;
    --simple) mode=simple ;;
    --replicated) mode=replicated ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$shards" =~ ^[1-9][0-9]?$ ]] || { echo "cluster.sh: --shards takes 1..99" >&2; exit 2; }
case $mode in
  simple) etcd=0; replicas=${replicas:-1} ;;
  etcd) etcd=1; replicas=${replicas:-1} ;;
  replicated) etcd=1; replicas=${replicas:-3} ;;
esac
[[ "$replicas" =~ ^[1-5]$ ]] || { echo "cluster.sh: --replicas takes 1..5" >&2; exit 2; }
(( replicas == 1 || etcd == 1 )) ||
  { echo "cluster.sh: replicas need the etcd cluster state (drop --simple)" >&2; exit 2; }
(( shards * replicas <= 45 )) ||
  { echo "cluster.sh: at most 45 shard processes (--shards x --replicas)" >&2; exit 2; }
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
  [[ -x $b || $check -eq 1 ]] || { echo "cluster.sh: $b not built (run: meson setup $build && ninja -C $build)" >&2; exit 1; }
done

# One cluster per data directory. The lock is on the directory itself (so
# --fresh can empty it while holding the lock) and is inherited by the
# servers: while any of them runs, the directory stays taken, even if this
# script was killed. Nothing in DIR is touched before the lock is held.
mkdir -p "$data"
data=$(cd "$data" && pwd)
exec 9<"$data"
if ! flock -n 9; then
  info=$(cat "$data/cluster.info" 2>/dev/null || true)
  coord=$(sed -n 's/^coord=//p' <<<"$info")
  owner=$(sed -n 's/^pid=//p' <<<"$info")
  {
    echo "cluster.sh: a cluster already runs on $data${owner:+ (cluster.sh pid $owner)}; nothing was changed."
    [[ -n $coord ]] && echo "  use it:           $cli --addr $coord ping"
    if [[ -n $owner ]] && kill -0 "$owner" 2>/dev/null; then
      echo "  stop it:          Ctrl-C in its terminal, or kill $owner"
    else # cluster.sh itself was killed; its servers hold the lock
      echo "  stop it:          kill \$(cat $data/*.pid)   (its cluster.sh is gone, its servers run on)"
    fi
    echo "  start a second:   scripts/cluster.sh --port 8000 --data ${data}-2   (or --port 0 for free ports)"
  } >&2
  exit 3
fi
if [[ $check -eq 1 ]]; then
  exit 0
fi
if [[ $fresh -eq 1 ]]; then
  find "$data" -mindepth 1 -delete
fi
printf 'pid=%s\n' "$$" >"$data/cluster.info"

declare -A pid_of=() name_of=() rpc_of=() http_of=()
names=()
live_pids() { local n; for n in "${names[@]}"; do [[ -n ${pid_of[$n]:-} ]] && echo "${pid_of[$n]}"; done; return 0; }
stop_all() {
  trap - INT TERM EXIT
  local p
  mapfile -t p < <(live_pids)
  if [[ ${#p[@]} -gt 0 ]]; then
    echo
    echo "cluster: stopping ${#p[@]} processes"
    kill -TERM "${p[@]}" 2>/dev/null || true
    wait "${p[@]}" 2>/dev/null || true
  fi
  rm -f "$data/cluster.info" "$data"/*.pid
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

wait_port_file() { # file pid name
  local deadline=$((SECONDS + 15))
  while [[ ! -s $1 ]]; do
    kill -0 "$2" 2>/dev/null || { echo "cluster: $3 exited; see $data/$3.log" >&2; tail -20 "$data/$3.log" >&2; return 1; }
    (( SECONDS < deadline )) || { echo "cluster: $3 did not start within 15 s; see $data/$3.log" >&2; return 1; }
    sleep 0.05
  done
}

# start NAME RPC HTTP ARGS...: run a server on the given listen addresses,
# wait for its port file, remember its pid and the ports it bound.
start() {
  local name=$1 rpc=$2 http=$3 bin
  shift 3
  bin=$shard_bin
  [[ $name == coord* ]] && bin=$coord_bin
  rm -f "$data/$name.ports"
  "$bin" "$@" --listen="$rpc" --http-listen="$http" --port-file="$data/$name.ports" \
    ${tls_args[@]+"${tls_args[@]}"} >>"$data/$name.log" 2>&1 &
  local pid=$!
  pid_of[$name]=$pid
  name_of[$pid]=$name
  echo "$pid" >"$data/$name.pid"
  wait_port_file "$data/$name.ports" "$pid" "$name" || return 1
  rpc_of[$name]=127.0.0.1:$(port_of "$data/$name.ports" rpc)
  http_of[$name]=127.0.0.1:$(port_of "$data/$name.ports" http)
}
# shard_args NAME: a shard's arguments; replica j of group i is NAME si-rj
shard_args() {
  if [[ $1 == *-r* ]]; then
    echo "--id=${1%-r*}" "--data-dir=$data/$1" "--replica-group=${1%-r*}" "--replica-id=r${1##*-r}" \
      "--etcd=$etcd_eps" "--etcd-prefix=$prefix" "--replica-lease-ttl=2s"
  else
    echo "--id=$1" "--data-dir=$data/$1"
  fi
}
tls_args=()
cli_tls=()
if [[ $tls -eq 1 ]]; then
  [[ -f $data/certs/node.pem ]] || scripts/gen-certs.sh "$data/certs" >/dev/null
  tls_args=(--tls-cert="$data/certs/node.pem" --tls-key="$data/certs/node.key"
            --tls-ca="$data/certs/ca.pem")
  cli_tls=(--ca "$data/certs/ca.pem" --cert "$data/certs/admin.pem" --key "$data/certs/admin.key")
fi

coords=(coord)
if (( replicas > 1 && port == 0 )); then
  # replicas are named by address in their group's configuration: fixed
  # ports, from a base below the kernel's ephemeral range (32768-) whose
  # every port no socket uses now (listeners, connections, TIME_WAIT)
  in_use=$(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u) ||
    { echo "cluster.sh: --port 0 with replicas needs ss (Debian iproute2)" >&2; exit 1; }
  for try in $(seq 1 50); do
    base=$(( 20000 + RANDOM % 12000 ))
    ok=1
    for off in 0 1 2 200 250 251 300 301 302 303 304 305 $(seq 101 $((100 + shards * replicas))) \
               $(seq 201 $((200 + shards * replicas))); do
      ! grep -qx "$((base + off))" <<<"$in_use" || { ok=0; break; }
    done
    (( ok == 0 )) || { port=$base; break; }
  done
  (( port != 0 )) || { echo "cluster.sh: no free block of ports found; give --port" >&2; exit 1; }
fi
if (( etcd == 1 )); then
  # a 3-member etcd first (its own script stops its members when told to)
  names+=(etcd)
  etcd_port=$(( port == 0 ? 0 : port + 300 ))
  scripts/etcd-local.sh --data "$data" --port "$etcd_port" >"$data/etcd.log" 2>&1 &
  pid_of[etcd]=$!
  name_of[$!]=etcd
  echo "$!" >"$data/etcd.pid"
  deadline=$(( SECONDS + 40 ))
  until grep -q "members ready" "$data/etcd.log" 2>/dev/null; do
    kill -0 "${pid_of[etcd]}" 2>/dev/null || { echo "cluster: etcd did not start; see $data/etcd.log" >&2; tail -5 "$data/etcd.log" >&2; exit 1; }
    (( SECONDS < deadline )) || { echo "cluster: etcd not ready within 40 s; see $data/etcd.log" >&2; exit 1; }
    sleep 0.1
  done
  etcd_eps=$(sed -n 's/.* members ready; endpoints //p' "$data/etcd.log")
  echo "cluster: etcd  $etcd_eps  data $data/etcd  log $data/etcd.log"
  prefix=/objmeta/local
  coords=(coord coord2 coord3)
fi

# A replica group's configuration, written into etcd at the first start only
# (afterwards the replicas and the operator's admin commands change it).
group_config() { # GROUP: {"group","term","primary","replicas","in_sync"} for etcd
  local g=$1 j reps="" ins=""
  for j in $(seq 1 "$replicas"); do
    reps+="${reps:+,}{\"id\":\"r$j\",\"addr\":\"$(addr "$port" $((100 + ($2 - 1) * replicas + j)))\"}"
    ins+="${ins:+,}\"r$j\""
  done
  printf '{"group":"%s","term":1,"primary":"r1","replicas":[%s],"in_sync":[%s]}' "$g" "$reps" "$ins"
}
etcdctl_() { ETCDCTL_API=3 etcdctl --endpoints="$etcd_eps" --dial-timeout=3s --command-timeout=5s "$@"; }

spec=""
for i in $(seq 1 "$shards"); do
  id=s$i
  if (( replicas == 1 )); then
    names+=("$id")
    : >"$data/$id.log"
    # shellcheck disable=SC2046
    start "$id" "$(addr "$port" $((100 + i)))" "$(addr "$port" $((200 + i)))" $(shard_args "$id") || exit 1
    spec+="${spec:+,}$id=${rpc_of[$id]}"
    echo "cluster: shard $id  rpc ${rpc_of[$id]}  metrics http://${http_of[$id]}/metrics  log $data/$id.log"
    continue
  fi
  key=$prefix/groups/$id/config
  if [[ -z $(etcdctl_ get --print-value-only "$key") ]]; then
    etcdctl_ put "$key" "$(group_config "$id" "$i")" >/dev/null ||
      { echo "cluster: cannot write $key into etcd" >&2; exit 1; }
  fi
  for j in $(seq 1 "$replicas"); do
    name=$id-r$j
    k=$(( (i - 1) * replicas + j ))
    names+=("$name")
    : >"$data/$name.log"
    # shellcheck disable=SC2046
    start "$name" "$(addr "$port" $((100 + k)))" "$(addr "$port" $((200 + k)))" $(shard_args "$name") || exit 1
  done
  # the ring names the group; the coordinators route to its primary (etcd)
  spec+="${spec:+,}$id=${rpc_of[$id-r1]}"
  echo "cluster: group $id  replicas $(for j in $(seq 1 "$replicas"); do printf '%s ' "${rpc_of[$id-r$j]}"; done)" \
    " metrics http://${http_of[$id-r1]}/metrics ...  logs $data/$id-r*.log"
done

coord_args=("--data-dir=$data/coord" "--shards=$spec")
(( etcd == 0 )) || coord_args+=("--etcd=$etcd_eps" "--etcd-prefix=$prefix")
coord_args_of() { # NAME: the coordinator's arguments (its own data dir)
  local a=("${coord_args[@]}")
  a[0]="--data-dir=$data/$1"
  printf '%s\n' "${a[@]}"
}
for k in "${!coords[@]}"; do
  name=${coords[$k]}
  names+=("$name")
  : >"$data/$name.log"
  mapfile -t cargs < <(coord_args_of "$name")
  if (( k == 0 )); then
    start "$name" "$(addr "$port" 0)" "$(addr "$port" 200)" "${cargs[@]}" || exit 1
  else
    start "$name" "$(addr "$port" "$k")" "$(addr "$port" $(( 249 + k )))" "${cargs[@]}" || exit 1
  fi
  label=coordinator
  (( ${#coords[@]} == 1 )) || label="coordinator $name"
  echo "cluster: $label  rpc ${rpc_of[$name]}  metrics http://${http_of[$name]}/metrics  log $data/$name.log"
done
port=${rpc_of[coord]#127.0.0.1:}
http_port=${http_of[coord]#127.0.0.1:}
all_coords=""
for name in "${coords[@]}"; do all_coords+="${all_coords:+,}${rpc_of[$name]}"; done
printf 'pid=%s\ncoord=%s\nhttp=%s\ncoords=%s\n' "$$" "${rpc_of[coord]}" "${http_of[coord]}" "$all_coords" >"$data/cluster.info"

om() { echo "\$ objmeta $*"; "$cli" --addr "$all_coords" ${cli_tls[@]+"${cli_tls[@]}"} "$@"; }
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
  if (( replicas > 1 )); then
    # the failure drill: kill -9 of a primary; its group's reads wait for the
    # new primary (a backup takes over when the 2 s lease expires)
    leader=$(etcdctl_ get --print-value-only "$prefix/groups/s1/config" |
      sed -n 's/.*"primary":"\([^"]*\)".*/\1/p')
    victim=s1-$leader
    # a group fails over once it holds writes (an empty replica never
    # campaigns: shard/REPLICATION.md): some objects for every group
    for n in $(seq 1 24); do
      "$cli" --addr "$all_coords" ${cli_tls[@]+"${cli_tls[@]}"} put "demo-bucket/notes/n$n.txt" \
        "$data/hello.txt" >/dev/null
    done
    echo "(stored demo-bucket/notes/n1.txt .. n24.txt: every group holds some)"
    echo
    echo "== failover: kill -9 of group s1's primary ($victim, pid ${pid_of[$victim]}) =="
    kill -9 "${pid_of[$victim]}"
    t0=$(date +%s%N)
    om ls demo-bucket --delimiter /
    echo "(the listing needs every group: answered $(( ($(date +%s%N) - t0) / 1000000 )) ms after the kill)"
    om get demo-bucket/readme.txt
    echo "== $victim comes back as a backup; it is repaired from the new primary =="
    wait "${pid_of[$victim]}" 2>/dev/null || true
    unset "name_of[${pid_of[$victim]}]"
    # shellcheck disable=SC2046
    start "$victim" "${rpc_of[$victim]}" "${http_of[$victim]}" $(shard_args "$victim") || exit 1
    om admin groups
  fi
  if [[ $demo -eq 2 ]]; then
    echo "cluster: demo done"
    exit 0
  fi
fi

c="$cli"
(( port == 7000 && etcd == 0 )) || c="$cli --addr $all_coords"
[[ $tls -eq 0 ]] || c="$c ${cli_tls[*]}"
status_hint=""
what="$shards shards"
victim_hint=s2
if (( etcd == 1 )); then
  status_hint="  $c admin status    # which coordinator leads, the epoch each holds"
fi
if (( replicas > 1 )); then
  what="$shards replica groups x $replicas replicas, 3 coordinators, a 3-member etcd"
  status_hint+="
  $c admin groups    # each group's primary, backups, in-sync set and term"
  victim_hint=s2-r1
fi
cat <<EOT

objmeta cluster is up ($what). In another terminal, try:
  $c put my-bucket/a/b.txt /etc/hostname --meta '{"owner":"me"}'
  $c ls my-bucket --delimiter /
  $c get my-bucket/a/b.txt
  $c head my-bucket/a/b.txt --json
  $c stats
  curl -s http://127.0.0.1:$http_port/metrics | head
$status_hint
Stopping one process (kill -9 \$(cat $data/$victim_hint.pid)) leaves the others running.
Press Ctrl-C to stop the cluster (data stays in $data; --fresh starts over).
EOT

# Watch the processes until every one has stopped. A clean exit (status 0:
# SIGTERM, e.g. a shard removed from the ring and then stopped) is only
# reported; a crash is restarted on the same ports when --restart was given.
while :; do
  mapfile -t live < <(live_pids)
  if [[ ${#live[@]} -eq 0 ]]; then
    echo "cluster: every process has stopped (logs in $data)"
    exit 0
  fi
  done_pid=""
  rc=0
  wait -n -p done_pid "${live[@]}" || rc=$?
  [[ -n $done_pid ]] || continue
  name=${name_of[$done_pid]}
  unset "name_of[$done_pid]"
  pid_of[$name]=""
  rm -f "$data/$name.pid"
  others=$(( ${#live[@]} - 1 ))
  how="exited with status $rc"
  (( rc > 128 )) && how="was killed by signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
  if (( rc == 0 )); then
    echo "cluster: $name stopped; the other $others keep running"
    continue
  fi
  echo "cluster: $name $how; the other $others keep running (log $data/$name.log)"
  if (( restart == 0 )); then
    echo "cluster: not restarting $name (scripts/cluster.sh --restart restarts crashed processes)"
    continue
  fi
  sleep 1 # back off: a process that crashes at start must not spin
  if [[ $name == etcd ]]; then
    echo "cluster: not restarting etcd (see $data/etcd.log)"
    continue
  elif [[ $name == coord* ]]; then
    mapfile -t cargs < <(coord_args_of "$name")
    start "$name" "${rpc_of[$name]}" "${http_of[$name]}" "${cargs[@]}" || continue
  else
    # shellcheck disable=SC2046
    start "$name" "${rpc_of[$name]}" "${http_of[$name]}" $(shard_args "$name") || continue
  fi
  echo "cluster: restarted $name (pid ${pid_of[$name]}) on ${rpc_of[$name]}"
done
