#!/usr/bin/env bash
# bench/controlplane/compare_etcd.sh -- what the etcd control plane costs, in
# one run (issue 17, docs/PERFORMANCE.md "Control plane"):
#
# 1. Data path. 3 objmeta-shard processes, one local 3-member etcd
#    (scripts/etcd-local.sh --port 0, data under the run's temporary directory), one
#    objmeta-coord in file mode and 3 objmeta-coord in etcd mode, all over
#    the SAME shards (same ring, epoch 1), all running throughout.
#    objmeta_bench Store and Retrieve (VALUE_SIZE-byte values, CLIENTS
#    connections, each pipeline depth of PIPELINES) through:
#    - file: the file-mode coordinator;
#    - lead, fol1, fol2 (the bar: "through any coordinator"): the whole load
#      through ONE etcd-mode coordinator -- the leader, then each follower --
#      while the other two run beside it. Which one leads is read from their
#      /metrics (objmeta_coord_leader 1) before and after every round, not
#      assumed; a round in which it changed is reported;
#    - etcd1, etcd2, etcd3 (capacity spread, no bar): the CLIENTS connections
#      spread round-robin over the first 1, 2 and 3 etcd-mode coordinators
#      (objmeta_bench --addr a,b,c). On one 2-core host that also runs the
#      shards, etcd and the client this measures more processes sharing the
#      same cores (fewer requests per loop turn and system call), not etcd;
#      on hosts of their own more coordinators add capacity.
#    Every row has the same requests in flight. ROUNDS interleaved rounds (the
#    order of the seven rotates each round); the median ops/s of each row is
#    reported, its ratio to file mode, and the lowest and highest ratio to
#    file mode within one round (how far the load moved it). Bar: the
#    median ratios of lead, fol1 and fol2 >= 0.9x file mode. The CPU the
#    row's coordinators and the shards used per request (from /proc/PID/stat
#    around each run) is reported too: on a small machine shared with other
#    work it tells a cost of the etcd mode from scheduling.
#
# 2. Leader takeover. TAKEOVERS rounds: read which etcd coordinator leads
#    (its /metrics objmeta_coord_leader 1), kill -9 it, and time until one of
#    the other two reports objmeta_coord_leader 1 (polled; the poll costs a
#    curl per coordinator, a few ms); then restart the killed one on its
#    port. p50 and max are reported. Bar: every round <= 2 x lease TTL.
#
# All processes run on loopback: shards and coordinators on free ports (port
# files), etcd on a free block of 6 ports (found by probing); everything is
# stopped and removed on exit, error or Ctrl-C (bench/common/servers.sh).
#
# usage: bench/controlplane/compare_etcd.sh [BUILD_DIR]      (default: build)
# environment: CLIENTS=48 PIPELINES="1 16" VALUE_SIZE=256 KEYS=100000 DURATION=3
#              ROUNDS=5 TTL=5 TAKEOVERS=10
set -euo pipefail
cd "$(dirname "$0")/../.."

build=${1:-build}
CLIENTS=${CLIENTS:-48}
PIPELINES=${PIPELINES:-"1 16"}
VALUE_SIZE=${VALUE_SIZE:-256}
KEYS=${KEYS:-100000}
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-5}
TTL=${TTL:-5}
TAKEOVERS=${TAKEOVERS:-10}
shard_bin=$build/shard/objmeta-shard
coord_bin=$build/coordinator/objmeta-coord
bench=$build/bench/server/objmeta_bench

for b in "$shard_bin" "$coord_bin" "$bench"; do
    [[ -x $b ]] || { echo "compare_etcd: $b not built (ninja -C $build)" >&2; exit 2; }
done
command -v etcd >/dev/null || { echo "compare_etcd: etcd not installed (scripts/install-deps.sh)" >&2; exit 2; }

# shellcheck source=bench/common/servers.sh
. bench/common/servers.sh
bench_servers_init etcd-bench

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# start NAME LISTEN PROGRAM ARGS...: a server with /metrics on a free port (bench_start);
# sets PORT, HTTP and PID.
start() {
    local name=$1 listen=$2 prog=$3
    shift 3
    bench_start "$name" "$listen" 127.0.0.1:0 "$prog" "$@"
    HTTP=$HTTP_PORT
}

# result FILE -> "ops_per_sec errors ops" of objmeta_bench's op=all RESULT line
result() {
    awk '$1 == "RESULT" && $2 == "op=all" {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s %s %s\n", v["ops_per_sec"], v["errors"], v["ops"] }' "$1"
}

echo "compare_etcd: $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')), load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg) at start; $(etcd --version | head -1); data in $tmp"
echo "clients=$CLIENTS pipelines=\"$PIPELINES\" value_size=$VALUE_SIZE keys=$KEYS" \
    "duration=${DURATION}s rounds=$ROUNDS lease_ttl=${TTL}s takeovers=$TAKEOVERS"

# --- the cluster ---------------------------------------------------------------------------------
spec=""
shard_pids=()
for i in 1 2 3; do
    start "s$i" 127.0.0.1:0 "$shard_bin" --id="s$i"
    spec+="${spec:+,}s$i=127.0.0.1:$PORT"
    shard_pids+=("$PID")
