#!/usr/bin/env bash
# config.toml and docs/config.md are generated from the schema; fail when either has drifted from it.
set -euo pipefail
engine=$1 src=$2
status=0
check() {
    local flag=$1 file=$2
    if ! diff -u "$src/$file" <("$engine" schema "$flag") >/tmp/sdtune-drift.$$ 2>&1; then
        echo "$file is out of date with the schema; run 'make regen' and commit the result:"
        head -n 40 /tmp/sdtune-drift.$$
        status=1
    fi
    rm -f /tmp/sdtune-drift.$$
}
check --toml config.toml
check --markdown docs/config.md
[ $status = 0 ] && echo "config.toml and docs/config.md match the schema"
exit $status
