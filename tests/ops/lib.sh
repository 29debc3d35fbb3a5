# Shared by tests/ops/check_*.sh (sourced; the caller sets src and build and
# defines fail MESSAGE). Every cluster runs on free ports (--port 0) with a
# fresh data directory, and whatever a test starts is stopped on exit.

# ops_init NAME: a fresh $tmp (kept with TU_KEEP=1), the cluster's data dir
# $d, and the exit trap that stops $cpid and the pids in ops_pids.
ops_init() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/objmeta-ops-$1-XXXXXX")
  d=$tmp/c
  cpid=""
  ops_pids=()
  trap ops_cleanup EXIT
}
ops_cleanup() {
  if [[ ${#ops_pids[@]} -gt 0 ]]; then
    kill -TERM "${ops_pids[@]}" 2>/dev/null
    wait "${ops_pids[@]}" 2>/dev/null
  fi
  [[ -n $cpid ]] && kill -TERM "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
  [[ -n ${TU_KEEP:-} ]] || rm -rf "$tmp"
}
# until_ok DEADLINE_S CMD...: poll CMD every 50 ms until it succeeds
until_ok() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do ((SECONDS < end)) || return 1; sleep 0.05; done
}
# ops_cluster ARGS...: scripts/cluster.sh ARGS in the background (output in
# $tmp/cluster.out), up within 60 s; sets cpid, coord and coord_http. The
# small file-mode cluster (--simple) unless ARGS name another mode.
ops_cluster() {
  local mode=--simple
  [[ " $* " != *" --etcd "* && " $* " != *" --replicated "* ]] || mode=""
  "$src/scripts/cluster.sh" --build "$build" --port 0 --data "$d" ${mode:+"$mode"} "$@" >"$tmp/cluster.out" 2>&1 &
  cpid=$!
  until_ok 60 grep -q '^coord=' "$d/cluster.info" 2>/dev/null || fail "the cluster did not come up"
  coord=$(sed -n 's/^coord=//p' "$d/cluster.info")
  coord_http=$(sed -n 's/^http=//p' "$d/cluster.info")
}
# ops_logs: the tail of every log, for a failure report
ops_logs() {
  local f
  for f in "$tmp"/*.out "$d"/*.log "$tmp"/*.log; do
    [[ -e $f ]] && { echo "--- $f"; tail -20 "$f"; }
  done
  return 0
}
