#!/usr/bin/env bash
# `sdtune-engine bench` on the tiny model: the table's columns, positive numbers that agree with each other
# (TFLOP/s = FLOPs per step / step time, images/s = batch / step time, MFU = TFLOP/s / GEMM peak, twice the
# batch twice the FLOPs, the per-family times add up to the step), the precision options (--precision,
# --fp8, --checkpointing: named in the report, the GEMM peak in that dtype, the memory plan's line per
# batch), the JSON form, and the errors. No timing is asserted: the numbers only have to be consistent.
set -uo pipefail
engine=$1
passed=0 failed=0

pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$*"
}

# expect NAME WANT_STATUS PATTERN CMD... : exit status and a line of the output matching PATTERN.
expect() {
    local name=$1 want=$2 pattern=$3
    shift 3
    local out status
    out=$("$@" 2>&1)
    status=$?
    if [ "$status" = "$want" ] && grep -Eq -- "$pattern" <<<"$out"; then
        pass
    else
        fail "$name: want exit $want and /$pattern/, got exit $status:"
        printf '%s\n' "$out"
    fi
}

tiny=(--arch sd15-tiny --res 64 --batch 1,2 --steps 2 --threads 1)

# ---- the tables ----
out=$("$engine" bench "${tiny[@]}" 2>/dev/null)
status=$?
[ "$status" = 0 ] && pass || fail "bench exit $status"
grep -Eq '^batch +images/s +step_ms +TFLOP/step +TFLOP/s +MFU_% +peak_MB$' <<<"$out" && pass ||
    fail "no results header in: $out"
grep -Eq '^batch +conv +linear +attention +norm +elementwise +optimizer +other$' <<<"$out" && pass ||
    fail "no breakdown header in: $out"
grep -Eq '^GEMM peak: [0-9.e+-]+ TFLOP/s \(1024x1024x1024 fp32 linear_forward\)$' <<<"$out" && pass ||
    fail "no GEMM peak line in: $out"
grep -Eq '^precision: fp32 \(frozen UNet weights fp32, inputs and activations fp32' <<<"$out" && pass ||
    fail "the CPU's default precision is not fp32: $out"
# the memory plan next to the measured peak, one row per batch: plan and measured positive, the plan's
# categories add up to its total (0.1 MiB printed, six rounded terms)
grep -Eq '^batch +plan_MiB +measured_MiB +weights +trainable +grads +optimizer +activations +workspace$' \
    <<<"$out" && pass || fail "no memory plan header in: $out"
mem=$(awk '/^batch +plan_MiB/ {on = 1; next} on && NF == 0 {on = 0} on' <<<"$out")
if [ "$(wc -l <<<"$mem")" = 2 ] && awk '{
        if (NF != 9 || !($2 > 0) || !($3 > 0)) exit 1
        s = 0; for (i = 4; i <= 9; i++) s += $i
        if (s - $2 > 0.35 || $2 - s > 0.35) exit 1
    }' <<<"$mem"; then
    pass
else
    fail "memory plan rows: $mem"
fi
grep -Eq 'LoRA rank 32 alpha 16' <<<"$out" && pass || fail "not the config's default LoRA: $out"
# results rows: 7 numbers, all positive; TFLOP/s = TFLOP/step / step_ms (4 significant digits printed)
rows=$(awk '/^batch +images/ {on = 1; next} on && NF == 0 {on = 0} on' <<<"$out")
[ "$(wc -l <<<"$rows")" = 2 ] && pass || fail "want 2 result rows, got: $rows"
if awk '{
        if (NF != 7) exit 1
        for (i = 1; i <= 7; i++) if (!($i > 0)) exit 1
        tflops = $4 / ($3 / 1000); if (tflops / $5 < 0.99 || tflops / $5 > 1.01) exit 1
        ips = $1 / ($3 / 1000); if (ips / $2 < 0.99 || ips / $2 > 1.01) exit 1
    }' <<<"$rows"; then
    pass
else
    fail "inconsistent or non-positive rows: $rows"
fi
b1=$(awk 'NR == 1 {print $4}' <<<"$rows") b2=$(awk 'NR == 2 {print $4}' <<<"$rows")
awk -v a="$b1" -v b="$b2" 'BEGIN {exit !(b / a > 1.99 && b / a < 2.01)}' && pass ||
    fail "batch 2 FLOPs $b2 are not twice batch 1's $b1"

# ---- JSON ----
json=$("$engine" bench "${tiny[@]}" --json 2>&1)
status=$?
[ "$status" = 0 ] && pass || fail "bench --json exit $status: $json"
if command -v python3 >/dev/null; then
    if python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
rows = d["results"]
assert [r["batch"] for r in rows] == [1, 2], rows
assert d["gemm_peak_flops"] > 0 and d["lora_rank"] == 32 and d["trainable_params"] > 0
close = lambda a, b: abs(a / b - 1) < 1e-4
for r in rows:
    for k in ("images_per_second", "step_seconds", "flops_per_step", "forward_flops", "flops_per_second", "mfu", "peak_bytes"):
        assert r[k] > 0, (k, r)
    assert close(r["flops_per_second"], r["flops_per_step"] / r["step_seconds"]), r
    assert close(r["images_per_second"], r["batch"] / r["step_seconds"]), r
    assert close(r["mfu"], r["flops_per_second"] / d["gemm_peak_flops"]), r
    # training costs more than two forwards and less than four (LoRA rules, adapters included)
    assert 2 * r["forward_flops"] < r["flops_per_step"] < 4 * r["forward_flops"], r
    fam = r["family_seconds"]
    assert sorted(fam) == sorted(["conv", "linear", "attention", "norm", "elementwise", "optimizer", "other"])
    assert all(v >= 0 for v in fam.values()), fam
    assert fam["conv"] > 0 and fam["linear"] > 0 and fam["attention"] > 0 and fam["optimizer"] > 0, fam
    assert abs(sum(fam.values()) / r["step_seconds"] - 1) < 0.01, (sum(fam.values()), r["step_seconds"])
