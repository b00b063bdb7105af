#!/usr/bin/env bash
# `sdtune-engine train` as a user and as the UI run it, on the built-in demo (config.toml with its
# "builtin:" model and data): a headless run and its outputs, every protocol command, signals, a dead
# stdout, and bad input with the exit codes of docs/protocol.md.
set -uo pipefail
engine=$1 src=$2
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
# The demo assets are prepared once here, not in the user's cache.
export SDTUNE_CACHE_DIR=$work/cache
passed=0 failed=0

ok() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$*"
}
# check NAME CONDITION...: runs the test command CONDITION, counts a pass or a failure.
check() {
    local name=$1
    shift
    if "$@"; then ok; else fail "$name"; fi
}

# set_key FILE SECTION KEY VALUE: the TOML line `KEY = VALUE` in [SECTION], replacing any earlier one.
set_key() {
    local file=$1 section=$2 key=$3 value=$4
    sed -i -e "/^#\? \?$key = /d" "$file"
    sed -i -e "s|^\[$section\]\$|[$section]\n$key = $value|" "$file"
}

# One quick sample prompt instead of the demo's three, so sampling takes a fraction of a second.
printf 'a red circle on a blue background --w 64 --h 64 --d 1 --s 3\n' >"$work/prompts.txt"

# make_config NAME STEPS: a copy of the repository's config.toml writing to $work/NAME, STEPS steps of
# one image each (the demo's batch of 4 is four times slower on a CI machine).
make_config() {
    local name=$1 steps=$2 cfg=$work/$1.toml
    cp "$src/config.toml" "$cfg"
    set_key "$cfg" folders output_dir "\"$work/$name\""
    set_key "$cfg" folders output_name "\"demo\""
    set_key "$cfg" training max_train_steps "$steps"
    set_key "$cfg" training train_batch_size 1
    set_key "$cfg" sampling sample_prompts "\"$work/prompts.txt\""
    echo "$cfg"
}

# is_json_lines FILE: every line is one JSON object with a "t" (python3 when present, else a shape check).
is_json_lines() {
    if command -v python3 >/dev/null; then
        python3 -c 'import json,sys
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    o = json.loads(line)
    assert isinstance(o, dict) and isinstance(o.get("t"), str), "line %d: %s" % (n, line)' "$1"
    else
        ! grep -qvE '^\{"t":"[a-z_]+".*\}$' "$1"
    fi
}

# wait_for FILE PATTERN [SECONDS] [PID]: waits until FILE has a line matching PATTERN; 1 on time out or
# when PID died first.
wait_for() {
    local file=$1 pattern=$2 limit=${3:-30} pid=${4:-}
    local tries=$((limit * 20))
    while ((tries-- > 0)); do
        grep -qE -- "$pattern" "$file" 2>/dev/null && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            grep -qE -- "$pattern" "$file" 2>/dev/null
            return
        fi
        sleep 0.05
    done
    return 1
}

first_type() { head -n 1 "$1" | grep -oE '^\{"t":"[a-z_]+"' | cut -d'"' -f4; }
last_type() { tail -n 1 "$1" | grep -oE '^\{"t":"[a-z_]+"' | cut -d'"' -f4; }

# ---- a headless run: exit 0 and every output --------------------------------------------------------
cfg=$(make_config headless 4)
set_key "$cfg" sampling sample_every_n_steps 2
out=$work/headless
"$engine" train "$cfg" >"$work/headless.stdout" 2>"$work/headless.stderr"
status=$?
check "headless: exit 0 (got $status; $(tail -n 3 "$work/headless.stderr" | tr '\n' ' '))" [ "$status" = 0 ]
check "headless: nothing on stdout" [ ! -s "$work/headless.stdout" ]
check "headless: progress line on stderr" grep -q 'steps: .*4/4' "$work/headless.stderr"
check "headless: LoRA file" [ -s "$out/demo.safetensors" ]
check "headless: samples" compgen -G "$out/sample/demo_*.png" >/dev/null
check "headless: config copy" [ -s "$out/demo.config.toml" ]
journal=$out/demo.events.jsonl
check "headless: journal is JSON Lines" is_json_lines "$journal"
check "headless: journal starts with hello" [ "$(first_type "$journal")" = hello ]
check "headless: journal ends with done" [ "$(last_type "$journal")" = "done" ]
check "headless: 4 progress events" [ "$(grep -c '^{"t":"progress"' "$journal")" = 4 ]
check "headless: sample events" grep -q '^{"t":"sample"' "$journal"

