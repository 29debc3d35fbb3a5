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
# The data looks like what a shard holds: KEYS (default 2M) records are
# preloaded into both servers before anything is timed, objmeta's values are
# random bytes (VALUES=random; VALUES=json stores ~200-byte JSON user
# metadata instead, VALUE_SIZE=200 for Redis), so the engine's compressor and
# a memtable that holds everything do not flatter it. Reads and writes pick
# keys uniformly; DISTS="uniform zipf" adds objmeta rows with Zipfian keys
# (theta 0.99) -- redis-benchmark has no Zipfian generator, so those rows are
# set against Redis's uniform figures and say so. The "hot set" rows read and
# write only the first HOT_KEYS (100k) of the preloaded keys on both sides
# (what the script measured before the data grew). YCSB="A B C E" runs the
# YCSB core mixes through the shard at pipeline YCSB_PIPELINE (objmeta
# only). At the end: the shard's files per level (L0 is what every read
# checks) and the RSS of the shard and of both redis-servers.
#
# Each measurement runs ROUNDS times, interleaved (objmeta, Redis, objmeta,
# ...), and the run with the median ops/s is reported, so that load from
# elsewhere on the machine drifts into both sides alike. Beside ops/s and
# latency each row gives the server's CPU per operation ("srv us/op": the
# shard's or the redis-server's user + system time over the run, from
# /proc, divided by the operations it answered): steadier than ops/s on a
# shared machine, and it says which side bounds a run -- a server whose one
# network thread serves N ops/s at about 1e6/N us per op is saturated.
#
# TLS=1 adds Store and Retrieve over TLS (mutual TLS, certificates from
# scripts/gen-certs.sh) against the same operations in plaintext, same run
# (issue 13's bar: >= 0.8). Both sides are the one shard on its one data
# directory: for each pipeline depth of each round it is restarted serving
# TLS and restarted in plaintext (the order alternating by round), and each
# start is followed by a 1 s Retrieve warm-up (the block and row caches
# start empty), so the pair differs only in the transport -- no second
# shard compacts beside it. The clients connect (TLS handshakes included)
# before the clock starts.
# TLS=only runs just that pair (no Redis, no other rows).
#
# usage: bench/server/compare_redis.sh [BUILD_DIR]      (default: build)
# environment: CLIENTS=50 PIPELINES="1 16" VALUE_SIZE=256 KEYS=2000000 HOT_KEYS=100000
#              VALUES=random DISTS=uniform YCSB="A B C E" YCSB_PIPELINE=1 DURATION=3 ROUNDS=3
#              TLS=0 (1: add the TLS pair; only: nothing else)
# needs: redis-server, redis-benchmark, redis-cli (Debian: redis-server redis-tools)
set -eu

build=${1:-build}
CLIENTS=${CLIENTS:-50}
PIPELINES=${PIPELINES:-"1 16"}
VALUES=${VALUES:-random}
if [ "$VALUES" = json ]; then VALUE_SIZE=${VALUE_SIZE:-200}; else VALUE_SIZE=${VALUE_SIZE:-256}; fi
KEYS=${KEYS:-2000000}
HOT_KEYS=${HOT_KEYS:-100000}
DISTS=${DISTS:-uniform}
YCSB=${YCSB-"A B C E"}
YCSB_PIPELINE=${YCSB_PIPELINE:-1}
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-3}
TLS=${TLS:-0}
shard=$build/shard/objmeta-shard
bench=$build/bench/server/objmeta_bench

for b in "$shard" "$bench"; do
    [ -x "$b" ] || { echo "compare_redis: $b not built (ninja -C $build)" >&2; exit 2; }
done
for b in redis-server redis-benchmark redis-cli; do
    [ "${TLS:-0}" = only ] && break
    command -v "$b" >/dev/null || {
        echo "compare_redis: $b missing (apt-get install redis-server redis-tools)" >&2; exit 2; }
done

# shellcheck source=bench/common/bench_lib.sh
. "$(dirname "$0")/../common/bench_lib.sh"
bench_tmp objmeta-vs-redis
shard_pid=""
# the shard is restarted (plaintext / TLS): stop whichever runs, then the rest
cleanup() { pids="$shard_pid $pids"; bench_cleanup; }
trap cleanup EXIT INT TERM

