#!/bin/sh
# Every file a doc names exists. Docs are every *.md of the tree (the module
# docs shard/README.md, lsm/README.md, lsm/FORMAT.md, rpc/FRAMING.md,
# coordinator/MIGRATION.md, the top README.md, docs/*.md, tests/README.md
# and any added later), read as they are when the test runs, so a renamed
# or deleted file that a doc still names fails here.
#
# A name is a word ending in .c, .h, .sh, .py, .proto or .md ("shard.h/.c"
# names both). It resolves
#   - with a slash: from the repository root, or from the doc's folder;
#   - bare (handlers.c): in the doc's folder, at the root, or as the
#     basename of exactly one file in the tree (so "FRAMING.md" in
#     shard/README.md is rpc/FRAMING.md, but a bare "main.c" outside a
#     folder that has one is ambiguous and fails).
# Not checked: absolute paths (scratch files such as /tmp/x.c), paths that
# leave the repository (../shared/...), names with a glob (*_format.h) or
# placeholder (<module>.h), and protobuf-c output (*.pb-c.[ch], generated in
# the build directory).
root=${1:-.}
cd "$root" || exit 2

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    all=$(git ls-files --cached --others --exclude-standard)
else
    all=$(find . -type f ! -path './.git/*' | sed 's|^\./||')
fi
tree=$(for f in $all; do [ -e "$f" ] && echo "$f"; done)
docs=$(echo "$tree" | grep '\.md$')

# Known stale names in docs this change may not edit: "doc name" lines in
# doc_files.allow. An allowance that is no longer needed fails too, so that
# none outlives its reason.
allow_file=$(dirname "$0")/doc_files.allow
allow=$(grep -v '^#' "$allow_file" 2>/dev/null | grep -v '^ *$')
used='|'
bad=0
stale() { # doc line name why
    if echo "$allow" | grep -qxF "$1 $3"; then
        echo "$1:$2: names $3, which $4 (allowed by $allow_file)"
        used="$used$1 $3|"
        return
    fi
    echo "$1:$2: names $3, which $4"
    bad=1
}

for doc in $docs; do
    dir=$(dirname "$doc")
    # line:name for every name in the doc; X.h/.c becomes X.h and X.c
    names=$(grep -noE '[A-Za-z0-9_./*<>-]*[A-Za-z0-9_*>]\.(c|h|sh|py|proto|md)(/\.[ch])?\b' "$doc" |
        sed -E 's#^([0-9]+):(.*)\.([ch])/\.([ch])$#\1:\2.\3\n\1:\2.\4#')
    for ln in $names; do
        line=${ln%%:*}
        name=${ln#*:}
        name=${name#./}
        case "$name" in
        /* | *'*'* | *'<'* | *'>'* | *.pb-c.*) continue ;;
        esac
        case "$name" in
        */*)
            [ -e "$name" ] && continue
            rel=$(realpath -m --relative-to=. "$dir/$name")
            case "$rel" in
            ../*) continue ;; # leaves the repository: not ours to check
            esac
            [ -e "$rel" ] && continue
            stale "$doc" "$line" "$name" "does not exist"
            ;;
        *)
            [ -e "$dir/$name" ] && continue
            [ -e "$name" ] && continue
            n=$(echo "$tree" | awk -F/ -v n="$name" '$NF == n' | wc -l)
            [ "$n" -eq 1 ] && continue
            if [ "$n" -eq 0 ]; then
                stale "$doc" "$line" "$name" "does not exist"
            else
                stale "$doc" "$line" "$name" "is ambiguous here ($n files): give its folder"
            fi
            ;;
        esac
    done
done
nl='
'
IFS=$nl
for entry in $allow; do
    case "$used" in
    *"|$entry|"*) ;;
    *)
        echo "$allow_file: '$entry' is no longer stale: delete that line"
        bad=1
        ;;
    esac
done
[ $bad -eq 0 ] || exit 1
echo "check_doc_files: ok ($(echo "$docs" | wc -l) docs)"
exit 0
