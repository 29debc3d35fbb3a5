#!/usr/bin/env bash
# Format every tracked C file with the project's .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files '*.c' '*.h' | xargs clang-format -i