# objmeta-shard, durable; start_shard [TLS options] (re)starts it on the same data
start_shard() {
    rm -f "$tmp/shard.ports"
    "$shard" --listen=127.0.0.1:0 --http-listen=off --port-file="$tmp/shard.ports" \
        --data-dir="$tmp/shard" --sync-mode=always --log-level=warn "$@" </dev/null >/dev/null \
        2>>"$tmp/shard.log" &
    shard_pid=$!
    wait_for "$tmp/shard.ports" 600 || { cat "$tmp/shard.log" >&2; exit 1; }
    sport=$(awk '$1 == "rpc" { print $2 }' "$tmp/shard.ports")
    [ $# -gt 0 ] || oport=$sport
}
stop_shard() {
    kill "$shard_pid"
    wait "$shard_pid" || { echo "compare_redis: the shard exited with an error" >&2; exit 1; }
    shard_pid=""
}
start_shard
tls_bench=""
tls_serve=""
if [ "$TLS" != 0 ]; then
    "$(dirname "$0")/../../scripts/gen-certs.sh" "$tmp/certs" >/dev/null
    tls_serve="--tls-cert=$tmp/certs/node.pem --tls-key=$tmp/certs/node.key"
    tls_serve="$tls_serve --tls-ca=$tmp/certs/ca.pem"
    tls_bench="--ca $tmp/certs/ca.pem --cert $tmp/certs/client.pem --key $tmp/certs/client.key"
fi
full=true
[ "$TLS" = only ] && full=false

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
if $full; then
    rport=$(start_redis plain --appendonly no)
    pids="$pids $(cat "$tmp/plain.pid")"
    aport=$(start_redis always --appendonly yes --appendfsync always)
    pids="$pids $(cat "$tmp/always.pid")"
fi

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# us of CPU per operation: ticks before, ticks after, operations
cpu_per_op() {
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$hz" \
        'BEGIN { if (n > 0) printf "%.2f", (b - a) / hz * 1e6 / n; else print "-" }'
}

# objmeta_bench with its arguments, timed against the shard's CPU; op: the RESULT line to
# report (an operation, or "all") -> "ops_per_sec p50_us p99_us srv_us_per_op"
ob_run() { # op, objmeta_bench arguments...
    op=$1; shift
    t0=$(cpu_ticks "$shard_pid")
    "$bench" "$@" >"$tmp/ob.out"
    t1=$(cpu_ticks "$shard_pid")
    # shellcheck disable=SC2046 # four words on purpose
    set -- $(awk -v op="$op" '$1 == "RESULT" && $2 == "op=" op {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["ops_per_sec"], v["p50_us"], v["p99_us"], v["ops"]; exit }' "$tmp/ob.out")
    if [ $# -eq 4 ]; then echo "$1 $2 $3 $(cpu_per_op "$t0" "$t1" "$4")"; fi
}

objmeta_run() { # ops, pipeline, keys, dist, extra... -> "ops_per_sec p50_us p99_us srv_us_per_op"
    ops=$1; pl=$2; nk=$3; dist=$4; shift 4
    ob_run "$ops" --addr "127.0.0.1:${bench_port:-$oport}" --ops "$ops=100" \
        --connections "$CLIENTS" --pipeline "$pl" --values "$VALUES" --value-size "$VALUE_SIZE" \
        --keys "$nk" --dist "$dist" --duration "${DURATION}s" "$@"
}

ycsb_run() { # workload -> "ops_per_sec p50_us p99_us srv_us_per_op" over all operations
    ob_run all --addr "127.0.0.1:$oport" --workload "$1" --connections "$CLIENTS" \
        --pipeline "$YCSB_PIPELINE" --values "$VALUES" --value-size "$VALUE_SIZE" --keys "$KEYS" \
        --duration "${DURATION}s"
}

redis_run() { # port, test (set|get), pipeline, keys -> "ops_per_sec p50_us p99_us srv_us_per_op"
    # size -n for about DURATION seconds from a short calibration run
    cal=$(redis-benchmark -h 127.0.0.1 -p "$1" -c "$CLIENTS" -P "$3" -d "$VALUE_SIZE" -r "$4" \
        -t "$2" -n 20000 --csv 2>/dev/null | awk -F'"' 'NR == 2 { print int($4) }')
    n=$(( ${cal:-10000} * DURATION ))
    [ "$n" -ge 20000 ] || n=20000
    if [ "$1" = "$rport" ]; then rpid=$(cat "$tmp/plain.pid"); else rpid=$(cat "$tmp/always.pid"); fi
    t0=$(cpu_ticks "$rpid")
    redis-benchmark -h 127.0.0.1 -p "$1" -c "$CLIENTS" -P "$3" -d "$VALUE_SIZE" -r "$4" \
        -t "$2" -n "$n" --csv 2>/dev/null >"$tmp/rb.out"
    t1=$(cpu_ticks "$rpid")
    awk -F'"' -v cpu="$(cpu_per_op "$t0" "$t1" "$n")" \
        'NR == 2 { printf "%.0f %.1f %.1f %s\n", $4, $10 * 1000, $14 * 1000, cpu }' "$tmp/rb.out"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

rss_mib() { awk '$1 == "VmRSS:" { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }
# RSS split: anonymous (heap: memtables, caches, buffers) and file-backed (the
# shard's SSTables are mapped read-only: those pages are the kernel's page
# cache, shared and reclaimable, counted in RSS only once touched)
rss_split() {
    awk '$1 == "RssAnon:" { a = $2 } $1 == "RssFile:" { f = $2 }
        END { printf "anonymous %.0f MiB + mapped files %.0f MiB", a / 1024, f / 1024 }' \
        "/proc/$1/status" 2>/dev/null
}

if $full; then peer="redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"; else peer="itself over TLS"; fi
echo "objmeta-shard vs $peer," \
    "clients=$CLIENTS values=$VALUES value_size=$VALUE_SIZE keys=$KEYS hot_keys=$HOT_KEYS" \
    "dists=$DISTS duration=${DURATION}s, $(nproc) CPUs, data in $tmp"
# Preload KEYS records everywhere before timing anything. Redis gets the same
# keys (key:%012d, redis-benchmark's -r format) through redis-cli --pipe.
"$bench" --addr "127.0.0.1:$oport" --ops store=100 --connections "$CLIENTS" --pipeline 16 \
    --values "$VALUES" --value-size "$VALUE_SIZE" --keys "$KEYS" --duration 1s --preload |
    grep '^preloaded'
$full || YCSB=""
$full && for port in "$rport" "$aport"; do
    awk -v n="$KEYS" -v vs="$VALUE_SIZE" 'BEGIN {
        v = sprintf("%*s", vs, ""); gsub(/ /, "x", v)
        for (i = 0; i < n; i++) {
            k = sprintf("key:%012d", i)
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, vs, v
        } }' | redis-cli -p "$port" --pipe | tail -1 | sed "s/^/redis preload: /"
done
# Store and Retrieve over TLS and in plaintext, on the one shard restarted on
# the same data (see the top); the order alternates by round, so neither
# side always inherits the other's compactions; plaintext again afterwards.
restart_warm() { # [TLS server options]: restart the shard, then a 1 s Retrieve warm-up
    stop_shard
    start_shard "$@"
    # shellcheck disable=SC2086 # the TLS options are several words
    DURATION=1 bench_port=$sport objmeta_run retrieve 16 "$KEYS" uniform ${1:+$tls_bench} >/dev/null
}
tls_pair() { # pipeline
    modes="tls plain"
    [ $((r % 2)) = 1 ] || modes="plain tls"
    for mode in $modes; do
        opts=""
        # shellcheck disable=SC2086
        if [ "$mode" = tls ]; then restart_warm $tls_serve; opts=$tls_bench; else restart_warm; fi
        # shellcheck disable=SC2086
        echo "c_store_$mode $1 $(bench_port=$sport objmeta_run store "$1" "$KEYS" uniform $opts)"
        # shellcheck disable=SC2086
        echo "d_retrieve_$mode $1 $(bench_port=$sport objmeta_run retrieve "$1" "$KEYS" uniform $opts)"
    done
    if [ "$mode" = tls ]; then restart_warm; fi
}

# one line per run: "<bench-id> <pipeline> <ops/s> <p50> <p99>"
results="$tmp/results"
: >"$results"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for pl in $PIPELINES; do
        if ! $full; then
            tls_pair "$pl" >>"$results"
            continue
        fi
        {
            echo "1_store $pl $(objmeta_run store "$pl" "$KEYS" uniform)"
            echo "2_set_always $pl $(redis_run "$aport" set "$pl" "$KEYS")"
            echo "3_set_plain $pl $(redis_run "$rport" set "$pl" "$KEYS")"
            echo "4_retrieve $pl $(objmeta_run retrieve "$pl" "$KEYS" uniform)"
            echo "5_get $pl $(redis_run "$rport" get "$pl" "$KEYS")"
            for d in $DISTS; do
                [ "$d" = uniform ] && continue
                echo "6_store_$d $pl $(objmeta_run store "$pl" "$KEYS" "$d")"
                echo "7_retrieve_$d $pl $(objmeta_run retrieve "$pl" "$KEYS" "$d")"
            done
            echo "8_hot_store $pl $(objmeta_run store "$pl" "$HOT_KEYS" uniform)"
            echo "9_hot_set_always $pl $(redis_run "$aport" set "$pl" "$HOT_KEYS")"
            echo "a_hot_retrieve $pl $(objmeta_run retrieve "$pl" "$HOT_KEYS" uniform)"
            echo "b_hot_get $pl $(redis_run "$rport" get "$pl" "$HOT_KEYS")"
            [ "$TLS" = 0 ] || tls_pair "$pl"
        } >>"$results"
    done
    for w in $YCSB; do
        echo "ycsb_$w $YCSB_PIPELINE $(ycsb_run "$w")" >>"$results"
    done
    r=$((r + 1))
done

median() { # bench-id pipeline -> "ops p50 p99 srv_us_per_op" of the median run
    awk -v b="$1" -v p="$2" '$1 == b && $2 == p { print $3, $4, $5, $6 }' "$results" |
        sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}
ops_of() { median "$1" "$2" | cut -d' ' -f1; }
label() {
    case $1 in
    1_store) echo "objmeta Store (fsync per ack)" ;;
    2_set_always) echo "redis SET appendfsync always" ;;
    3_set_plain) echo "redis SET no persistence" ;;
    4_retrieve) echo "objmeta Retrieve" ;;
    5_get) echo "redis GET" ;;
    6_store_*) echo "objmeta Store, ${1#6_store_} keys" ;;
    7_retrieve_*) echo "objmeta Retrieve, ${1#7_retrieve_} keys" ;;
    8_hot_store) echo "hot set: objmeta Store" ;;
    9_hot_set_always) echo "hot set: redis SET always" ;;
    a_hot_retrieve) echo "hot set: objmeta Retrieve" ;;
    b_hot_get) echo "hot set: redis GET" ;;
    c_store_tls) echo "objmeta Store over TLS" ;;
    c_store_plain) echo "objmeta Store, plaintext (pair)" ;;
    d_retrieve_tls) echo "objmeta Retrieve over TLS" ;;
    d_retrieve_plain) echo "objmeta Retrieve, plaintext (pair)" ;;
    ycsb_*) echo "objmeta YCSB ${1#ycsb_} (all ops)" ;;
    esac
}
row() { # bench-id pipeline
    # shellcheck disable=SC2046 # four words on purpose
    set -- "$1" "$2" $(median "$1" "$2")
    printf '%-34s %4s %12s %10s %10s %10s\n' "$(label "$1")" "$2" "$3" "$4" "$5" "${6:--}"
}

