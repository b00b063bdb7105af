# The common start of the tests/tui/*.sh scripts, which source it right after `set -euo pipefail`:
#
#   source "$(dirname "$0")/tui_test_setup.sh" "$@"      # the script's arguments: SDTUNE_BINARY SOURCE_DIR
#
# It checks the arguments, skips the test (exit 77) without tmux, makes a private folder $tmp that also
# holds the UI's settings and state (so no test reads or writes the user's recent-files list or theme)
# and the engine's cache, and removes it at exit after stopping every tmux session and killing every
# engine the test started. It defines $sdtune, $engine, $src, $drive, $tmp, `start`, `wait_exit`,
# `engine_pids` and `make_demo_config`, and sources screen_checks.sh (expect, expect_not, check, ...) with $passed and
# $failed at 0.

[ $# -eq 2 ] || { echo "usage: $0 SDTUNE_BINARY SOURCE_DIR" >&2; exit 2; }
sdtune=$1
src=$2
engine=$(dirname "$sdtune")/sdtune-engine
drive=$src/tests/tui/tui-drive
command -v tmux >/dev/null || { echo "skipped: tmux is not installed"; exit 77; }

tmp=$(mktemp -d)
export SDTUNE_CACHE_DIR=$tmp/cache XDG_STATE_HOME=$tmp/state XDG_CONFIG_HOME=$tmp/settings
sessions=()
session=""

# The pids of the engines this test started: their command lines name configs in $tmp.
engine_pids() {
    for d in /proc/[0-9]*; do
        { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -q "sdtune-engine train --protocol $tmp/" &&
            echo "${d#/proc/}"
    done
    true
}
cleanup() {
    for s in "${sessions[@]}"; do "$drive" "$s" stop; done
    for pid in $(engine_pids); do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" TERM INT HUP # so that cleanup runs when ctest gives up on the test

# start SIZE CMD...: runs CMD in a fresh tui-drive session, which the following checks look at ($session).
start() {
    local size=$1
    shift
    session=$(basename "$0" .sh)-$$-${#sessions[@]}
    sessions+=("$session")
    "$drive" "$session" start "$size" "$@"
}

# wait_exit: the program in $session ends within 5 seconds.
wait_exit() {
    local end=$((SECONDS + 5))
    while "$drive" "$session" alive; do
        ((SECONDS < end)) || return 1
        sleep 0.2
    done
}

# make_demo_config NAME STEPS SAMPLE_EVERY: a copy of config.toml (the built-in demo) training STEPS steps
# of batch 1 into $tmp/NAME-out, sampling every SAMPLE_EVERY steps (0: never); prints its path.
make_demo_config() {
    local name=$1 steps=$2 every=$3 path=$tmp/$1.toml
    awk -v out="\"$tmp/$name-out\"" -v steps="$steps" -v every="$every" '
        /^(# )?(output_dir|max_train_steps|train_batch_size|sample_every_n_steps|cache_latents_to_disk) = / { next }
        { print }
        /^\[folders\]$/ { print "output_dir = " out }
        /^\[training\]$/ { print "max_train_steps = " steps; print "train_batch_size = 1" }
        /^\[sampling\]$/ { print "sample_every_n_steps = " every }
        /^\[dataset\]$/ { print "cache_latents_to_disk = true" }
    ' "$src/config.toml" >"$path"
    echo "$path"
}

passed=0 failed=0
# shellcheck source=screen_checks.sh
source "$src/tests/tui/screen_checks.sh"
