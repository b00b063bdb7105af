#!/usr/bin/env bash
# Drives sdtune in tmux (tests/tui/tui-drive) with the real engine: a run started at 200x60 uses the room
# (larger sparkline, log and samples panes than at 80x24); two idle sdtunes on the same config attach to
# it, one with F4, the other when its F5 is refused (one engine per output folder); quitting an attached
# sdtune leaves the engine alone without asking; quitting the first with `l` leaves the engine training;
# a new sdtune on the same config at 80x24 re-attaches at start from the journal (replayed log, the step
# count moves, pause refused); Esc cancels a question, F6 + y stops the engine with SIGTERM and the run
# ends with the LoRA file saved and the exit status said to be unknown; Esc goes back to the config view.
#
# usage: test_reattach.sh SDTUNE_BINARY SOURCE_DIR        (exit 77: skipped, tmux is not installed)
set -euo pipefail

# shellcheck source=tui_test_setup.sh
source "$(dirname "$0")/tui_test_setup.sh" "$@"
expect_timeout=10

# A copy of config.toml training 100000 steps of batch 1 into $tmp/long-out, without samples.
config=$(make_demo_config long 100000 0)

# The run view's panes as "LOG_ROW SPARK_ROWS LOG_ROWS SAMPLES_WIDTH": the screen row of the log box's
# top border, the sparkline box's inside rows, the log box's inside rows, the samples box's width.
panes() {
    local LC_ALL=C.UTF-8 shot line rest n=0 spark=0 top=0 bottom=0 width=0
    shot=$("$drive" "$session" shot)
    while IFS= read -r line; do
        n=$((n + 1))
        if ((spark == 0)) && [[ $line == "┌"*loss* ]]; then
            spark=$n
        elif ((top == 0)) && [[ $line == "┌"*log*"┐┌"* ]]; then
            top=$n
            rest=${line#*┐┌}
            width=$((${#rest} + 1))
        elif ((top > 0 && bottom == 0)) && [[ $line == "└"* ]]; then
            bottom=$n
        fi
    done <<<"$shot"
    echo "$((top - 1)) $((top - spark - 2)) $((bottom - top - 1)) $width"
}

step_of() { "$drive" "$session" shot | grep -Eo 'step [0-9]+/100000' | head -1 | grep -Eo '[0-9]+' | head -1; }

# ---- two more sdtunes, idle on the same config: once a run goes, F4 attaches one, F5 the other ----------
start 80x24 "$sdtune" "$config"
watcher=$session
expect "the watcher shows the config view" 'engine: idle'
start 80x24 "$sdtune" "$config"
other=$session
expect "the second watcher shows the config view" 'engine: idle'

# ---- a run at 200x60, left training ------------------------------------------------------------------
start 200x60 "$sdtune" "$config"
expect "the config view shows" 'engine: idle'
"$drive" "$session" keys F5
expect "the run trains at 200x60" 'step [1-9][0-9]*/100000' 30
read -r big_log_row big_spark big_log big_samples <<<"$(panes)"
echo "panes at 200x60: log box at row $big_log_row, sparkline $big_spark rows, log $big_log rows, samples $big_samples wide"
pid=$(engine_pids)
check "one engine runs ($pid)" test "$(echo "$pid" | wc -w)" -eq 1
starter=$session

session=$watcher
"$drive" "$session" keys F4
expect "F4 in a watcher attaches to the running engine" "attached to pid $pid \\(from the journal\\)"
"$drive" "$session" keys Escape F5
expect "F5 is refused while the attached run goes" 'The attached run is going'
session=$other
"$drive" "$session" keys F5
expect "F5 in the other is refused: a run of these outputs is going" \
    "Not started: a run of these outputs is going \\(pid $pid\\); attached to it"
expect "and it shows that run" "attached to pid $pid \\(from the journal\\)"
"$drive" "$session" keys q
check "q quits an attached sdtune at once, without a question" wait_exit
check "the engine trains on" kill -0 "$pid"

session=$starter
"$drive" "$session" keys q
expect "q asks while training" 'Leave the engine training .* l/s/c'
"$drive" "$session" keys l
check "l leaves the UI" wait_exit
check "the engine trains on, alone ($(engine_pids))" test "$(engine_pids)" = "$pid"

# ---- a new sdtune on the same config re-attaches ---------------------------------------------------------
start 80x24 "$sdtune" "$config"
expect "it attaches at once" "attached to pid $pid \\(from the journal\\)"
expect "the replayed device event says where the run trains" "attached to pid $pid .* CPU · .*fp32 *\$"
expect "the run view shows the run" '^ sdtune  long\.toml +TRAINING +epoch [0-9]+/[0-9]+ +step [1-9][0-9]*/100000'
expect "the log replays the journal (lines from before the first sdtune left)" 'caching latents\.'
expect "and the first sdtune's leaving" 'command input closed \(the UI went away\)'
read -r small_log_row small_spark small_log small_samples <<<"$(panes)"
echo "panes at 80x24: log box at row $small_log_row, sparkline $small_spark rows, log $small_log rows, samples $small_samples wide"
check "200x60 has a taller sparkline ($big_spark rows > $small_spark)" test "$big_spark" -gt "$small_spark"
check "200x60 has a taller log ($big_log rows > $small_log)" test "$big_log" -gt "$small_log"
check "200x60 has a wider samples pane ($big_samples > $small_samples)" test "$big_samples" -gt "$small_samples"
check "the small panes are there ($small_spark, $small_log, $small_samples)" \
    test "$small_spark" -ge 2 -a "$small_log" -ge 3 -a "$small_samples" -ge 24
# The step moves within 20 s (an engine under a sanitizer on a loaded machine can take seconds a step).
first=$(step_of)
second=$first
for _ in $(seq 100); do
    sleep 0.2
    second=$(step_of)
    [ "${second:-0}" -gt "${first:-0}" ] && break
done
check "the step count moves while attached ($first -> $second)" test "${second:-0}" -gt "${first:-0}"
"$drive" "$session" keys p
expect "pause is refused while attached" 'Not while attached'
reattached=$session
session=$watcher
"$drive" "$session" keys q
check "the watcher quits at once too" wait_exit
check "and leaves the engine training" kill -0 "$pid"
session=$reattached
"$drive" "$session" keys F6
expect "F6 asks first" 'Stop the run and save\? y/n'
"$drive" "$session" keys Escape
expect_gone "Esc cancels the question" 'Stop the run and save\? y/n'
check "the engine still runs" kill -0 "$pid"
"$drive" "$session" keys F6
expect "F6 asks again" 'Stop the run and save\? y/n'
"$drive" "$session" keys y
expect "y stops it: the run ends done" "engine pid $pid ended \\(done\\); exit status unknown" 60
check "the LoRA file is saved" test -s "$tmp/long-out/last.safetensors"
check "the engine is gone" test -z "$(engine_pids)"
"$drive" "$session" keys Escape
expect "Esc from the run view shows the config view" '^ sdtune  long\.toml .*engine: done'
expect_not "the config view, not the run view" 'attached to pid'
"$drive" "$session" keys q
check "q quits at once" wait_exit

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
