#!/bin/sh
# Does a libFuzzer target see the code it fuzzes? Run it for a few seconds
# from a one-input seed corpus and require the coverage it reports at the
# end (DONE cov:) to exceed what the seed alone reached (INITED cov:). A
# target linked against an uninstrumented library stays flat (issue 13, D5).
# Usage: check_fuzz_coverage.sh TARGET [SECONDS]
target=$1
secs=${2:-10}
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/corpus"
printf '\001seed' > "$tmp/corpus/seed"
seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
echo "seed=$seed"
"$target" -seed="$seed" -max_total_time="$secs" -rss_limit_mb=2048 "$tmp/corpus" \
    > "$tmp/log" 2>&1
rc=$?
inited=$(sed -n 's/.*INITED cov: \([0-9]*\).*/\1/p' "$tmp/log" | head -1)
done_cov=$(sed -n 's/.*DONE *cov: \([0-9]*\).*/\1/p' "$tmp/log" | tail -1)
if [ "$rc" -ne 0 ] || [ -z "$inited" ] || [ -z "$done_cov" ]; then
    tail -30 "$tmp/log"
    echo "check_fuzz_coverage: $(basename "$target") failed (exit $rc)"
    exit 1
fi
echo "check_fuzz_coverage: $(basename "$target") cov $inited -> $done_cov in ${secs}s"
[ "$done_cov" -gt "$inited" ] || { echo "coverage did not grow past the seed"; exit 1; }