printf '\n%-34s %4s %12s %10s %10s %10s   (median of %s runs)\n' "benchmark" "pipe" "ops/s" \
    "p50 us" "p99 us" "srv us/op" "$ROUNDS"
summary=""
for pl in $PIPELINES; do
    if [ "$TLS" != 0 ]; then
        for b in c_store_tls c_store_plain d_retrieve_tls d_retrieve_plain; do
            row "$b" "$pl"
        done
        summary="$summary
pipeline $pl: TLS/plaintext Store = $(ratio "$(ops_of c_store_tls "$pl")" "$(ops_of c_store_plain "$pl")") (bar 0.8)   TLS/plaintext Retrieve = $(ratio "$(ops_of d_retrieve_tls "$pl")" "$(ops_of d_retrieve_plain "$pl")") (bar 0.8)"
        $full || continue
    fi
    for b in 1_store 2_set_always 3_set_plain 4_retrieve 5_get; do
        row "$b" "$pl"
    done
    for d in $DISTS; do
        [ "$d" = uniform ] || { row "6_store_$d" "$pl"; row "7_retrieve_$d" "$pl"; }
    done
    for b in 8_hot_store 9_hot_set_always a_hot_retrieve b_hot_get; do
        row "$b" "$pl"
    done
    os=$(ops_of 1_store "$pl"); as=$(ops_of 2_set_always "$pl"); rs=$(ops_of 3_set_plain "$pl")
    og=$(ops_of 4_retrieve "$pl"); rg=$(ops_of 5_get "$pl")
    summary="$summary
