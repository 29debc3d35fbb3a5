#!/bin/sh
# bench/replication/compare_replication.sh -- durable writes of a replica
# group against replicated peers on loopback, same clients, same run
# (issue 18's benchmark):
#
#   objmeta R=3   Store to the primary of a group of three objmeta-shard
#                 processes (static membership: replica-role primary/backup);
#                 answered once the primary and both backups have the write
#                 in their WAL, fsynced (sync-mode=always)
#   objmeta R=1   Store to one objmeta-shard, sync-mode=always
#   etcd          put to a 3-member etcd cluster (scripts/etcd-local.sh),
#                 through etcd's v3 JSON gateway (HTTP/1.1; etcd's own Go
#                 clients use gRPC -- the gateway costs etcd some CPU, said
#                 in docs/PERFORMANCE.md beside the figure), sent to the
#                 leader; answered once a quorum has it in its raft WAL
#   Redis         SET + WAIT 2 0 on a Redis 7 primary with appendonly yes,
#                 appendfsync always and two replicas: WAIT returns when both
#                 replicas *received* the write (not when it is on their
#                 disks) -- a weaker promise than the other three
#
# Every process runs on this one machine (2 cores here), so the replicas
# compete with the primary and the load generator for CPU and for the disk's
# fsyncs: a replica group on three machines does better; the peers share
# the same handicap. Both objmeta sides are preloaded with KEYS records (the
# read-before-write that assigns versions then reads SSTables, not only the
# memtable); etcd and Redis write blindly and are not preloaded.
#
# Each figure is the median of ROUNDS interleaved rounds (R=3, R=1, etcd,
# Redis, R=3, ...). Bars (issue 18): R=3 >= 10x etcd put and >= 1.0x Redis
# SET + WAIT 2, at CLIENTS clients, pipeline 1 and 16.
#
# A/B: BASE_BUILD=<another build dir> adds a second R=3 group of that
# build's objmeta-shard ("r3base"), preloaded the same way and run right
# after r3 in every round, and prints R=3 / R=3 base (a change's effect,
# same run, interleaved). SIDES picks the sides run each round.
#
# usage: bench/replication/compare_replication.sh [BUILD_DIR]   (default: build)
# environment: CLIENTS=50 PIPELINES="1 16" KEYS=500000 VALUE_SIZE=256 DURATION=5
#              ROUNDS=3 ETCD_PORT=23790 BASE_BUILD= SIDES="r3 [r3base] r1 etcd redis"
# needs: etcd (etcd-server), redis-server and redis-cli (redis-server, redis-tools)
set -eu

build=${1:-build}
CLIENTS=${CLIENTS:-50}
PIPELINES=${PIPELINES:-"1 16"}
KEYS=${KEYS:-500000}
VALUE_SIZE=${VALUE_SIZE:-256}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
ETCD_PORT=${ETCD_PORT:-23790}
BASE_BUILD=${BASE_BUILD:-}
if [ -n "$BASE_BUILD" ]; then SIDES=${SIDES:-"r3 r3base r1 etcd redis"}
else SIDES=${SIDES:-"r3 r1 etcd redis"}; fi
here=$(cd "$(dirname "$0")" && pwd)
shard=$build/shard/objmeta-shard
bench=$build/bench/server/objmeta_bench
peer=$build/bench/replication/peer_write_bench

base_shard=$BASE_BUILD/shard/objmeta-shard
[ -z "$BASE_BUILD" ] || [ -x "$base_shard" ] || {
    echo "compare_replication: $base_shard not built" >&2; exit 2; }
for b in "$shard" "$bench" "$peer"; do
    [ -x "$b" ] || { echo "compare_replication: $b not built (ninja -C $build)" >&2; exit 2; }
done
for b in etcd etcdctl redis-server redis-cli; do
    command -v "$b" >/dev/null || {
        echo "compare_replication: $b missing (scripts/install-deps.sh --bench)" >&2; exit 2; }
done

# shellcheck source=bench/common/bench_lib.sh
. "$(dirname "$0")/../common/bench_lib.sh"
bench_tmp objmeta-repl-bench

