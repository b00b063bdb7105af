#!/usr/bin/env bash
# Fails when a C/C++/CUDA source of the project is not formatted by .clang-format (fix: make format).
set -euo pipefail
src=$1
command -v clang-format >/dev/null || { echo "clang-format is not installed; skipping"; exit 77; }
cd "$src"
mapfile -t files < <(find include src engine kernels tui tests -type f \
    \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.cu' \) | sort)
if ! clang-format --dry-run --Werror "${files[@]}" 2>/tmp/sdtune-format.$$; then
    head -n 40 /tmp/sdtune-format.$$
    echo "some sources are not formatted; run 'make format'"
    rm -f /tmp/sdtune-format.$$
    exit 1
fi
rm -f /tmp/sdtune-format.$$
echo "${#files[@]} sources formatted"