pipeline $pl, $KEYS keys: Store/SET(always) = $(ratio "$os" "$as") (bar 1.0)   Store/SET(no persistence) = $(ratio "$os" "$rs")   Retrieve/GET = $(ratio "$og" "$rg") (bar 1.0 at pipeline 1, 0.8 at 16)"
    for d in $DISTS; do
        [ "$d" = uniform ] && continue
        summary="$summary
pipeline $pl, $d keys: Store/SET(always, uniform) = $(ratio "$(ops_of "6_store_$d" "$pl")" "$as")   Retrieve/GET(uniform) = $(ratio "$(ops_of "7_retrieve_$d" "$pl")" "$rg")   (Redis rows are uniform: redis-benchmark has no Zipfian keys)"
    done
    summary="$summary
pipeline $pl, hot set of $HOT_KEYS keys: Store/SET(always) = $(ratio "$(ops_of 8_hot_store "$pl")" "$(ops_of 9_hot_set_always "$pl")")   Retrieve/GET = $(ratio "$(ops_of a_hot_retrieve "$pl")" "$(ops_of b_hot_get "$pl")")"
done
for w in $YCSB; do
    row "ycsb_$w" "$YCSB_PIPELINE"
done
echo
echo "ratios:$summary"
[ "$TLS" = 0 ] || awk '$1 ~ /^[cd]_/ { printf "run: %s pipeline %s %s ops/s\n", $1, $2, $3 }' "$results"
"$bench" --addr "127.0.0.1:$oport" --ops retrieve=1 --connections 1 --requests 1 --keys "$KEYS" \
    --duration 1s --stats | grep '^SHARD' || true
$full && echo "rss: objmeta-shard $(rss_mib "$shard_pid") MiB ($(rss_split "$shard_pid")), redis-server (no persistence)" \
    "$(rss_mib "$(cat "$tmp/plain.pid")") MiB, redis-server (always)" \
    "$(rss_mib "$(cat "$tmp/always.pid")") MiB, each holding $KEYS records or more"
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; } # pid field
$full && echo "rss ratio: objmeta-shard anonymous / redis-server (no persistence) =" \
    "$(ratio "$(status_kb "$shard_pid" RssAnon)" "$(status_kb "$(cat "$tmp/plain.pid")" VmRSS)") (bar 0.6)"
# The same with the mapped table pages the run has touched: reads use them in
# place (the block cache holds only decompressed blocks), so they are the
# shard's read working set, though the kernel may drop them under pressure.
$full && echo "rss ratio with the mapped table files: objmeta-shard VmRSS / redis-server" \
    "(no persistence) = $(ratio "$(status_kb "$shard_pid" VmRSS)" "$(status_kb "$(cat "$tmp/plain.pid")" VmRSS)")"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
