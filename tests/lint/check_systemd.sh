#!/bin/sh
# systemd-analyze verify on deploy/systemd units, with ExecStart pointed at the
# binaries of this build (the installed paths do not exist on a build machine).
# Usage: check_systemd.sh SRCROOT SHARD_BIN [COORD_BIN]
root=$1
shard_bin=$2
coord_bin=${3:-}
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check_systemd: systemd-analyze not installed; skipping"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
units=""
for u in "$root"/deploy/systemd/*.service; do
    name=$(basename "$u")
    case "$name" in
        objmeta-shard@.service) bin=$shard_bin; name=objmeta-shard@1.service ;;
        objmeta-coord.service | objmeta-coord-etcd.service) bin=${coord_bin:-$shard_bin} ;;
        *) bin=/bin/true ;;
    esac
    sed "s#^ExecStart=/usr/local/bin/objmeta-[a-z]*#ExecStart=$bin#" "$u" >"$tmp/$name"
    units="$units $tmp/$name"
done
out=$(systemd-analyze verify $units 2>&1)
rc=$?
# Warnings about the host's own units are not ours; anything naming our units is.
ours=$(printf '%s\n' "$out" | grep -E 'objmeta-' || true)
if [ $rc -ne 0 ] || [ -n "$ours" ]; then
    printf '%s\n' "$out"
    echo "check_systemd: systemd-analyze verify reported problems"
    exit 1
fi
echo "check_systemd: ok ($(echo $units | wc -w) units)"
