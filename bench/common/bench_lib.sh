# shellcheck shell=sh
# bench/common/bench_lib.sh -- sourced (POSIX sh) by the comparison scripts
# in bench/: a temporary directory that is removed at exit together with
# every process whose pid was added to $pids, and a poll for port files.
#
#   . "$(dirname "$0")/../common/bench_lib.sh"
#   bench_tmp objmeta-vs-redis      # sets $tmp and $pids, installs the trap
#   pids="$pids $!"                 # after starting a server in the background
#   wait_for "$tmp/x.ports" 100     # true once the file is non-empty (10 s)

bench_cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    # servers started inside $(...) are not our children: poll until gone
    n=0
    for p in $pids; do
        while kill -0 "$p" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    done
    rm -rf "$tmp"
}

bench_tmp() { # name prefix
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    pids=""
    trap bench_cleanup EXIT INT TERM
}

wait_for() { # file, deadline in tenths of a second
    n=0
    while [ ! -s "$1" ] && [ $n -lt "$2" ]; do sleep 0.1; n=$((n + 1)); done
    [ -s "$1" ]
}