# --quiet --threads 1: no INFO lines, the last progress line still printed.
cfg=$(make_config quiet 2)
"$engine" train --quiet --threads 1 "$cfg" >/dev/null 2>"$work/quiet.stderr"
status=$?
check "quiet: exit 0 (got $status)" [ "$status" = 0 ]
no_info() { ! grep -q '^INFO' "$1"; }
check "quiet: no INFO lines" no_info "$work/quiet.stderr"
check "quiet: last progress line" grep -q 'steps: .*2/2' "$work/quiet.stderr"
check "quiet: LoRA file" [ -s "$work/quiet/demo.safetensors" ]

# ---- --protocol: every command ------------------------------------------------------------------------
cfg=$(make_config protocol 100000)
mkfifo "$work/commands"
timeout 120 "$engine" train --protocol "$cfg" <"$work/commands" >"$work/p.out" 2>"$work/p.err" &
pid=$!
pids+=("$pid")
exec 3>"$work/commands"
send() { printf '%s\n' "$1" >&3; }
ev() { wait_for "$work/p.out" "$1" 30 "$pid"; }
check "protocol: hello first" ev '^\{"t":"hello","v":1,.*"backend":"cpu"'
check "protocol: training" ev '^\{"t":"progress"'
send '{"t":"ping","id":"p1"}'
check "protocol: ping -> pong" ev '^\{"t":"pong".*"id":"p1"'
send 'this is not json'
check "protocol: malformed line -> error" ev '^\{"t":"error"'
send '{"t":"stpo"}'
check "protocol: unknown command -> error naming it" ev '^\{"t":"error".*stpo'
send '{"t":"pause","id":"a"}'
check "protocol: pause -> ack" ev '^\{"t":"ack".*"command":"pause","id":"a"'
check "protocol: phase paused" ev '"phase":"paused"'
n1=$(grep -c '^{"t":"progress"' "$work/p.out")
sleep 0.5
n2=$(grep -c '^{"t":"progress"' "$work/p.out")
check "protocol: no steps while paused ($n1 -> $n2)" [ "$n1" = "$n2" ]
send '{"t":"resume","id":"b"}'
check "protocol: resume -> ack" ev '^\{"t":"ack".*"command":"resume","id":"b"'
# phase training again after the paused one
training_again() {
    local tries=600
    while ((tries-- > 0)); do
        awk '/"phase":"paused"/ { paused = 1 } paused && /"phase":"training"/ { found = 1 } END { exit !found }' \
            "$work/p.out" && return 0
        sleep 0.05
    done
    return 1
}
check "protocol: phase training after paused" training_again
n3=$(grep -c '^{"t":"progress"' "$work/p.out")
check "protocol: steps go on after resume" wait_for "$work/p.out" "^\\{\"t\":\"progress\",[^}]*\"step\":$((n3 + 2))," 30 "$pid"
send '{"t":"sample_now","id":"c"}'
check "protocol: sample_now -> ack" ev '^\{"t":"ack".*"command":"sample_now"'
check "protocol: sample_now -> sample" ev '^\{"t":"sample"'
send '{"t":"save_now","id":"d"}'
check "protocol: save_now -> ack" ev '^\{"t":"ack".*"command":"save_now"'
check "protocol: save_now -> checkpoint" ev '^\{"t":"checkpoint".*"kind":"model"'
checkpoints=$(grep -c '^{"t":"checkpoint"' "$work/p.out")
send '{"t":"stop","id":"e"}'
check "protocol: stop -> ack" ev '^\{"t":"ack".*"command":"stop"'
wait "$pid"
status=$?
exec 3>&-
check "protocol: stop -> exit 0 (got $status)" [ "$status" = 0 ]
check "protocol: stop saves" [ "$(grep -c '^{"t":"checkpoint"' "$work/p.out")" -gt "$checkpoints" ]
check "protocol: done last" [ "$(last_type "$work/p.out")" = "done" ]
check "protocol: stdout is JSON Lines" is_json_lines "$work/p.out"
check "protocol: journal ends with done" [ "$(last_type "$work/protocol/demo.events.jsonl")" = "done" ]

