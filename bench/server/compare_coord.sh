#!/usr/bin/env bash
# bench/server/compare_coord.sh -- what the coordinator costs, in one run:
#
# 1. Routing overhead. A cluster of 3 objmeta-shard processes and one
#    objmeta-coord; objmeta_bench Store and Retrieve (VALUE_SIZE-byte values,
#    CLIENTS connections, each pipeline depth of PIPELINES) sent through the
#    coordinator, and the same load sent straight to the shards: objmeta_bench
#    --direct-shards fetches the coordinator's ring and sends each request to
#    the key's owner with the ring epoch (so the shards check the routing), one
#    connection per shard per client connection, the same requests in flight.
#    Same shards, same data, same key sequence: the only difference is the hop
#    through the coordinator. Bar (issue 5): coordinator >= 0.6x direct.
#
# 2. List latency. One page of LIST_PAGE keys (ListObjectsV2 with a random
#    start_after that leaves a full page behind it, in a bucket of LIST_KEYS
#    keys), one request at a time, LIST_PAGES pages per measurement, from:
#    a single shard holding every key (asked directly), and coordinators over
#    1, 3 and 8 shards (separate clusters holding the same keys). Bar (issue
#    5): the page over 8 shards within 3x the time of the single shard.
#
# Every measurement runs ROUNDS times, interleaved (the order of coordinator
# and direct alternates between rounds), and the median is reported: for
# Store/Retrieve the run with the median ops/s, for List the median p50 and
# the median p99 of the rounds. All processes run on loopback with free ports
# (port files), their data in one temporary directory; everything is stopped
# and removed on exit, error or Ctrl-C. Shards run with their defaults
# (sync-mode=always: WAL fdatasync before each acknowledgement).
#
# usage: bench/server/compare_coord.sh [BUILD_DIR]      (default: build)
# environment: CLIENTS=50 PIPELINES="1 16" VALUE_SIZE=256 KEYS=100000 DURATION=3 ROUNDS=3
#              LIST_KEYS=60000 LIST_PAGE=1000 LIST_PAGES=500 LIST_SHARDS="1 3 8"
set -euo pipefail

build=${1:-build}
CLIENTS=${CLIENTS:-50}
PIPELINES=${PIPELINES:-"1 16"}
VALUE_SIZE=${VALUE_SIZE:-256}
KEYS=${KEYS:-100000}
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-3}
LIST_KEYS=${LIST_KEYS:-60000}
LIST_PAGE=${LIST_PAGE:-1000}
LIST_PAGES=${LIST_PAGES:-500}
LIST_SHARDS=${LIST_SHARDS:-"1 3 8"}
shard_bin=$build/shard/objmeta-shard
coord_bin=$build/coordinator/objmeta-coord
bench=$build/bench/server/objmeta_bench

for b in "$shard_bin" "$coord_bin" "$bench"; do
    [[ -x $b ]] || { echo "compare_coord: $b not built (ninja -C $build)" >&2; exit 2; }
done
(( LIST_KEYS > LIST_PAGE )) || { echo "compare_coord: LIST_KEYS must exceed LIST_PAGE" >&2; exit 2; }

# shellcheck source=bench/common/servers.sh
. "$(dirname "$0")/../common/servers.sh"
bench_servers_init coord-bench

# start NAME PROGRAM ARGS...: a server on a free port, no /metrics; sets PORT and PID.
start() {
    local name=$1 prog=$2
    shift 2
    bench_start "$name" 127.0.0.1:0 off "$prog" "$@"
}

# cluster NAME N: N shards NAME-s1..NAME-sN and coordinator NAME-coord;
# sets COORD (its address), COORD_PID, SHARD1 (address of the first shard)
# and SHARD_PIDS.
cluster() {
    local name=$1 n=$2 i spec=""
    SHARD_PIDS=()
    for ((i = 1; i <= n; i++)); do
        start "$name-s$i" "$shard_bin" --id="$name-s$i"
        SHARD_PIDS+=("$PID")
        spec+="${spec:+,}$name-s$i=127.0.0.1:$PORT"
        (( i == 1 )) && SHARD1=127.0.0.1:$PORT
    done
    start "$name-coord" "$coord_bin" --shards="$spec"
    COORD=127.0.0.1:$PORT
    COORD_PID=$PID
}

# result FILE OP -> "ops_per_sec p50_us p99_us errors ops" from objmeta_bench's RESULT line
result() {
    awk -v op="$2" '$1 == "RESULT" && $2 == "op=" op {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s %s %s %s %s\n", v["ops_per_sec"], v["p50_us"], v["p99_us"], v["errors"], v["ops"] }' "$1"
}


