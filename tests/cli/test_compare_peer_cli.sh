#!/usr/bin/env bash
# tools/bench/compare_peer.py on the JSON of a real `sdtune-engine bench --json` run of the tiny model and
# a hand-made peer file: one row per batch size of either file, the ratios computed from the two, the
# settings that differ listed, and unreadable input refused. Skipped (77) without python3.
set -uo pipefail
engine=$1 script=$2
command -v python3 >/dev/null || { echo "no python3: skipped"; exit 77; }
passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$*"
}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"$engine" bench --arch sd15-tiny --res 64 --batch 1,2 --steps 1 --warmup 0 --threads 1 --json \
    >"$dir/bench.json" 2>/dev/null && pass || fail "bench --json"
# the peer's format (peer_unet_lora.py --json): batch 1 shared, batch 4 only here; a different rank
cat >"$dir/peer.json" <<'JSON'
{"args": {"rank": 4, "alpha": 16.0, "targets": "kohya", "grad_ckpt": false, "res": 64, "autocast": true},
 "lora_modules": 192,
 "results": [{"batch": 1, "step_ms": 100.0, "images_per_s": 10.0, "peak_vram_gib": 0.5, "loss": 1.0},
             {"batch": 4, "step_ms": 200.0, "images_per_s": 20.0, "peak_vram_gib": 1.0, "loss": 1.0}]}
JSON
out=$(python3 "$script" --sdtune "$dir/bench.json" --peer "$dir/peer.json" --json "$dir/out.json" 2>&1)
status=$?
[ "$status" = 0 ] && pass || fail "compare_peer exit $status: $out"
grep -Eq '^\| batch \| sdtune img/s \| PyTorch img/s \| sdtune/PyTorch \|' <<<"$out" && pass ||
    fail "no table header: $out"
grep -Eq '^# differs: LoRA rank: sdtune 32, PyTorch 4$' <<<"$out" && pass || fail "rank difference not listed: $out"
grep -Eq '^# differs: precision: sdtune fp32, PyTorch bf16$' <<<"$out" && pass ||
    fail "precision difference not listed: $out"
grep -Eq '^\| 4 \| - \| 20\.00 \| - \|' <<<"$out" && pass || fail "the peer-only batch 4 row: $out"
if python3 -c '
import json, sys
bench, out = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rows = {r["batch"]: r for r in out["results"]}
assert sorted(rows) == [1, 2, 4], rows
mine = {r["batch"]: r for r in bench["results"]}
r1 = rows[1]
assert abs(r1["speed_ratio"] - mine[1]["images_per_second"] / 10.0) < 1e-9, r1
assert abs(r1["memory_ratio"] - mine[1]["engine_peak_bytes"] / 2**30 / 0.5) < 1e-9, r1
assert abs(r1["sdtune_plan_gib"] - mine[1]["plan_bytes"] / 2**30) < 1e-9, r1
assert r1["sdtune_mfu"] == mine[1]["mfu"], r1
assert rows[2]["speed_ratio"] is None and rows[4]["sdtune_images_per_second"] is None, rows
' "$dir/bench.json" "$dir/out.json"; then
    pass
else
    fail "compare JSON: $(cat "$dir/out.json")"
fi
python3 "$script" --sdtune "$dir/missing.json" --peer "$dir/peer.json" >/dev/null 2>&1
[ $? = 2 ] && pass || fail "a missing file is not refused with 2"
echo '{not json' >"$dir/bad.json"
out=$(python3 "$script" --sdtune "$dir/bench.json" --peer "$dir/bad.json" 2>&1)
status=$?
[ "$status" = 2 ] && grep -q 'cannot read the PyTorch results' <<<"$out" && pass || fail "bad JSON: $status $out"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
