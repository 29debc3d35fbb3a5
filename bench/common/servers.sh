# bench/common/servers.sh -- sourced by the server benchmarks that start
# their own objmeta processes (bench/server/compare_coord.sh,
# bench/controlplane/compare_etcd.sh): one temporary directory for the
# servers' data, port files and logs, and their teardown on exit, error or
# Ctrl-C (SIGTERM, then SIGKILL after 10 s; the directory is removed).

# bench_servers_init NAME: sets tmp (a fresh directory) and pids (the
# processes to stop), installs the traps; NAME prefixes error messages.
bench_servers_init() {
    bench_name=$1
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/objmeta-$1.XXXXXX")
    pids=()
    trap bench_servers_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_servers_cleanup() {
    trap - EXIT INT TERM
    if (( ${#pids[@]} > 0 )); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        local deadline=$((SECONDS + 10)) p
        for p in "${pids[@]}"; do
            while kill -0 "$p" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
            kill -KILL "$p" 2>/dev/null || true
        done
        wait 2>/dev/null || true
    fi
    rm -rf "$tmp"
}

# bench_start NAME LISTEN HTTP PROGRAM ARGS...: start a server (data in
# $tmp/NAME, --listen=LISTEN, --http-listen=HTTP: an address or off) with a
# port file, wait (15 s at most) until it serves; sets PORT (its rpc port),
# HTTP_PORT (its /metrics port, empty with off) and PID.
bench_start() {
    local name=$1 listen=$2 http=$3 prog=$4 deadline=$((SECONDS + 15)) want='^rpc '
    shift 4
    [[ $http == off ]] || want='^http '
    rm -f "$tmp/$name.ports"
    "$prog" --listen="$listen" --http-listen="$http" --port-file="$tmp/$name.ports" \
        --data-dir="$tmp/$name" --log-level=warn "$@" </dev/null >/dev/null 2>>"$tmp/$name.log" &
    PID=$!
    pids+=("$PID")
    until grep -q "$want" "$tmp/$name.ports" 2>/dev/null; do
        if ! kill -0 "$PID" 2>/dev/null || (( SECONDS >= deadline )); then
            echo "$bench_name: $name did not start; its log:" >&2
            tail -20 "$tmp/$name.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    PORT=$(awk '$1 == "rpc" { print $2 }' "$tmp/$name.ports")
    HTTP_PORT=$(awk '$1 == "http" { print $2 }' "$tmp/$name.ports")
}

cpu_s() { # PID... -> their user+system CPU seconds so far, summed
    local p
    for p in "$@"; do cat "/proc/$p/stat"; done |
        awk -v hz="$(getconf CLK_TCK)" '{ t += $14 + $15 } END { printf "%.2f", t / hz }'
}