# abort: exit 3 without saving.
cfg=$(make_config abort 100000)
rm -f "$work/commands" && mkfifo "$work/commands"
timeout 120 "$engine" train --protocol "$cfg" <"$work/commands" >"$work/p.out" 2>"$work/p.err" &
pid=$!
pids+=("$pid")
exec 3>"$work/commands"
check "abort: training" ev '^\{"t":"progress"'
send '{"t":"abort"}'
check "abort: ack" ev '^\{"t":"ack".*"command":"abort"'
wait "$pid"
status=$?
exec 3>&-
check "abort: exit 3 (got $status)" [ "$status" = 3 ]
check "abort: no model saved" [ ! -e "$work/abort/demo.safetensors" ]
check "abort: done with exit code 3" ev '^\{"t":"done".*"exit_code":3'


# ---- signals ------------------------------------------------------------------------------------------
# The engine's own pid, from the hello event: $pid is timeout's, which passes a signal on to its child and
# to its process group, so the engine would see it twice (or once, when the two merge while pending).
engine_pid() { grep -o '"pid":[0-9]*' "$1" | head -n 1 | cut -d: -f2; }

cfg=$(make_config sigterm 100000)
timeout 120 "$engine" train "$cfg" >/dev/null 2>"$work/s.err" &
pid=$!
pids+=("$pid")
journal=$work/sigterm/demo.events.jsonl
check "SIGTERM: training" wait_for "$journal" '^\{"t":"progress"' 30 "$pid"
kill -TERM "$(engine_pid "$journal")"
wait "$pid"
status=$?
check "SIGTERM: exit 0 (got $status)" [ "$status" = 0 ]
check "SIGTERM: model saved" [ -s "$work/sigterm/demo.safetensors" ]
check "SIGTERM: journal ends with done" [ "$(last_type "$journal")" = "done" ]

cfg=$(make_config sig2 100000)
timeout 120 "$engine" train "$cfg" >/dev/null 2>"$work/s.err" &
pid=$!
pids+=("$pid")
check "second signal: training" wait_for "$work/sig2/demo.events.jsonl" '^\{"t":"progress"' 30 "$pid"
epid=$(engine_pid "$work/sig2/demo.events.jsonl")
kill -TERM "$epid"
kill -INT "$epid"
wait "$pid"
status=$?
check "second signal: exit 3 (got $status)" [ "$status" = 3 ]

# ---- a dead stdout does not stop the run ---------------------------------------------------------------
cfg=$(make_config deadpipe 3)
# A warning from the config's checks is written before the run starts: the pipe is already closed then.
set_key "$cfg" network network_alpha 16
"$engine" train --protocol "$cfg" </dev/null 2>"$work/d.err" | head -c 1 >/dev/null
status=${PIPESTATUS[0]}
check "dead stdout: exit 0 (got $status)" [ "$status" = 0 ]
check "dead stdout: journal ends with done" [ "$(last_type "$work/deadpipe/demo.events.jsonl")" = "done" ]
check "dead stdout: LoRA file" [ -s "$work/deadpipe/demo.safetensors" ]
check "dead stdout: the warning reached the journal" \
    grep -q '^{"t":"log".*"level":"warning".*network_alpha' "$work/deadpipe/demo.events.jsonl"

# ---- bad input ---------------------------------------------------------------------------------------
# expect NAME WANT_STATUS PATTERN CMD...: exit status and a line of the output (stdout and stderr).
expect() {
    local name=$1 want=$2 pattern=$3
    shift 3
    local result status
    result=$("$@" 2>&1)
    status=$?
    if [ "$status" = "$want" ] && grep -Eq -- "$pattern" <<<"$result"; then
        ok
    else
        fail "$(printf '%s: want exit %s and /%s/, got exit %s:\n%s' "$name" "$want" "$pattern" "$status" "$result")"
    fi
}
expect "usage: no config" 2 'usage: sdtune-engine train' "$engine" train
expect "usage: unknown option" 2 "unknown option '--frob'" "$engine" train --frob "$src/config.toml"
expect "usage: bad --threads" 2 'threads' "$engine" train --threads zero "$src/config.toml"
expect "missing config file" 2 'nope.toml: error: cannot open' "$engine" train "$work/nope.toml"

