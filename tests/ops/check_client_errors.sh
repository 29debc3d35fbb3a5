#!/usr/bin/env bash
# The objmeta tool's errors say what happened and what to do (issue 15,
# points 4 and 6): nothing listening, an HTTP port (the shard's own metrics
# port and another HTTP server), a URL as --addr, a silent server (bounded
# wait), unknown options and commands with a suggestion, --version, put with
# no FILE at a terminal, get refusing to overwrite, rm of a missing key.
# One real shard on free ports. Usage: SRCROOT BUILDROOT
set -uo pipefail
src=$1
build=$2
cli=$build/client/objmeta
# shellcheck source=tests/ops/lib.sh
. "$(dirname "$0")/lib.sh"
fail() { ops_logs; echo "check_client_errors: $1"; exit 1; }
ops_init cli
failures=0
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }
# expect RC TEXT CMD...: run CMD (10 s limit), want exit RC and TEXT in its output
expect() {
  local want_rc=$1 want=$2 out rc
  shift 2
  out=$(timeout 10 "$@" 2>&1)
  rc=$?
  [[ $rc -eq $want_rc ]] || bad "exit $rc, want $want_rc: $*"$'\n'"$out"
  grep -qF -- "$want" <<<"$out" || bad "output lacks '$want': $*"$'\n'"$out"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A shard with its metrics listener, both on free ports.
"$build/shard/objmeta-shard" --id=s1 --listen=127.0.0.1:0 --http-listen=127.0.0.1:0 \
  --data-dir="$tmp/s1" --port-file="$tmp/s1.ports" --sync-mode=none >"$tmp/s1.log" 2>&1 &
ops_pids+=($!)
until_ok 20 test -s "$tmp/s1.ports" || { cat "$tmp/s1.log"; echo "shard did not start"; exit 1; }
rpc=127.0.0.1:$(awk '$1 == "rpc" { print $2 }' "$tmp/s1.ports")
http=127.0.0.1:$(awk '$1 == "http" { print $2 }' "$tmp/s1.ports")
# Another HTTP service and a server that accepts but never answers.
python3 -m http.server --bind 127.0.0.1 0 >"$tmp/http.log" 2>&1 &
ops_pids+=($!)
python3 -c 'import socket,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(120)' >"$tmp/silent.port" &
ops_pids+=($!)
until_ok 20 grep -q "Serving HTTP" "$tmp/http.log" || bad "python http.server did not start"
until_ok 20 test -s "$tmp/silent.port" || bad "the silent server did not start"
other_http=127.0.0.1:$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$tmp/http.log" | head -1)
silent=127.0.0.1:$(cat "$tmp/silent.port")

# Nothing listens: connection refused, and what to do.
expect 4 "connection refused: nothing listens there" "$cli" --addr "127.0.0.1:$(free_port)" ping
expect 4 "scripts/run.sh starts a local cluster" "$cli" --addr "127.0.0.1:$(free_port)" ls bucket
expect 4 "nothing listens there" "$cli" --addr "127.0.0.1:$(free_port)" admin rebalance-status
# An HTTP port: recognised at once, for data commands and admin.
start=$SECONDS
expect 2 "speaks HTTP, not the objmeta protocol" "$cli" --addr "$http" ping
expect 2 "speaks HTTP" "$cli" --addr "$http" head bucket/key
expect 2 "speaks HTTP" "$cli" --addr "$http" admin rebalance-status
expect 2 "not the objmeta protocol" "$cli" --addr "$other_http" ls bucket
(( SECONDS - start <= 3 )) || bad "the HTTP cases took $((SECONDS - start)) s (a hang?)"
# A URL or a malformed address: bad address, before any connection.
expect 2 "bad address 'http://$rpc'" "$cli" --addr "http://$rpc" ping
expect 2 "bad address" "$cli" --addr "localhost" ping
expect 2 "port must be a number" "$cli" --addr "127.0.0.1:99999" ping
expect 2 "bad address" "$cli" admin add-shard --id s9 --addr "http://127.0.0.1:7104"
# A silent server: a bounded wait and an explanation, not the 30 s timeout.
start=$SECONDS
expect 4 "does not speak the objmeta protocol" "$cli" --addr "$silent" ping
(( SECONDS - start <= 6 )) || bad "the silent server took $((SECONDS - start)) s"

# One wording for unknown options and commands, with a suggestion.
expect 2 "unknown option '--metta'; did you mean '--meta'?" "$cli" --addr "$rpc" put b/k /etc/hostname --metta '{}'
expect 2 "unknown option '--delimeter'; did you mean '--delimiter'?" "$cli" --addr "$rpc" ls bkt --delimeter /
expect 2 "unknown option '--idd'; did you mean '--id'?" "$cli" admin add-shard --idd s4
expect 2 "unknown command 'lst'; did you mean 'ls'?" "$cli" lst
expect 2 "unknown admin command 'add-shrd'; did you mean 'add-shard'?" "$cli" admin add-shrd
expect 2 "option '--meta' needs a value" "$cli" put b/k /etc/hostname --meta
expect 0 "objmeta 0." "$cli" --version
expect 0 "rm BUCKET/KEY" "$cli" rm --help
# put with no FILE at a terminal: refused at once, no silent wait.
expect 2 "standard input is a terminal" script -qec "$cli --addr $rpc put bkt/k" /dev/null
# ... and from a pipe it reads standard input.
out=$(printf 'piped\n' | "$cli" --addr "$rpc" put bkt/piped) || bad "put from a pipe failed: $out"

# get never overwrites a file silently.
printf 'data\n' >"$tmp/in"
"$cli" --addr "$rpc" put bkt/obj "$tmp/in" >/dev/null || bad "put failed"
printf 'precious\n' >"$tmp/out"
expect 2 "exists; --force overwrites it" "$cli" --addr "$rpc" get bkt/obj "$tmp/out"
expect 2 "exists; --force overwrites it" "$cli" --addr "$rpc" get bkt/obj -o "$tmp/out"
[[ $(cat "$tmp/out") == precious ]] || bad "get overwrote a file without --force"
expect 0 "" "$cli" --addr "$rpc" get bkt/obj "$tmp/out" --force
[[ $(cat "$tmp/out") == data ]] || bad "get --force did not write the file"
expect 0 "" "$cli" --addr "$rpc" get bkt/obj -o "$tmp/new"
[[ $(cat "$tmp/new") == data ]] || bad "get -o did not write a new file"
# rm twice: the second says there was nothing to delete (exit 1); --force exits 0.
expect 0 "deleted bkt/obj" "$cli" --addr "$rpc" rm bkt/obj
expect 1 "does not exist: nothing deleted" "$cli" --addr "$rpc" rm bkt/obj
expect 0 "absent bkt/obj" "$cli" --addr "$rpc" rm bkt/obj --force

if (( failures > 0 )); then
  echo "--- shard log"; tail -20 "$tmp/s1.log"
  echo "check_client_errors: $failures failures"
  exit 1
fi
echo "check_client_errors: ok"