# check FILE WHAT: fail loudly when a run had errors (a misrouted request, a shard down)
check() {
    local errs
    errs=$(awk '$1 == "RESULT" && $2 == "op=all" { sub("errors=", "", $NF); print $NF }' "$1")
    if [[ -z $errs || $errs != 0 ]]; then
        echo "compare_coord: $2 reported errors (${errs:-no result}):" >&2
        cat "$1" >&2
        exit 1
    fi
}

# rw TARGET OP PIPELINE -> appends to results "<target>_<op> <pipeline> ops/s p50 p99
# errors ops cpu_coord cpu_shards cpu_client" (CPU seconds used during the run)
rw() {
    local target=$1 op=$2 pl=$3 out=$tmp/run.out extra=() c0 s0
    [[ $target == direct ]] && extra=(--direct-shards)
    c0=$(cpu_s "$rw_coord_pid")
    s0=$(cpu_s "${rw_shard_pids[@]}")
    "$bench" --addr "$rw_coord" "${extra[@]}" --ops "$op=1" --connections "$CLIENTS" \
        --pipeline "$pl" --value-size "$VALUE_SIZE" --keys "$KEYS" --duration "${DURATION}s" \
        >"$out"
    check "$out" "$target $op pipeline $pl"
    echo "${target}_$op $pl $(result "$out" "$op")" \
        "$(awk -v a="$(cpu_s "$rw_coord_pid")" -v b="$c0" 'BEGIN { print a - b }')" \
        "$(awk -v a="$(cpu_s "${rw_shard_pids[@]}")" -v b="$s0" 'BEGIN { print a - b }')" \
        "$(awk '$1 == "client" && $2 == "cpu" { print $3 }' "$out")" >>"$results"
}

# list NAME ADDR PAGES -> appends "list_<name> - ops p50 p99 errors" (PAGES 0: warm-up only)
list() {
    local name=$1 addr=$2 pages=$3 out=$tmp/run.out
    "$bench" --addr "$addr" --bucket listbench --ops list=1 --connections 1 --pipeline 1 \
        --keys "$LIST_KEYS" --list-max-keys "$LIST_PAGE" --requests "$(( pages > 0 ? pages : 20 ))" \
        --duration 300s >"$out"
    check "$out" "list $name"
    if ! grep -q "^list: $LIST_PAGE.0 keys per page" "$out"; then
        echo "compare_coord: list $name returned short pages:" >&2
        cat "$out" >&2
        exit 1
    fi
    (( pages > 0 )) && echo "list_$name - $(result "$out" list)" >>"$results"
    return 0
}

preload() { # ADDR BUCKET KEYS
    "$bench" --addr "$1" --bucket "$2" --keys "$3" --value-size "$VALUE_SIZE" --preload \
        --ops retrieve=1 --requests 1 --connections "$CLIENTS" --pipeline 16 >"$tmp/run.out"
    grep -q '(0 errors)' "$tmp/run.out" || { cat "$tmp/run.out" >&2; exit 1; }
}

echo "compare_coord: $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')), load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg) at start; data in $tmp"
echo "clients=$CLIENTS pipelines=\"$PIPELINES\" value_size=$VALUE_SIZE keys=$KEYS" \
    "duration=${DURATION}s rounds=$ROUNDS; list: $LIST_PAGE-key pages, $LIST_PAGES pages," \
    "bucket of $LIST_KEYS keys, shards \"$LIST_SHARDS\""

cluster rw 3
rw_coord=$COORD
rw_coord_pid=$COORD_PID
rw_shard_pids=("${SHARD_PIDS[@]}")
preload "$rw_coord" bench "$KEYS"
declare -A list_coord
list_direct=""
for n in $LIST_SHARDS; do
    cluster "list$n" "$n"
    list_coord[$n]=$COORD
    preload "$COORD" listbench "$LIST_KEYS"
    (( n == 1 )) && list_direct=$SHARD1
done
[[ -n $list_direct ]] || { echo "compare_coord: LIST_SHARDS must include 1" >&2; exit 2; }
echo "loaded: $KEYS keys through the 3-shard coordinator, $LIST_KEYS keys in each list cluster"

list direct1 "$list_direct" 0
for n in $LIST_SHARDS; do list "coord$n" "${list_coord[$n]}" 0; done

results=$tmp/results
: >"$results"
for ((r = 1; r <= ROUNDS; r++)); do
    order="coord direct"
    (( r % 2 == 0 )) && order="direct coord"
    for pl in $PIPELINES; do
        for op in store retrieve; do
            for t in $order; do rw "$t" "$op" "$pl"; done
        done
    done
    list direct1 "$list_direct" "$LIST_PAGES"
    for n in $LIST_SHARDS; do list "coord$n" "${list_coord[$n]}" "$LIST_PAGES"; done
    echo "round $r of $ROUNDS done (load average $(cut -d' ' -f1-3 /proc/loadavg))"