done
scripts/etcd-local.sh --data "$tmp" --port 0 >"$tmp/etcd.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 40))
until grep -q "members ready" "$tmp/etcd.log" 2>/dev/null; do
    (( SECONDS < deadline )) && kill -0 "${pids[-1]}" 2>/dev/null ||
        { echo "compare_etcd: etcd did not start:" >&2; cat "$tmp/etcd.log" >&2; exit 1; }
    sleep 0.1
done
eps=$(sed -n 's/.* members ready; endpoints //p' "$tmp/etcd.log")

start file 127.0.0.1:0 "$coord_bin" --shards="$spec"
declare -A addr_of http_of pid_of
addr_of[file]=127.0.0.1:$PORT
pid_of[file]=$PID
etcd_args=("--shards=$spec" "--etcd=$eps" "--etcd-prefix=/objmeta/bench" "--lease-ttl=${TTL}s")
for i in 1 2 3; do
    start "e$i" 127.0.0.1:0 "$coord_bin" "${etcd_args[@]}"
    addr_of[e$i]=127.0.0.1:$PORT
    http_of[e$i]=127.0.0.1:$HTTP
    pid_of[e$i]=$PID
done
declare -A via # row -> the coordinator(s) it sends through (lead/fol1/fol2: set each round)
via[file]=file via[etcd1]=e1 via[etcd2]="e1 e2" via[etcd3]="e1 e2 e3"
target_pids() { # row -> the pids of its coordinators
    local n
    for n in ${via[$1]}; do echo "${pid_of[$n]}"; done
}
target_addr() { # row -> the --addr list
    local n out=""
    for n in ${via[$1]}; do out+="${out:+,}${addr_of[$n]}"; done
    echo "$out"
}
leading() { # NAME -> exit 0 when its /metrics says it leads
    curl -fsS -m 1 "http://${http_of[$1]}/metrics" 2>/dev/null | grep -q '^objmeta_coord_leader 1'
}
leader_now() { # the name of the coordinator that says it leads (waits up to 30 s)
    local deadline=$((SECONDS + 30)) n
    for (( ; SECONDS < deadline; )); do
        for n in e1 e2 e3; do leading "$n" && { echo "$n"; return; }; done
        sleep 0.05
    done
    echo "compare_etcd: no coordinator leads" >&2
    exit 1
}
"$bench" --addr "${addr_of[file]}" --keys "$KEYS" --value-size "$VALUE_SIZE" --preload \
    --ops retrieve=1 --requests 1 --connections "$CLIENTS" --pipeline 16 >"$tmp/run.out"
grep -q '(0 errors)' "$tmp/run.out" || { cat "$tmp/run.out" >&2; exit 1; }
echo "cluster: shards $spec; etcd $eps; file-mode coordinator ${addr_of[file]};" \
    "etcd-mode coordinators ${addr_of[e1]} ${addr_of[e2]} ${addr_of[e3]}; $KEYS keys loaded"

