#!/usr/bin/env bash
# Drives sdtune's run view in tmux (tests/tui/tui-drive) with the real engine on copies of the repository's
# config.toml: a start refused for a config with an error; a run (progress, sparkline, pause and resume,
# sample now, stop: done, the LoRA file); unsaved edits saved on start after a question; an abort with its
# confirmation; an engine killed with SIGKILL and a new run started after it, a resize mid-run; quitting while training (cancel, then leave the engine
# running); whole 12-step runs with samples at TERM=xterm (8 colours) and with NO_COLOR.
#
# usage: test_run_view.sh SDTUNE_BINARY SOURCE_DIR        (exit 77: skipped, tmux is not installed)
set -euo pipefail

# shellcheck source=tui_test_setup.sh
source "$(dirname "$0")/tui_test_setup.sh" "$@"
expect_timeout=10 # the engine may take a while to load and cache

# Braille is U+2800..U+28FF: the bytes e2 a0..a3 in UTF-8.
has_braille() { "$drive" "$session" shot | LC_ALL=C grep -q $'\xe2[\xa0-\xa3]'; }

# ---- a config with an error: the start is refused with the list of errors --------------------------
bad=$tmp/bad.toml
printf '[training]\nmax_train_steps = -1\n' >"$bad"
start 80x24 "$sdtune" "$bad"
expect "the config view shows" '^ sdtune  bad\.toml'
"$drive" "$session" keys F5
expect "F5 refuses a config with errors" 'Cannot start: the config has 1 error'
expect "the refusal lists the error" 'max_train_steps: max_train_steps = -1 is not allowed'
check "no engine started for it" test -z "$(engine_pids)"
"$drive" "$session" keys Escape q
check "q quits when no engine runs" wait_exit

# ---- a run: progress, sparkline, pause and resume, sample now, stop and save -----------------------
config=$(make_demo_config long 100000 0)
start 80x24 "$sdtune" "$config"
expect "the config view shows" 'engine: idle'
"$drive" "$session" keys 5
expect "5 starts the run and shows the run view" '^ sdtune  long\.toml +(STARTING|LOADING|CACHING|TRAINING)' 5
expect "the title shows a step count" 'step [1-9][0-9]*/100000' 30
expect "the progress bar shows the whole run's ETA" 'ETA [0-9:?d ]+ \(run\)'
expect "the memory gauge shows RAM on the CPU" 'RAM [0-9.]+'
expect "the header says where the run trains (the device event): CPU, fp32" '^ engine pid [0-9]+ .* CPU · .*fp32 *$'
check "the loss sparkline draws braille" has_braille
"$drive" "$session" keys p
expect "p pauses" '^ sdtune  long\.toml +PAUSED' 15
shot1=$("$drive" "$session" shot | grep -Eo 'step [0-9]+/100000')
sleep 0.6
shot2=$("$drive" "$session" shot | grep -Eo 'step [0-9]+/100000')
check "no step while paused ($shot1, $shot2)" test "$shot1" = "$shot2"
"$drive" "$session" keys F7
expect "F7 resumes" '^ sdtune  long\.toml +(RESUMING|TRAINING)' 15
"$drive" "$session" keys s
expect "s makes samples, listed with a preview" 'step [0-9]+ #0' 60
"$drive" "$session" keys F6
expect "F6 asks first" 'Stop the run and save\? y/n'
"$drive" "$session" keys y
expect "y stops: the engine saves and exits 0" 'engine exited with code 0 \(done\)' 60
expect "the last log lines stay" 'engine ended: exit code 0'
check "the LoRA file exists" test -s "$tmp/long-out/last.safetensors"
"$drive" "$session" keys F4
expect "F4 switches to the config view" 'engine: done'
"$drive" "$session" keys q
check "q quits after the run" wait_exit

# ---- unsaved edits: save and start; abort with confirmation --------------------------------------
start 80x24 "$sdtune" "$config"
expect "the config view shows" 'engine: idle'
"$drive" "$session" keys /
"$drive" "$session" type flip_aug
"$drive" "$session" keys Enter Space
expect "an edit marks the config unsaved" '^ sdtune  long\.toml\*'
"$drive" "$session" keys F5
expect "F5 with unsaved edits asks to save first" 'Save the changes and start\? y/n'
"$drive" "$session" keys n
expect "n starts nothing" 'engine: idle'
"$drive" "$session" keys F5 y
expect "y saves and starts" 'step [1-9][0-9]*/100000' 30
check "the file has the edit" grep -q '^flip_aug = true' "$config"
"$drive" "$session" keys F8
expect "F8 asks first" 'Abort the run .*y/n'
"$drive" "$session" keys n
expect "n keeps it training" '^ sdtune  long\.toml +TRAINING'
"$drive" "$session" keys 8 y
expect "y aborts and the exit shows" 'engine exited with code 3' 30
"$drive" "$session" keys q
check "q quits after the abort" wait_exit

# ---- SIGKILL: the death shows, a new run starts; quit while training -------------------------------
start 80x24 "$sdtune" "$config"
"$drive" "$session" keys F5
expect "the run trains" 'step [1-9][0-9]*/100000' 30
pids=$(engine_pids)
check "one engine runs ($pids)" test "$(echo "$pids" | wc -w)" -eq 1
kill -KILL $pids
expect "the death shows" 'engine killed by signal 9 \(died\)' 5
expect "the log keeps the last lines" 'engine ended: killed by signal 9'
"$drive" "$session" keys F5
expect "F5 starts a new run" 'step [1-9][0-9]*/100000' 30
"$drive" "$session" resize 120x40
box_width() { "$drive" "$session" shot | sed -n 5p | LC_ALL=C.UTF-8 wc -m; }
for _ in $(seq 50); do # the redraw follows the resize within the loop's next wake-up
    width=$(box_width)
    [ "$width" -eq 121 ] && break
    sleep 0.1
done
check "a resize mid-run redraws the sparkline box 120 wide (got $((width - 1)))" test "$width" -eq 121
"$drive" "$session" resize 80x24
expect "and back at 80x24" '^└─+┘└─+┘$'
"$drive" "$session" keys q
expect "q asks while training" 'Leave the engine training .* l/s/c'
"$drive" "$session" keys c
expect "c cancels" '^ sdtune  long\.toml +TRAINING'
"$drive" "$session" keys F10 l
check "l leaves the UI" wait_exit
check "the engine trains on, detached" test -n "$(engine_pids)"
for pid in $(engine_pids); do kill -KILL "$pid"; done

# ---- 8 colours and no colour ----------------------------------------------------------------------
small=$(make_demo_config small 12 6)
for env in TERM=xterm NO_COLOR=1; do
    start 80x24 env "$env" "$sdtune" "$small"
    "$drive" "$session" keys F5
    expect "$env: the run view draws the step count" 'step [1-9][0-9]*/12' 30
    expect "$env: the header says where the run trains" ' CPU .* fp32 *$'
    expect "$env: the run finishes" 'engine exited with code 0 \(done\)' 90
    "$drive" "$session" keys q
    check "$env: q quits" wait_exit
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
