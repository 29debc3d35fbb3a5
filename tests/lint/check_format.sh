#!/bin/sh
# Every tracked C file is formatted by .clang-format (clang-format --dry-run -Werror).
root=${1:-.}
cd "$root" || exit 2
files=$(git ls-files '*.c' '*.h' 2>/dev/null)
[ -z "$files" ] && { echo "check_format: no files"; exit 0; }
if ! clang-format --dry-run -Werror $files; then
    echo "check_format: run 'clang-format -i' on the files above (scripts/format.sh)"
    exit 1
fi
echo "check_format: ok ($(echo "$files" | wc -w) files)"
