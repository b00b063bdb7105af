#!/usr/bin/env python3
"""sdtune against the PyTorch peer, per batch size: one table from the two JSON files of one GPU session.

    python3 tools/bench/compare_peer.py --sdtune bench.json --peer peer.json [--json compare.json]

bench.json is `sdtune-engine bench ... --json` (engine/cli_bench.c), peer.json is
`tools/bench/peer_unet_lora.py ... --json FILE`. For every batch size in either file the table gives
images/s of both, the speed ratio sdtune/PyTorch (above 1: sdtune is faster), sdtune's TFLOP/s and MFU
(against the GEMM peak it measured in its compute dtype), the peak memory of both (sdtune: its engine's
allocator high-water mark, PyTorch: torch.cuda.max_memory_allocated; both include the model's weights)
with their ratio (below 1: sdtune needs less), and sdtune's memory plan. Settings that differ between the
two runs (precision, LoRA rank, alpha, module count, gradient checkpointing) are listed first: a ratio
between unlike runs says little. Exit status 0, or 2 when a file cannot be read.
"""

import argparse
import json
import sys

GIB = float(2**30)


def load(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"compare_peer: cannot read the {what} results {path}: {e}", file=sys.stderr)
        sys.exit(2)


def differences(sdtune, peer):
    """Settings of the two runs that do not match, as lines."""
    args = peer.get("args", {})
    out = []

    def check(name, mine, theirs):
        if mine is not None and theirs is not None and mine != theirs:
            out.append(f"{name}: sdtune {mine}, PyTorch {theirs}")

    check("precision", sdtune.get("precision"), "bf16" if args.get("autocast", True) else "fp32")
    check("LoRA rank", sdtune.get("lora_rank"), args.get("rank"))
    alpha = sdtune.get("lora_alpha")
    check("LoRA alpha", None if alpha is None else float(alpha),
          None if args.get("alpha") is None else float(args["alpha"]))
    check("LoRA modules", sdtune.get("lora_modules"), peer.get("lora_modules"))
    check("gradient checkpointing", sdtune.get("gradient_checkpointing"), args.get("grad_ckpt"))
    check("resolution", sdtune.get("resolution"), args.get("res"))
    if sdtune.get("fp8"):
        out.append("frozen UNet weights: sdtune fp8 e4m3, PyTorch bf16")
    return out


def ratio(a, b):
    return a / b if a and b else None


def rows(sdtune, peer):
    mine = {r["batch"]: r for r in sdtune.get("results", [])}
    theirs = {r["batch"]: r for r in peer.get("results", [])}
    out = []
    for batch in sorted(set(mine) | set(theirs)):
        s, p = mine.get(batch, {}), theirs.get(batch, {})
        peak = s.get("engine_peak_bytes", s.get("peak_bytes"))
        peak_gib = peak / GIB if peak else None
        plan_gib = s["plan_bytes"] / GIB if s.get("plan_bytes") else None
        out.append({
            "batch": batch,
            "sdtune_images_per_second": s.get("images_per_second"),
            "peer_images_per_second": p.get("images_per_s"),
            "speed_ratio": ratio(s.get("images_per_second"), p.get("images_per_s")),
            "sdtune_tflops": s["flops_per_second"] / 1e12 if s.get("flops_per_second") else None,
            "sdtune_mfu": s.get("mfu"),
            "sdtune_peak_gib": peak_gib,
            "peer_peak_gib": p.get("peak_vram_gib"),
            "memory_ratio": ratio(peak_gib, p.get("peak_vram_gib")),
            "sdtune_plan_gib": plan_gib,
        })
    return out


def cell(value, fmt):
    return "-" if value is None else fmt.format(value)


def table(sdtune, peer, results):
    lines = []
    args = peer.get("args", {})
    lines.append(f"# sdtune: {sdtune.get('arch')} {sdtune.get('resolution')} px, {sdtune.get('mode')}, "
                 f"{sdtune.get('precision')}{' + fp8 weights' if sdtune.get('fp8') else ''}, LoRA rank "
                 f"{sdtune.get('lora_rank')} alpha {sdtune.get('lora_alpha')}, {sdtune.get('lora_modules')} "
                 f"modules, device {sdtune.get('device')}, GEMM peak "
                 f"{cell(sdtune.get('gemm_peak_flops', 0) / 1e12 or None, '{:.1f}')} TFLOP/s")
    lines.append(f"# PyTorch: LoRA rank {args.get('rank')} alpha {args.get('alpha')} ({args.get('targets')}, "
                 f"{peer.get('lora_modules', '?')} modules), grad ckpt {'on' if args.get('grad_ckpt') else 'off'}")
    for d in differences(sdtune, peer):
        lines.append(f"# differs: {d}")
    lines.append("| batch | sdtune img/s | PyTorch img/s | sdtune/PyTorch | sdtune TFLOP/s | sdtune MFU | "
                 "sdtune peak GiB | PyTorch peak GiB | memory sdtune/PyTorch | sdtune plan GiB |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        lines.append("| " + " | ".join([
            str(r["batch"]),
            cell(r["sdtune_images_per_second"], "{:.2f}"),
            cell(r["peer_images_per_second"], "{:.2f}"),
            cell(r["speed_ratio"], "{:.2f}x"),
            cell(r["sdtune_tflops"], "{:.4g}"),
            cell(None if r["sdtune_mfu"] is None else 100 * r["sdtune_mfu"], "{:.1f}%"),
            cell(r["sdtune_peak_gib"], "{:.2f}"),
            cell(r["peer_peak_gib"], "{:.2f}"),
            cell(r["memory_ratio"], "{:.2f}x"),
            cell(r["sdtune_plan_gib"], "{:.2f}"),
        ]) + " |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sdtune", required=True, help="sdtune-engine bench --json output")
    p.add_argument("--peer", required=True, help="peer_unet_lora.py --json output")
    p.add_argument("--json", default="", help="also write the rows to this file")
    args = p.parse_args()
    sdtune, peer = load(args.sdtune, "sdtune"), load(args.peer, "PyTorch")
    try:
        results = rows(sdtune, peer)
    except (KeyError, TypeError, AttributeError) as e:
        print(f"compare_peer: unexpected results format: {e!r}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(table(sdtune, peer, results)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"differences": differences(sdtune, peer), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
