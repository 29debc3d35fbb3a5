#!/bin/sh
# bench/server/compare_redis.sh -- objmeta-shard against redis-server on
# loopback, same clients, pipeline depths and value sizes, in one go.
#
#   durable writes: objmeta Store (WAL fsync before ack, sync-mode=always)
#                   vs Redis SET with appendonly yes + appendfsync always
#                   (and, for reference, Redis without persistence)
#   reads:          objmeta Retrieve vs Redis GET (no persistence)
#
# Both load generators are single-threaded (objmeta_bench: one libevent loop;
# redis-benchmark: default --threads 1). The bars of issue 4: Store >= 1.0x
# Redis SET appendfsync always, Retrieve >= 0.8x Redis GET, at pipeline 1 and 16.
#
# Each measurement runs ROUNDS times, interleaved (objmeta, Redis, objmeta,
# ...), and the run with the median ops/s is reported, so that load from
# elsewhere on the machine drifts into both sides alike.
#
# TLS=1 adds a second objmeta-shard serving TLS (mutual TLS, certificates
# from scripts/gen-certs.sh) and reports Store and Retrieve over TLS against
# the same operations in plaintext, same run (issue 13's bar: >= 0.8).
#
# usage: bench/server/compare_redis.sh [BUILD_DIR]      (default: build)
# environment: CLIENTS=50 PIPELINES="1 16" VALUE_SIZE=256 KEYS=100000 DURATION=3 ROUNDS=3 TLS=0
# needs: redis-server and redis-benchmark (Debian: redis-server redis-tools)
set -eu

build=${1:-build}
CLIENTS=${CLIENTS:-50}
PIPELINES=${PIPELINES:-"1 16"}
VALUE_SIZE=${VALUE_SIZE:-256}
KEYS=${KEYS:-100000}
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-3}
TLS=${TLS:-0}
shard=$build/shard/objmeta-shard
bench=$build/bench/server/objmeta_bench

for b in "$shard" "$bench"; do
    [ -x "$b" ] || { echo "compare_redis: $b not built (ninja -C $build)" >&2; exit 2; }
