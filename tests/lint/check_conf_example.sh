#!/bin/sh
# An example config must equal what the binary prints with --print-config
# (run with no config file or OBJMETA_* variables in the way), and the
# binary must load it back (every line within the config reader's limit).
# Usage: check_conf_example.sh BINARY EXAMPLE
bin=$1
example=$2
out=$(env -i PATH=/usr/bin:/bin "$bin" --print-config) || { echo "$bin --print-config failed"; exit 1; }
if ! printf '%s\n' "$out" | diff -u "$example" -; then
    echo "check_conf_example: $example differs from '$(basename "$bin") --print-config' (regenerate it)"
    exit 1
fi
if ! err=$(env -i PATH=/usr/bin:/bin "$bin" --config="$example" --print-config 2>&1 >/dev/null); then
    printf '%s\n' "$err"
    echo "check_conf_example: $(basename "$bin") does not load $example"
    exit 1
fi
echo "check_conf_example: ok ($example)"
