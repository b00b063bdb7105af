#!/usr/bin/env bash
# One LoRA training step of the built-in demo on the guarded test backend (SDTUNE_TEST_DEVICE=guarded,
# docs/ops.md): device memory is PROT_NONE between ops, so host code that reads or writes a device tensor
# faults, as it would misbehave on a GPU. docs/cuda.md lists the places known to do so today, under
# "Device-clean training: what still touches device memory on the host".
#
# An optional third argument is the run's mixed_precision ("bf16": the frozen weights and activations in
# bf16, so the step's dtype conversions must go through ops too; "full_bf16": mixed_precision bf16 with
# full_bf16, the trained weights themselves in bf16), an optional fourth its training_type
# ("dreambooth": the UNet's own weights train, under bf16 as F32 masters with bf16 working copies that
# the step refreshes through ops).
#
# Exit 0: the step ran without touching device memory on the host (the list can go).
# Exit 77 (skipped): it stopped or faulted, but only at places the list names; the first is printed.
# Exit 1: a place the list does not name (a new one: fix it, or list it), or any other failure.
set -uo pipefail
engine=$1 src=$2 precision=${3:-} training_type=${4:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SDTUNE_CACHE_DIR=$work/cache

heading='## Device-clean training: what still touches device memory on the host'
# The list: docs/cuda.md from the heading to the end.
known=$work/known.md
sed -n "/^$heading\$/,\$p" "$src/docs/cuda.md" >"$known"
if [ ! -s "$known" ]; then
    echo "FAIL docs/cuda.md has no section '$heading'"
    exit 1
fi

set_key() {
    local file=$1 section=$2 key=$3 value=$4
    sed -i -e "/^#\? \?$key = /d" "$file"
    sed -i -e "s|^\[$section\]\$|[$section]\n$key = $value|" "$file"
}
cfg=$work/guarded.toml
cp "$src/config.toml" "$cfg"
set_key "$cfg" folders output_dir "\"$work/out\""
set_key "$cfg" folders output_name "\"demo\""
set_key "$cfg" training max_train_steps 1
set_key "$cfg" training train_batch_size 1
case "$precision" in
full_*)
    set_key "$cfg" precision_memory mixed_precision "\"${precision#full_}\""
    set_key "$cfg" precision_memory "$precision" true
    ;;
?*) set_key "$cfg" precision_memory mixed_precision "\"$precision\"" ;;
esac
if [ -n "$training_type" ]; then
    set_key "$cfg" model training_type "\"$training_type\""
fi
printf 'a red circle on a blue background --w 64 --h 64 --d 1 --s 3\n' >"$work/prompts.txt"
set_key "$cfg" sampling sample_prompts "\"$work/prompts.txt\""

log=$work/engine.log
if command -v gdb >/dev/null; then
    # LeakSanitizer cannot run under ptrace: a sanitized engine checks its leaks in the other branch's
    # tests, not here.
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 SDTUNE_TEST_DEVICE=guarded \
        gdb -q -batch -x "$(dirname "$0")/guarded_faults.gdb" --args "$engine" train "$cfg" >"$log" 2>&1
    # gdb's own status says nothing about the engine's; its last words do.
    if grep -q '^\[Inferior 1 (process [0-9]*) exited normally\]' "$log"; then
        status=0
    else
        status=1
    fi
else
    SDTUNE_TEST_DEVICE=guarded "$engine" train "$cfg" >"$log" 2>&1
    status=$?
fi

# Every faulting site as file:function (the innermost frame in the project's sources), in order.
sites=$work/sites
# Only the first project frame of each fault.
awk '/^=== fault at/ { want = 1; next } want && /^#[0-9]/ && index($0, " at '"$src"'/") { print; want = 0 }' "$log" |
    sed -E "s|^#[0-9]+ +(0x[0-9a-f]+ in )?([A-Za-z_0-9]+) .* at $src/([^:]+):.*|\\3:\\2|" | awk '!seen[$0]++' >"$sites"
faults=$(grep -c '^=== fault at' "$log")

unknown=0
while read -r site; do
    if grep -qF "\`$site\`" "$known"; then
        echo "known: $site touches device memory on the host"
    else
        echo "FAIL $site touches device memory on the host and docs/cuda.md does not list it"
        unknown=1
    fi
done <"$sites"

if grep -q '^Program terminated with signal\|signal SIG[A-Z]*, ' "$log" && [ "$faults" -eq 0 ]; then
    echo "FAIL the engine died of a signal outside guarded memory:"
    tail -n 20 "$log"
    exit 1
fi
if [ "$status" -ne 0 ]; then
    # A refusal: the engine's ERROR line, without its prefix and up to its first ";", must be quoted in
    # the list.
    message=$(grep -m 1 '^ERROR ' "$log" | sed 's/^ERROR //; s/;.*//')
    if [ -z "$message" ]; then
        echo "FAIL the engine failed without an error message:"
        tail -n 20 "$log"
        exit 1
    fi
    if grep -qF "$message" "$known"; then
        echo "known: the step stops with: $message"
    else
        echo "FAIL the step stops with an error docs/cuda.md does not list: $message"
        unknown=1
    fi
fi
[ "$unknown" -eq 0 ] || exit 1
if [ "$status" -ne 0 ] || [ "$faults" -gt 0 ]; then
    echo "skipped: training is not device-clean yet ($faults faults); see docs/cuda.md"
    exit 77
fi
if [ ! -s "$work/out/demo.safetensors" ]; then
    echo "FAIL the guarded step finished but saved no model"
    exit 1
fi
ran="mixed precision $precision"
[ "${precision#full_}" = "$precision" ] || ran="$precision: the trained weights"
if [ -n "$precision" ] && ! grep -q "$ran" "$log"; then
    echo "FAIL the guarded step did not run in $precision"
    exit 1
fi
if [ -n "$training_type" ] && ! grep -q "training_type = \"$training_type\"" "$work/out/demo.config.toml"; then
    echo "FAIL the guarded step did not train $training_type"
    exit 1
fi
echo "the guarded training step is device-clean${precision:+ in $precision}${training_type:+ ($training_type)}"
exit 0