done
for b in redis-server redis-benchmark; do
    command -v "$b" >/dev/null || {
        echo "compare_redis: $b missing (apt-get install redis-server redis-tools)" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/objmeta-vs-redis.XXXXXX")
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    # the redis-servers are not our children (started in $(...)): poll until gone
    n=0
    for p in $pids; do
        while kill -0 "$p" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

wait_for() { # file, deadline in tenths of a second
    n=0
    while [ ! -s "$1" ] && [ $n -lt "$2" ]; do sleep 0.1; n=$((n + 1)); done
    [ -s "$1" ]
}

# objmeta-shard, durable
"$shard" --listen=127.0.0.1:0 --http-listen=off --port-file="$tmp/shard.ports" \
    --data-dir="$tmp/shard" --sync-mode=always --log-level=warn </dev/null >/dev/null \
    2>"$tmp/shard.log" &
pids="$pids $!"
wait_for "$tmp/shard.ports" 100 || { cat "$tmp/shard.log" >&2; exit 1; }
oport=$(awk '$1 == "rpc" { print $2 }' "$tmp/shard.ports")
tls_bench=""
if [ "$TLS" = 1 ]; then
    "$(dirname "$0")/../../scripts/gen-certs.sh" "$tmp/certs" >/dev/null
    "$shard" --listen=127.0.0.1:0 --http-listen=off --port-file="$tmp/tls.ports" \
        --data-dir="$tmp/tls" --sync-mode=always --log-level=warn \
        --tls-cert="$tmp/certs/node.pem" --tls-key="$tmp/certs/node.key" \
        --tls-ca="$tmp/certs/ca.pem" </dev/null >/dev/null 2>"$tmp/tls.log" &
    pids="$pids $!"
    wait_for "$tmp/tls.ports" 100 || { cat "$tmp/tls.log" >&2; exit 1; }
    tport=$(awk '$1 == "rpc" { print $2 }' "$tmp/tls.ports")
    tls_bench="--ca $tmp/certs/ca.pem --cert $tmp/certs/client.pem --key $tmp/certs/client.key"
fi

# two redis-servers on free ports: one without persistence, one fsyncing every write
start_redis() { # name, extra args...
    name=$1; shift
    mkdir -p "$tmp/$name"
    for try in 1 2 3 4 5 6 7 8 9 10; do
        port=$(( 20000 + ($$ * 7 + try * 131 + $(od -An -N2 -tu2 /dev/urandom | tr -d " ")) % 30000 ))
        # no inherited stdout: this runs inside $(...), which waits for EOF
        redis-server --bind 127.0.0.1 --port "$port" --dir "$tmp/$name" --save '' \
            --logfile "$tmp/$name.log" "$@" </dev/null >/dev/null 2>&1 &
        rp=$!
        n=0
        while [ $n -lt 50 ]; do
            if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
                echo "$rp" >"$tmp/$name.pid" # a subshell: the parent reads the pid file
                echo "$port"
                return 0
            fi
            kill -0 "$rp" 2>/dev/null || break
            sleep 0.1
            n=$((n + 1))
        done
        kill "$rp" 2>/dev/null || true
    done
    echo "compare_redis: cannot start redis-server ($name)" >&2
    return 1
}
rport=$(start_redis plain --appendonly no)
pids="$pids $(cat "$tmp/plain.pid")"
aport=$(start_redis always --appendonly yes --appendfsync always)
pids="$pids $(cat "$tmp/always.pid")"

objmeta_run() { # ops, pipeline, extra... -> "ops_per_sec p50_us p99_us"
    ops=$1; pl=$2; shift 2
    "$bench" --addr "127.0.0.1:${bench_port:-$oport}" --ops "$ops=100" --connections "$CLIENTS" \
        --pipeline "$pl" --value-size "$VALUE_SIZE" --keys "$KEYS" --duration "${DURATION}s" \
        "$@" >"$tmp/ob.out"
    awk -v op="$ops" '$1 == "RESULT" && $2 == "op=" op {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s %s %s\n", v["ops_per_sec"], v["p50_us"], v["p99_us"] }' "$tmp/ob.out"
}

redis_run() { # port, test (set|get), pipeline -> "ops_per_sec p50_us p99_us"
    # size -n for about DURATION seconds from a short calibration run
    cal=$(redis-benchmark -h 127.0.0.1 -p "$1" -c "$CLIENTS" -P "$3" -d "$VALUE_SIZE" -r "$KEYS" \
        -t "$2" -n 20000 --csv 2>/dev/null | awk -F'"' 'NR == 2 { print int($4) }')
    n=$(( ${cal:-10000} * DURATION ))
    [ "$n" -ge 20000 ] || n=20000
    redis-benchmark -h 127.0.0.1 -p "$1" -c "$CLIENTS" -P "$3" -d "$VALUE_SIZE" -r "$KEYS" \
        -t "$2" -n "$n" --csv 2>/dev/null |
        awk -F'"' 'NR == 2 { printf "%.0f %.1f %.1f\n", $4, $10 * 1000, $14 * 1000 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo "objmeta-shard vs redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')," \
    "clients=$CLIENTS value_size=$VALUE_SIZE keys=$KEYS duration=${DURATION}s," \
    "$(nproc) CPUs, data in $tmp"
"$bench" --addr "127.0.0.1:$oport" --ops store=100 --connections "$CLIENTS" --pipeline 16 \
    --value-size "$VALUE_SIZE" --keys "$KEYS" --duration 1s --preload >/dev/null
# one line per run: "<bench-id> <pipeline> <ops/s> <p50> <p99>"
results="$tmp/results"
: >"$results"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for pl in $PIPELINES; do
        {
            echo "1_store $pl $(objmeta_run store "$pl")"
            echo "2_set_always $pl $(redis_run "$aport" set "$pl")"
            echo "3_set_plain $pl $(redis_run "$rport" set "$pl")"
            echo "4_retrieve $pl $(objmeta_run retrieve "$pl")"
            echo "5_get $pl $(redis_run "$rport" get "$pl")"
            if [ "$TLS" = 1 ]; then
                # shellcheck disable=SC2086 # the TLS options are several words
                echo "6_store_tls $pl $(bench_port=$tport objmeta_run store "$pl" $tls_bench)"
                # shellcheck disable=SC2086
                echo "7_retrieve_tls $pl $(bench_port=$tport objmeta_run retrieve "$pl" $tls_bench)"
            fi
        } >>"$results"
    done
    r=$((r + 1))
done

median() { # bench-id pipeline -> "ops p50 p99" of the median run
    awk -v b="$1" -v p="$2" '$1 == b && $2 == p { print $3, $4, $5 }' "$results" |
        sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}
label() {
    case $1 in
    1_store) echo "objmeta Store (fsync per ack)" ;;
    2_set_always) echo "redis SET appendfsync always" ;;
    3_set_plain) echo "redis SET no persistence" ;;
    4_retrieve) echo "objmeta Retrieve" ;;
    5_get) echo "redis GET" ;;
    6_store_tls) echo "objmeta Store over TLS" ;;
    7_retrieve_tls) echo "objmeta Retrieve over TLS" ;;
    esac
}

printf '\n%-34s %4s %12s %10s %10s   (median of %s runs)\n' "benchmark" "pipe" "ops/s" \
    "p50 us" "p99 us" "$ROUNDS"
summary=""
for pl in $PIPELINES; do
    benches="1_store 2_set_always 3_set_plain 4_retrieve 5_get"
    [ "$TLS" = 1 ] && benches="$benches 6_store_tls 7_retrieve_tls"
    for b in $benches; do
        # shellcheck disable=SC2046 # three words on purpose
        set -- $(median "$b" "$pl")
        printf '%-34s %4s %12s %10s %10s\n' "$(label "$b")" "$pl" "$1" "$2" "$3"
    done
    os=$(median 1_store "$pl" | cut -d' ' -f1)
    as=$(median 2_set_always "$pl" | cut -d' ' -f1)
    rs=$(median 3_set_plain "$pl" | cut -d' ' -f1)
    og=$(median 4_retrieve "$pl" | cut -d' ' -f1)
    rg=$(median 5_get "$pl" | cut -d' ' -f1)
    summary="$summary
pipeline $pl: Store/SET(always) = $(ratio "$os" "$as") (bar 1.0)   Store/SET(no persistence) = $(ratio "$os" "$rs")   Retrieve/GET = $(ratio "$og" "$rg") (bar 0.8)"
    if [ "$TLS" = 1 ]; then
        ts=$(median 6_store_tls "$pl" | cut -d' ' -f1)
        tg=$(median 7_retrieve_tls "$pl" | cut -d' ' -f1)
        summary="$summary
pipeline $pl: TLS/plaintext Store = $(ratio "$ts" "$os") (bar 0.8)   TLS/plaintext Retrieve = $(ratio "$tg" "$og") (bar 0.8)"
    fi
done
echo
echo "ratios:$summary"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