done

median_run() { # id pipeline -> "ops p50 p99" of the run with the median ops/s
    awk -v b="$1" -v p="$2" '$1 == b && $2 == p { print $3, $4, $5 }' "$results" |
        sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}
median_col() { # id column -> median of that column over the rounds
    awk -v b="$1" -v c="$2" '$1 == b { print $c }' "$results" |
        sort -g | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

printf '\n%-30s %4s %12s %10s %10s   (run with the median ops/s of %s)\n' "benchmark" "pipe" \
    "ops/s" "p50 us" "p99 us" "$ROUNDS"
summary=""
for pl in $PIPELINES; do
    for op in store retrieve; do
        for t in coord direct; do
            # shellcheck disable=SC2046 # three words on purpose
            set -- $(median_run "${t}_$op" "$pl")
            label="$op via coordinator"
            [[ $t == direct ]] && label="$op direct to owner shard"
            printf '%-30s %4s %12s %10s %10s\n' "$label" "$pl" "$1" "$2" "$3"
        done
        c=$(median_run "coord_$op" "$pl" | cut -d' ' -f1)
        d=$(median_run "direct_$op" "$pl" | cut -d' ' -f1)
        summary+="
pipeline $pl: $op coordinator/direct = $(ratio "$c" "$d") (bar >= 0.6)"
    done
done

printf '\n%-30s %10s %10s   (medians of %s rounds of %s pages of %s keys)\n' "list page" \
    "p50 us" "p99 us" "$ROUNDS" "$LIST_PAGES" "$LIST_PAGE"
printf '%-30s %10s %10s\n' "1 shard, direct" "$(median_col list_direct1 4)" "$(median_col list_direct1 5)"
for n in $LIST_SHARDS; do
    printf '%-30s %10s %10s\n' "$n shard(s) via coordinator" "$(median_col "list_coord$n" 4)" \
        "$(median_col "list_coord$n" 5)"
done
base50=$(median_col list_direct1 4)
base99=$(median_col list_direct1 5)
for n in $LIST_SHARDS; do
    (( n == 1 )) && continue
    bar=""
    (( n == 8 )) && bar=" (bar <= 3)"
    summary+="
list $n shards (coordinator) / 1 shard (direct): p50 $(ratio "$(median_col "list_coord$n" 4)" "$base50"), p99 $(ratio "$(median_col "list_coord$n" 5)" "$base99")$bar"
done
summary+="
list 1 shard via coordinator / direct: p50 $(ratio "$(median_col list_coord1 4)" "$base50"), p99 $(ratio "$(median_col list_coord1 5)" "$base99")"
echo
echo "ratios:$summary"
echo
echo "CPU per request (process CPU over the run / requests answered, median of $ROUNDS):"
for pl in $PIPELINES; do
    for op in store retrieve; do
        c=$(awk -v b="coord_$op" -v p="$pl" '$1 == b && $2 == p { print 1e6 * $8 / $7 }' "$results" |
            sort -g | awk '{ l[NR] = $0 } END { printf "%.1f", l[int((NR + 1) / 2)] }')
        sc=$(awk -v b="coord_$op" -v p="$pl" '$1 == b && $2 == p { print 1e6 * $9 / $7 }' "$results" |
            sort -g | awk '{ l[NR] = $0 } END { printf "%.1f", l[int((NR + 1) / 2)] }')
        sd=$(awk -v b="direct_$op" -v p="$pl" '$1 == b && $2 == p { print 1e6 * $9 / $7 }' "$results" |
            sort -g | awk '{ l[NR] = $0 } END { printf "%.1f", l[int((NR + 1) / 2)] }')
        lc=$(awk -v b="coord_$op" -v p="$pl" '$1 == b && $2 == p { print 1e6 * $10 / $7 }' "$results" |
            sort -g | awk '{ l[NR] = $0 } END { printf "%.1f", l[int((NR + 1) / 2)] }')
        ld=$(awk -v b="direct_$op" -v p="$pl" '$1 == b && $2 == p { print 1e6 * $10 / $7 }' "$results" |
            sort -g | awk '{ l[NR] = $0 } END { printf "%.1f", l[int((NR + 1) / 2)] }')
        echo "pipeline $pl $op: coordinator $c us, shards $sc us, client $lc us" \
            "(direct: shards $sd us, client $ld us)"
    done
done
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
