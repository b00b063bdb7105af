#!/usr/bin/env bash
# The memory plan as a user sees it: `sdtune-engine train` prints the plan's table before it trains the
# demo (human log lines and --protocol log events) and the first step's measured peak; a --memory-limit
# below the plan stops the run before the model is loaded, with exit 2, the table and the settings that
# help, and so does vram_limit_gb below the plan; backend = "cuda" on a machine without a GPU stops at start
# naming the setting; `sdtune-engine plan` prints the same table, for the CPU and for the CUDA backend's
# bf16 plan.
set -uo pipefail
engine=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SDTUNE_CACHE_DIR=$work/cache
passed=0 failed=0

ok() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$*"
}
check() {
    local name=$1
    shift
    if "$@"; then ok; else fail "$name"; fi
}
# has FILE PATTERN: FILE has a line matching the extended regex PATTERN; lacks: it has none.
has() { grep -qE -- "$2" "$1"; }
lacks() { ! grep -qE -- "$2" "$1"; }

set_key() {
    local file=$1 section=$2 key=$3 value=$4
    sed -i -e "/^#\? \?$key = /d" "$file"
    sed -i -e "s|^\[$section\]\$|[$section]\n$key = $value|" "$file"
}

cfg=$work/demo.toml
cp "$src/config.toml" "$cfg"
set_key "$cfg" folders output_dir "\"$work/out\""
set_key "$cfg" training max_train_steps 1
set_key "$cfg" training train_batch_size 1
set_key "$cfg" sampling sample_every_n_epochs 0

# A headless run: the table on stderr before the model is loaded, then the measured peak.
"$engine" train "$cfg" >"$work/human.out" 2>"$work/human.err"
rc=$?
check "train: exit 0 (got $rc)" [ "$rc" = 0 ]
check "train: the plan's header" has "$work/human.err" "memory plan: cpu, F32 weights, F32 activations, batch 1 at 64x64"
for category in weights trainable grads optimizer activations workspace; do
    check "train: the plan's $category line" has "$work/human.err" "^.*  $category +[0-9]+\.[0-9]{2} MiB"
done
check "train: the total against MemAvailable" has "$work/human.err" "total +[0-9.]+ MiB  of [0-9.]+ MiB free \(MemAvailable\)"
plan_line=$(grep -n "memory plan: cpu" "$work/human.err" | head -1 | cut -d: -f1)
load_line=$(grep -n "loading the model" "$work/human.err" | head -1 | cut -d: -f1)
before() { [ -n "$1" ] && [ -n "$2" ] && [ "$1" -lt "$2" ]; }
check "train: the plan comes before the model is loaded" before "$plan_line" "$load_line"
check "train: the first step's measured peak" has "$work/human.err" "memory: the first step held at most [0-9.]+ MiB"

# --protocol: the same lines as log events.
"$engine" train --protocol "$cfg" </dev/null >"$work/proto.out" 2>"$work/proto.err"
rc=$?
check "protocol: exit 0 (got $rc)" [ "$rc" = 0 ]
check "protocol: the plan as log events" has "$work/proto.out" '"t":"log".*memory plan: cpu'
check "protocol: the activations line" has "$work/proto.out" '"t":"log".*activations +[0-9.]+ MiB'

# A limit below the plan: refused before loading, exit 2, the table and the suggestion.
"$engine" train --memory-limit 1 "$cfg" >"$work/small.out" 2>"$work/small.err"
rc=$?
check "limit: exit 2 (got $rc)" [ "$rc" = 2 ]
check "limit: the table" has "$work/small.err" "total +[0-9.]+ MiB  of 1.00 MiB free \(given limit\)"
check "limit: the suggestion" has "$work/small.err" "settings that lower the plan"
check "limit: gradient checkpointing suggested" has "$work/small.err" "gradient_checkpointing = true +total"
check "limit: the reason" has "$work/small.err" "by its memory plan but 1.00 MiB are free"
check "limit: the model was not loaded" lacks "$work/small.err" "loading the model"
"$engine" train --memory-limit x "$cfg" >/dev/null 2>&1
check "limit: a bad value is a usage error" [ $? = 2 ]

