#!/bin/sh
# Private headers may only be included from their own folder (STYLE.md §3).
# A module's public header is <module>/<module>.h (rpc/rpc.h, lsm/lsm.h, ...);
# util/ headers are all public. Tests may include the private headers of the
# module they test (tests/<module>/ may include <module>/*.h).
root=${1:-.}
cd "$root" || exit 2
bad=0
for f in $(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]'); do
    dir=$(dirname "$f")
    top=${dir%%/*}
    case "$f" in tests/*) top=$(echo "$f" | cut -d/ -f2) ;; esac
    grep -n '^#include "' "$f" | while IFS= read -r line; do
        inc=$(echo "$line" | sed 's/.*#include "\([^"]*\)".*/\1/')
        mod=${inc%%/*}
        [ "$mod" = "$inc" ] && continue          # same-folder include
        [ "$mod" = util ] && continue            # util/ is public throughout
        base=$(basename "$inc" .h)
        [ "$base" = "$mod" ] && continue         # the module's public header
        [ "$inc" = partitioner/ring.h ] && continue  # partitioner's public header (STYLE.md §3)
        [ "$inc" = shard/record.h ] && continue      # part of shard.h's API (shard_get fills a shard_record)
        [ "$mod" = "$top" ] && continue          # own folder (or its tests)
        echo "$f: includes private header $inc of module $mod"
        echo x >>"${TMPDIR:-/tmp}/om_lint_$$"
    done
done
if [ -f "${TMPDIR:-/tmp}/om_lint_$$" ]; then
    rm -f "${TMPDIR:-/tmp}/om_lint_$$"
    exit 1
fi
echo "check_includes: ok"
exit 0