cfg=$(make_config badmodel 5)
set_key "$cfg" model pretrained_model_name_or_path "\"$work/missing.safetensors\""
line=$(grep -n '^pretrained_model_name_or_path' "$cfg" | cut -d: -f1)
expect "missing model file" 2 "badmodel.toml:$line:[0-9]+: error: .*missing.safetensors" "$engine" train "$cfg"
expect "missing model file, protocol" 2 '^\{"t":"config_error".*"field":"model.pretrained_model_name_or_path"' \
    "$engine" train --protocol "$cfg"

cfg=$(make_config badout 5)
touch "$work/a-file"
set_key "$cfg" folders output_dir "\"$work/a-file/out\""
expect "unwritable output dir" 2 "a-file/out" "$engine" train "$cfg"

cfg=$(make_config planned 5)
set_key "$cfg" dataset weighted_captions true
line=$(grep -n '^weighted_captions' "$cfg" | cut -d: -f1)
expect "planned setting" 2 "planned.toml:$line:[0-9]+: error: .*weighted_captions.*not implemented" "$engine" train "$cfg"
expect "planned setting, protocol" 2 '^\{"t":"config_error".*"field":"dataset.weighted_captions"' \
    "$engine" train --protocol "$cfg"

printf '[training\nmax_train_steps = 5\n' >"$work/malformed.toml"
expect "malformed config" 2 'malformed.toml:1:[0-9]+: error: ' "$engine" train "$work/malformed.toml"

# ---- faults during a run: a full disk, a state that is not one (exit 1, nothing half-written) ---------
# A run that saves its state, then a disk that fills up (ulimit -f, SIGXFSZ ignored so writes fail with
# EFBIG) while the final LoRA replaces that run's file: exit 1 naming the file, the old file unchanged,
# no temporary file left.
cfg=$(make_config faults 2)
set_key "$cfg" saving save_state true
"$engine" train --quiet "$cfg" >/dev/null 2>"$work/faults.stderr"
status=$?
check "faults: first run exits 0 (got $status)" [ "$status" = 0 ]
lora=$work/faults/demo.safetensors
cp "$lora" "$work/faults-before.safetensors"
blocks=$(($(stat -c %s "$lora") / 1024 - 8))
(
    ulimit -f "$blocks"
    trap '' XFSZ
    exec "$engine" train --quiet "$cfg"
) >/dev/null 2>"$work/diskfull.stderr"
status=$?
check "disk full: exit 1 (got $status)" [ "$status" = 1 ]
check "disk full: names the file" grep -q "demo.safetensors" "$work/diskfull.stderr"
check "disk full: old LoRA unchanged" cmp -s "$lora" "$work/faults-before.safetensors"
no_tmp() { ! compgen -G "$1/*.tmp.*" >/dev/null && ! compgen -G "$1/.state-tmp*" >/dev/null; }
check "disk full: no temporary file" no_tmp "$work/faults"
check "disk full: state kept" [ -s "$work/faults/demo-state/train_state.json" ]

# resume at a state folder with a file missing (exit 1) and at no folder (a config error, exit 2).
mkdir -p "$work/partial-state"
cp "$work/faults/demo-state/train_state.json" "$work/faults/demo-state/weights.safetensors" \
    "$work/partial-state/"
cfg=$(make_config resume-partial 4)
set_key "$cfg" saving resume "\"$work/partial-state\""
expect "resume: incomplete state" 1 "partial-state is not a complete state folder: .*optimizer.safetensors" \
    "$engine" train --quiet "$cfg"
check "resume: incomplete state writes no model" [ ! -e "$work/resume-partial/demo.safetensors" ]
cfg=$(make_config resume-missing 4)
set_key "$cfg" saving resume "\"$work/no-state\""
expect "resume: missing state" 2 "resume = \"$work/no-state\" does not exist" "$engine" train --quiet "$cfg"

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