assert close(rows[1]["flops_per_step"], 2 * rows[0]["flops_per_step"])
' <<<"$json"; then
        pass
    else
        fail "bench --json: $json"
    fi
fi
expect "full fine-tune" 0 '"mode": "full"' "$engine" bench --arch sd15-tiny --res 64 --steps 1 --warmup 0 \
    --threads 1 --mode full --json
expect "full fine-tune in fp32" 0 '"precision": "fp32"' "$engine" bench --arch sd15-tiny --res 64 --steps 1 \
    --warmup 0 --threads 1 --mode full --precision fp32 --json

# ---- precision ----
one=(--arch sd15-tiny --res 64 --batch 1 --steps 1 --warmup 0 --threads 1)
out=$("$engine" bench "${one[@]}" --precision bf16 --fp8 --checkpointing on 2>&1)
status=$?
[ "$status" = 0 ] && pass || fail "bench --precision bf16 --fp8 exit $status: $out"
grep -Eq '^precision: bf16 \(frozen UNet weights fp8 e4m3 for linear/conv, inputs and activations bf16' \
    <<<"$out" && pass || fail "bf16 + fp8 not named: $out"
grep -Eq '^GEMM peak: [0-9.e+-]+ TFLOP/s \(1024x1024x1024 bf16 linear_forward\)$' <<<"$out" && pass ||
    fail "the GEMM peak is not measured in bf16: $out"
grep -Eq '^bench: .*, gradient checkpointing$' <<<"$out" && pass || fail "--checkpointing on not reported: $out"
expect "fp16" 0 '^precision: fp16 ' "$engine" bench "${one[@]}" --precision fp16
if command -v python3 >/dev/null; then
    f32=$("$engine" bench "${one[@]}" --json 2>/dev/null)
    b16=$("$engine" bench "${one[@]}" --precision bf16 --fp8 --checkpointing on --json 2>/dev/null)
    if python3 -c '
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert a["precision"] == "fp32" and not a["fp8"] and not a["gradient_checkpointing"], a
assert b["precision"] == "bf16" and b["fp8"] and b["gradient_checkpointing"], b
ra, rb = a["results"][0], b["results"][0]
for r in (ra, rb):
    assert r["plan_bytes"] == sum(r["plan"].values()) and r["engine_peak_bytes"] > 0, r
# fp8 weights take a quarter of fp32, and checkpointing keeps fewer activations
assert rb["plan"]["weights"] < ra["plan"]["weights"] / 2, (ra["plan"], rb["plan"])
assert rb["plan"]["activations"] < ra["plan"]["activations"], (ra["plan"], rb["plan"])
assert rb["plan"]["trainable"] == ra["plan"]["trainable"], "LoRA masters stay fp32"
assert abs(rb["loss"] / ra["loss"] - 1) < 0.05, (ra["loss"], rb["loss"])
' "$f32" "$b16"; then
        pass
    else
        fail "precision JSON: $f32 $b16"
    fi
fi

# --json-out: the tables on stdout and the same JSON object in the file
jdir=$(mktemp -d)
out=$("$engine" bench "${one[@]}" --precision bf16 --json-out "$jdir/bench.json" 2>/dev/null)
status=$?
if [ "$status" = 0 ] && grep -Eq '^batch +plan_MiB' <<<"$out" && grep -q '"precision": "bf16"' "$jdir/bench.json"; then
    pass
else
    fail "--json-out: exit $status, $(cat "$jdir/bench.json" 2>&1): $out"
fi
rm -rf "$jdir"
expect "json-out unwritable" 1 'cannot write /nonexistent-dir/b.json' "$engine" bench "${one[@]}" \
    --json-out /nonexistent-dir/b.json

# ---- errors ----
# --device cuda: a clear error where this build or machine has no usable GPU; where it has one, a run
cuda=$("$engine" bench "${tiny[@]}" --device cuda 2>&1)
status=$?
if [ "$status" = 0 ] || { [ "$status" = 1 ] && grep -Eq '^sdtune-engine bench: .*(CUDA|cuda)' <<<"$cuda"; }; then
    pass
else
    fail "--device cuda: exit $status: $cuda"
fi
expect "bad resolution" 1 'resolution 60: must be a positive multiple of 64' "$engine" bench --arch sd15-tiny --res 60
expect "bad batch" 2 '--batch 1,x: not a valid value' "$engine" bench --batch 1,x
expect "bad mode" 2 '--mode half: not a valid value' "$engine" bench --mode half
expect "bad precision" 2 '--precision fp8: not a valid value' "$engine" bench --precision fp8
expect "precision without value" 2 '--precision needs a value' "$engine" bench --precision
expect "bad checkpointing" 2 '--checkpointing yes: not a valid value' "$engine" bench --checkpointing yes
expect "full in bf16" 2 '--precision bf16: --mode full trains in fp32 only' "$engine" bench --mode full \
    --precision bf16
expect "full with fp8" 2 '--fp8: frozen weights in fp8 are for --mode lora only' "$engine" bench --mode full --fp8
expect "unknown arch" 2 "unknown arch 'sd99'" "$engine" bench --arch sd99
expect "unknown option" 2 "unknown option '--bogus'" "$engine" bench --bogus
expect "help" 0 '^usage: sdtune-engine bench' "$engine" bench --help

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