# vram_limit_gb below the plan: the same refusal, against the limit.
limited=$work/limited.toml
cp "$cfg" "$limited"
set_key "$limited" precision_memory vram_limit_gb 0.001
"$engine" train "$limited" >"$work/vram.out" 2>"$work/vram.err"
rc=$?
check "vram_limit_gb: exit 2 (got $rc)" [ "$rc" = 2 ]
check "vram_limit_gb: the table" has "$work/vram.err" "total +[0-9.]+ MiB  of 1.02 MiB free \(vram_limit_gb\)"
check "vram_limit_gb: the reason" has "$work/vram.err" "by its memory plan but 1.02 MiB are free \(vram_limit_gb\)"
check "vram_limit_gb: the model was not loaded" lacks "$work/vram.err" "loading the model"
# `plan` applies it too.
"$engine" plan "$limited" >"$work/plan-vram.out" 2>&1
rc=$?
check "plan vram_limit_gb: exit 1 (got $rc)" [ "$rc" = 1 ]
check "plan vram_limit_gb: the table" has "$work/plan-vram.out" "of 1.02 MiB free \(vram_limit_gb\)"
# A limit above the plan changes nothing.
set_key "$limited" precision_memory vram_limit_gb 64
"$engine" train "$limited" >"$work/vram-big.out" 2>"$work/vram-big.err"
rc=$?
check "vram_limit_gb 64: exit 0 (got $rc)" [ "$rc" = 0 ]

# backend = "cuda" where the build has CUDA but no GPU answers: refused at start, naming the setting.
if "$engine" --version | grep -q 'backends: .*cuda' && "$engine" devices | grep -qE '^cuda +none'; then
    gpu=$work/gpu.toml
    cp "$cfg" "$gpu"
    set_key "$gpu" hardware backend '"cuda"'
    "$engine" train "$gpu" >"$work/gpu.out" 2>"$work/gpu.err"
    rc=$?
    check "backend cuda without a GPU: exit 2 (got $rc)" [ "$rc" = 2 ]
    check "backend cuda without a GPU: names the setting" has "$work/gpu.err" "hardware\.backend"
    check "backend cuda without a GPU: says why" has "$work/gpu.err" 'backend "cuda" with gpu_index 0: the GPU cannot be used'
    check "backend cuda without a GPU: nothing loaded" lacks "$work/gpu.err" "loading the model"
    # auto falls back to the CPU and says so.
    set_key "$gpu" hardware backend '"auto"'
    "$engine" train "$gpu" >"$work/auto.out" 2>"$work/auto.err"
    rc=$?
    check "backend auto without a GPU: exit 0 (got $rc)" [ "$rc" = 0 ]
    check "backend auto without a GPU: logs the CPU" has "$work/auto.err" "backend auto: no CUDA device .*training on the CPU"
fi

# `plan`: the table alone; --free decides; the CUDA plan of SD1.5 in bf16.
"$engine" plan "$cfg" >"$work/plan.out" 2>&1
rc=$?
check "plan: exit 0 (got $rc)" [ "$rc" = 0 ]
check "plan: the table" has "$work/plan.out" "activations +[0-9.]+ MiB  unet [0-9.]+, text_encoder"
"$engine" plan "$cfg" --free 1 >"$work/plan-small.out" 2>&1
rc=$?
check "plan --free 1: exit 1 (got $rc)" [ "$rc" = 1 ]
check "plan --free 1: does not fit" has "$work/plan-small.out" "^does not fit$"
check "plan --free 1: suggestion" has "$work/plan-small.out" "train_batch_size|gradient_checkpointing"
"$engine" plan "$cfg" --arch sd15 --device cuda --free 81920 >"$work/plan-cuda.out" 2>&1
rc=$?
check "plan sd15 cuda: exit 0 (got $rc)" [ "$rc" = 0 ]
check "plan sd15 cuda: bf16" has "$work/plan-cuda.out" "memory plan: cuda, BF16 weights, BF16 activations"
check "plan sd15 cuda: the UNet's bf16 weights" has "$work/plan-cuda.out" "unet 1639.42"
"$engine" plan >/dev/null 2>&1
check "plan: no config is a usage error" [ $? = 2 ]
"$engine" plan "$cfg" --device tpu >/dev/null 2>&1
check "plan: a bad device is a usage error" [ $? = 2 ]

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