# --- 1. throughput -------------------------------------------------------------------------------
results=$tmp/results
: >"$results"
targets=(file lead fol1 fol2 etcd1 etcd2 etcd3)
nt=${#targets[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    # the roles, read from /metrics: lead = the one that says it leads, fol1/fol2 = the others
    ldr=$(leader_now)
    via[lead]=$ldr
    fols=()
    for n in e1 e2 e3; do [[ $n != "$ldr" ]] && fols+=("$n"); done
    via[fol1]=${fols[0]} via[fol2]=${fols[1]}
    order=()
    for ((k = 0; k < nt; k++)); do order+=("${targets[$(((k + r - 1) % nt))]}"); done
    for pl in $PIPELINES; do
        for op in store retrieve; do
            for t in "${order[@]}"; do
                # shellcheck disable=SC2046 # one pid a word
                c0=$(cpu_s $(target_pids "$t"))
                s0=$(cpu_s "${shard_pids[@]}")
                "$bench" --addr "$(target_addr "$t")" --ops "$op=1" --connections "$CLIENTS" \
                    --pipeline "$pl" --value-size "$VALUE_SIZE" --keys "$KEYS" \
                    --duration "${DURATION}s" >"$tmp/run.out"
                # shellcheck disable=SC2046 # two words on purpose
                set -- $(result "$tmp/run.out")
                if [[ ${2:-x} != 0 ]]; then
                    echo "compare_etcd: $t $op pipeline $pl had errors:" >&2
                    cat "$tmp/run.out" >&2
                    exit 1
                fi
                # shellcheck disable=SC2046 # one pid a word
                echo "$t $op $pl $1" \
                    "$(awk -v a="$(cpu_s $(target_pids "$t"))" -v b="$c0" -v n="$3" \
                        'BEGIN { printf "%.1f", 1e6 * (a - b) / n }')" \
                    "$(awk -v a="$(cpu_s "${shard_pids[@]}")" -v b="$s0" -v n="$3" \
                        'BEGIN { printf "%.1f", 1e6 * (a - b) / n }')" "$r" >>"$results"
            done
        done
    done
    after=$(leader_now)
    [[ $after == "$ldr" ]] || echo "compare_etcd: round $r: the leader moved from $ldr to $after" \
        "during the round; its lead/fol rows mix roles"
    echo "round $r of $ROUNDS done (leader $ldr, followers ${via[fol1]} ${via[fol2]};" \
        "order ${order[*]}; load average $(cut -d' ' -f1-3 /proc/loadavg))"
done

median() { sort -g | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
col() { # ROW OP PIPE FIELD -> the median of that field over the rounds
    awk -v t="$1" -v o="$2" -v p="$3" -v f="$4" '$1 == t && $2 == o && $3 == p { print $f }' \
        "$results" | median
}
span() { # ROW OP PIPE -> "lo-hi" of the row's ratio to file mode within each round
    awk -v t="$1" -v o="$2" -v p="$3" '$2 == o && $3 == p && $1 == "file" { f[$7] = $4 }
        $2 == o && $3 == p && $1 == t { v[$7] = $4 }
        END { lo = 1e9; hi = 0
              for (r in v) { x = v[r] / f[r]; if (x < lo) lo = x; if (x > hi) hi = x }
              printf "%.2f-%.2f", lo, hi }' "$results"
}
echo
echo "Rows: file = the file-mode coordinator; lead, fol1, fol2 = all $CLIENTS connections through"
echo "one etcd-mode coordinator alone (the leader, each follower; the bar); etcd1..3 = the"
echo "connections spread over 1..3 etcd-mode coordinators (capacity spread over processes on"
echo "this one host; no bar). Median ops/s of $ROUNDS rounds:"
printf '%-10s %4s' op pipe
for t in "${targets[@]}"; do printf ' %9s' "$t"; done
echo
bar_ok=1
ratios=""
spread=""
for pl in $PIPELINES; do
    for op in store retrieve; do
        line=$(printf '%-10s %4s' "$op" "$pl")
        declare -A med
        for t in "${targets[@]}"; do
            med[$t]=$(col "$t" "$op" "$pl" 4)
            line+=$(printf ' %9.0f' "${med[$t]}")
        done
        echo "$line"
        ratios+=$(printf '\n%-10s %4s' "$op" "$pl")
        spread+=$(printf '\n%-10s %4s' "$op" "$pl")
        for t in lead fol1 fol2 etcd1 etcd2 etcd3; do
            x=$(awk -v a="${med[$t]}" -v b="${med[file]}" 'BEGIN { printf "%.2f", a / b }')
            case $t in
                etcd*) spread+=" $t/file=$x ($(span "$t" "$op" "$pl"))" ;;
                *)
                    ratios+=" $t/file=$x ($(span "$t" "$op" "$pl"))"
                    awk -v x="$x" 'BEGIN { exit !(x < 0.9) }' && bar_ok=0
                    ;;
            esac
        done
    done
done
echo
echo "through each etcd-mode coordinator alone, ratio of the medians to file mode (in brackets:"
echo "the lowest and highest ratio within one round; bar: every median ratio >= 0.90):$ratios"
echo "throughput bar: $( ((bar_ok)) && echo met || echo MISSED)"
echo "spread over 1..3 etcd-mode coordinators on this host, ratio to file mode (no bar):$spread"
echo
echo "CPU per request, median of $ROUNDS (us: the row's coordinators, then the 3 shards):"
for pl in $PIPELINES; do
    for op in store retrieve; do
        line=$(printf '%-10s %4s' "$op" "$pl")
        for t in "${targets[@]}"; do
            line+=" $t $(col "$t" "$op" "$pl" 5)/$(col "$t" "$op" "$pl" 6)"
        done
        echo "$line"
    done
done

# --- 2. takeover ---------------------------------------------------------------------------------
times=()
for ((r = 1; r <= TAKEOVERS; r++)); do
    old=$(leader_now)
    kill -KILL "${pid_of[$old]}"
    t0=$(now_ms)
    wait "${pid_of[$old]}" 2>/dev/null || true
    new=""
    while [[ -z $new ]]; do
        for n in e1 e2 e3; do
            [[ $n != "$old" ]] && leading "$n" && new=$n
        done
        (( $(now_ms) - t0 < 60000 )) || { echo "compare_etcd: nobody took over from $old" >&2; exit 1; }
    done
    dt=$(( $(now_ms) - t0 ))
    times+=("$dt")
    echo "takeover $r: $old killed, $new leads after $dt ms"
    # the killed one comes back on its port and follows
    start "$old" "${addr_of[$old]}" "$coord_bin" "${etcd_args[@]}"
    http_of[$old]=127.0.0.1:$HTTP
    pid_of[$old]=$PID
done
p50=$(printf '%s\n' "${times[@]}" | median)
max=$(printf '%s\n' "${times[@]}" | sort -g | tail -1)
echo
echo "takeover after kill -9 of the leader, $TAKEOVERS rounds, lease TTL ${TTL}s:" \
    "p50 $p50 ms, max $max ms (bar: every round <= $((2 * TTL * 1000)) ms:" \
    "$( ((max <= 2 * TTL * 1000)) && echo met || echo MISSED))"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
