#!/usr/bin/env bash
# Install like a service (issue 15, point 8):
#  - `meson install --destdir` puts the three binaries, the systemd units,
#    the example configs, the monitoring files and the README in place;
#  - the installed units name installed files (ExecStart's binary, the
#    --config file's example beside it) and pass `systemd-analyze verify`
#    (the unit is verified with the destdir in front of its paths, since the
#    host has nothing installed under the prefix);
#  - every installed binary answers --help and --version (exit 0); the
#    coordinator loads both example configs (file and etcd mode);
#  - the etcd-mode Kubernetes manifest runs 3 coordinator replicas with a
#    readiness probe on /readyz and --etcd;
#  - the Kubernetes manifests and the Prometheus files pass yamllint with its
#    default rules; .dockerignore keeps build output and cluster data out of
#    the container build.
# Usage: SRCROOT BUILDROOT
set -uo pipefail
src=$1
build=$2
# shellcheck source=tests/ops/lib.sh
. "$(dirname "$0")/lib.sh"
fail() { echo "--- last output"; printf '%s\n' "${out:-}"; echo "check_install: $1"; exit 1; }
ops_init install
root=$tmp/root

out=$(meson install -C "$build" --destdir "$root" --no-rebuild --quiet 2>&1) || fail "meson install"
prefix=$(meson introspect "$build" --buildoptions |
  python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
units=$(find "$root" -path '*/systemd/system/*.service' | sort)
[[ $(wc -l <<<"$units") -eq 3 ]] || fail "want 3 installed units, found: $units"
for b in objmeta objmeta-shard objmeta-coord; do
  bin=$root$prefix/bin/$b
  [[ -x $bin ]] || fail "$b not installed in $prefix/bin"
  out=$("$bin" --help 2>&1) || fail "$b --help exits $?"
  grep -qi "usage" <<<"$out" || fail "$b --help prints no usage"
  out=$("$bin" --version 2>&1) || fail "$b --version exits $?"
done
for f in etc/objmeta/coord.conf.example etc/objmeta/coord-etcd.conf.example etc/objmeta/shard.conf.example \
         share/objmeta/prometheus/objmeta-alerts.yml share/objmeta/grafana/objmeta-dashboard.json \
         share/doc/objmeta/README.md; do
  [[ -f $root$prefix/$f ]] || fail "$prefix/$f not installed"
done

# the example configs load as they are (--print-config checks every setting, connects nowhere)
for f in coord.conf.example coord-etcd.conf.example; do
  out=$("$root$prefix/bin/objmeta-coord" --config="$root$prefix/etc/objmeta/$f" --print-config 2>&1) ||
    fail "objmeta-coord does not load $f"
done
# etcd mode on Kubernetes: 3 coordinator replicas, ready by their health endpoint
k8s=$src/deploy/k8s/coordinator-etcd.yaml
out=$(cat "$k8s")
grep -q '^  replicas: 3$' "$k8s" || fail "$k8s: the coordinator Deployment does not run 3 replicas"
grep -A1 'readinessProbe:' "$k8s" | grep -q 'path: /readyz' || fail "$k8s: no readiness probe on /readyz"
grep -q -- '--etcd=' "$k8s" || fail "$k8s: the coordinators are not given --etcd"

if command -v systemd-analyze >/dev/null; then
  mkdir -p "$tmp/units"
  for u in $units; do
    name=$(basename "$u")
    exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$u")
    conf=$(sed -n 's/^ExecStart=.*--config=\([^ ]*\).*/\1/p' "$u")
    [[ $exe == "$prefix"/* ]] || fail "$name: ExecStart $exe is not under the prefix $prefix"
    [[ -x $root$exe ]] || fail "$name: ExecStart names $exe, which is not installed"
    conf=${conf//%i/1}
    [[ -f $root$conf.example || -f $root${conf%-1.conf}.conf.example ]] ||
      fail "$name: --config $conf has no installed example beside it"
    [[ $name == *@.service ]] && name=${name/@/@1}
    sed "s#^ExecStart=#ExecStart=$root#" "$u" >"$tmp/units/$name"
  done
  out=$(systemd-analyze verify "$tmp"/units/*.service 2>&1)
  rc=$?
  # warnings about the host's own units are not ours; anything naming ours is
  if [[ $rc -ne 0 ]] || grep -q 'objmeta-' <<<"$out"; then fail "systemd-analyze verify"; fi
else
  echo "check_install: systemd-analyze not installed; units not verified"
fi

if command -v yamllint >/dev/null; then
  out=$(yamllint "$src/deploy/k8s" "$src/deploy/prometheus" 2>&1) || fail "yamllint (default rules)"
else
  fail "yamllint not installed (Debian package yamllint; scripts/install-deps.sh)"
fi
for pat in 'build*' 'objmeta-cluster-data' '.git'; do
  grep -qxF -- "$pat" "$src/.dockerignore" || fail ".dockerignore lacks $pat"
done
echo "check_install: ok ($prefix)"