start_shard() { # name, extra args... -> rpc port (SHARD_BIN: another binary)
    name=$1; shift
    "${SHARD_BIN:-$shard}" --listen=127.0.0.1:0 --http-listen=off --port-file="$tmp/$name.ports" \
        --data-dir="$tmp/$name" --sync-mode=always --log-level=warn "$@" </dev/null \
        >/dev/null 2>"$tmp/$name.log" &
    echo $! >"$tmp/$name.pid"
    wait_for "$tmp/$name.ports" 100 || { cat "$tmp/$name.log" >&2; exit 1; }
    awk '$1 == "rpc" { print $2 }' "$tmp/$name.ports"
}

# objmeta: R=1, and a group of three (two backups first, then the primary)
p1=$(start_shard r1); pids="$pids $(cat "$tmp/r1.pid")"
b1=$(start_shard b1 --replica-role=backup --replica-group=g1); pids="$pids $(cat "$tmp/b1.pid")"
b2=$(start_shard b2 --replica-role=backup --replica-group=g1); pids="$pids $(cat "$tmp/b2.pid")"
p3=$(start_shard p3 --replica-role=primary --replica-group=g1 \
    --replicas="127.0.0.1:$b1,127.0.0.1:$b2"); pids="$pids $(cat "$tmp/p3.pid")"
p3base=""
if [ -n "$BASE_BUILD" ]; then # the same group from the base build
    SHARD_BIN=$base_shard
    c1=$(start_shard c1 --replica-role=backup --replica-group=g2); pids="$pids $(cat "$tmp/c1.pid")"
    c2=$(start_shard c2 --replica-role=backup --replica-group=g2); pids="$pids $(cat "$tmp/c2.pid")"
    p3base=$(start_shard p3base --replica-role=primary --replica-group=g2 \
        --replicas="127.0.0.1:$c1,127.0.0.1:$c2"); pids="$pids $(cat "$tmp/p3base.pid")"
    SHARD_BIN=""
fi

# etcd: three members on loopback; the load goes to the leader
"$here/../../scripts/etcd-local.sh" --data "$tmp" --port "$ETCD_PORT" --fresh \
    >"$tmp/etcd.out" 2>&1 &
pids="$pids $!"
n=0
until grep -q "127.0.0.1" "$tmp/etcd.out" 2>/dev/null && \
      etcdctl --endpoints="$("$here/../../scripts/etcd-local.sh" --endpoints --port "$ETCD_PORT")" \
          endpoint health >/dev/null 2>&1; do
    n=$((n + 1))
    [ $n -lt 300 ] || { cat "$tmp/etcd.out" >&2; echo "compare_replication: etcd did not start" >&2; exit 1; }
    sleep 0.1
done
eps=$("$here/../../scripts/etcd-local.sh" --endpoints --port "$ETCD_PORT")
eleader=$(etcdctl --endpoints="$eps" endpoint status 2>/dev/null |
    awk -F', ' '$5 == "true" { sub("http://", "", $1); print $1 }')
[ -n "$eleader" ] || { echo "compare_replication: no etcd leader" >&2; exit 1; }

# Redis: a primary fsyncing every write and two replicas
rport=$((ETCD_PORT + 100))
for i in 0 1 2; do
    mkdir -p "$tmp/redis$i"
    extra=""
    [ $i -gt 0 ] && extra="--replicaof 127.0.0.1 $rport"
    # shellcheck disable=SC2086 # extra is two words or none
    redis-server --bind 127.0.0.1 --port $((rport + i)) --dir "$tmp/redis$i" --save '' \
        --appendonly yes --appendfsync always --logfile "$tmp/redis$i.log" $extra \
        </dev/null >/dev/null 2>&1 &
    pids="$pids $!"
done
n=0
until [ "$(redis-cli -p "$rport" info replication 2>/dev/null | grep -c "state=online")" = 2 ]; do
    n=$((n + 1))
    [ $n -lt 300 ] || { echo "compare_replication: Redis replicas did not connect" >&2; exit 1; }
    sleep 0.1
done

echo "preloading $KEYS records into objmeta R=1 and R=3 ..."
for port in $p1 $p3 $p3base; do
    "$bench" --addr "127.0.0.1:$port" --ops store=100 --connections "$CLIENTS" --pipeline 16 \
        --values random --value-size "$VALUE_SIZE" --keys "$KEYS" --preload --requests 1 \
        --duration 1s >/dev/null
