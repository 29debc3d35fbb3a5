#!/bin/sh
# Log through om_log(); only util/log.c writes to stderr (STYLE.md §7).
# Tests, benchmarks and command-line tools (client/) print to the terminal on purpose.
root=${1:-.}
cd "$root" || exit 2
hits=$(git ls-files '*.c' '*.h' 2>/dev/null | grep -v -e '^util/log.c$' -e '^tests/' -e '^bench/' \
    -e '^client/' | xargs grep -n 'fprintf(stderr' 2>/dev/null)
if [ -n "$hits" ]; then
    echo "$hits"
    echo "check_no_fprintf: use om_log() instead of fprintf(stderr, ...)"
    exit 1
fi
echo "check_no_fprintf: ok"