done
for port in $p1 $p3 $p3base; do
    "$bench" --addr "127.0.0.1:$port" --ops store=100 --connections 1 --requests 1 --keys 1 \
        --duration 1s --stats | grep '^SHARD' | sed "s/^/port $port: /"
done

result() { # file -> ops_per_sec p50_us p99_us
    awk '$1 == "RESULT" && ($2 == "op=store" || $2 == "op=put") {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s %s %s\n", v["ops_per_sec"], v["p50_us"], v["p99_us"] }' "$1"
}
run() { # side, pipeline -> appends "side pl ops p50 p99" to $tmp/all
    side=$1; pl=$2
    case $side in
    r3|r1|r3base)
        port=$p3; [ "$side" = r1 ] && port=$p1; [ "$side" = r3base ] && port=$p3base
        "$bench" --addr "127.0.0.1:$port" --ops store=100 --connections "$CLIENTS" \
            --pipeline "$pl" --values random --value-size "$VALUE_SIZE" --keys "$KEYS" \
            --duration "${DURATION}s" >"$tmp/run.out" ;;
    etcd)
        "$peer" --target etcd --addr "$eleader" --connections "$CLIENTS" --pipeline "$pl" \
            --keys "$KEYS" --value-size "$VALUE_SIZE" --duration "${DURATION}s" >"$tmp/run.out" ;;
    redis)
        "$peer" --target redis --redis-wait 2 --addr "127.0.0.1:$rport" --connections "$CLIENTS" \
            --pipeline "$pl" --keys "$KEYS" --value-size "$VALUE_SIZE" \
            --duration "${DURATION}s" >"$tmp/run.out" ;;
    esac
    echo "$side $pl $(result "$tmp/run.out")" | tee -a "$tmp/all"
    grep "^last error" "$tmp/run.out" || true
}

r=1
while [ $r -le "$ROUNDS" ]; do
    for pl in $PIPELINES; do
        order=$SIDES # every other round backwards: no side always runs first
        [ $((r % 2)) = 0 ] && order=$(echo "$SIDES" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }')
        for side in $order; do run "$side" "$pl"; done
    done
    r=$((r + 1))
done

median() { # side pl -> "ops p50 p99" of the round with the median ops/s
    awk -v s="$1" -v p="$2" '$1 == s && $2 == p { print $3, $4, $5 }' "$tmp/all" | sort -n |
        awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "== medians of $ROUNDS rounds, $CLIENTS clients, $VALUE_SIZE-byte random values, $KEYS keys"
printf "%-8s %-9s %12s %10s %10s\n" pipeline side "ops/s" "p50 us" "p99 us"
for pl in $PIPELINES; do
    for side in $SIDES; do
        # shellcheck disable=SC2046 # three words: ops, p50, p99
        set -- $(median "$side" "$pl")
        printf "%-8s %-9s %12s %10s %10s\n" "$pl" "$side" "$1" "$2" "$3"
    done
done
echo
for pl in $PIPELINES; do
    r3=$(median r3 "$pl" | cut -d' ' -f1)
    echo "pipeline $pl: R=3/R=1 = $(ratio "$r3" "$(median r1 "$pl" | cut -d' ' -f1)")" \
        " R=3/etcd put = $(ratio "$r3" "$(median etcd "$pl" | cut -d' ' -f1)") (bar 10)" \
        " R=3/Redis SET+WAIT 2 = $(ratio "$r3" "$(median redis "$pl" | cut -d' ' -f1)") (bar 1.0)"
    [ -z "$BASE_BUILD" ] ||
        echo "pipeline $pl: R=3/R=3 base = $(ratio "$r3" "$(median r3base "$pl" | cut -d' ' -f1)")"
done
# per round, r3 / r3base (the A/B's spread)
for pl in $PIPELINES; do
    [ -n "$BASE_BUILD" ] || break
    awk -v p="$pl" '$2 == p && $1 == "r3" { a[++na] = $3 } $2 == p && $1 == "r3base" { b[++nb] = $3 }
        END { printf "pipeline %s: R=3/R=3 base per round:", p
              for (i = 1; i <= na && i <= nb; i++) printf " %.2f", (b[i] > 0 ? a[i] / b[i] : 0)
              print "" }' "$tmp/all"
done
