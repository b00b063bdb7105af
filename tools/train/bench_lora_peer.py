#!/usr/bin/env python3
"""A LoRA training step, PyTorch against sdtune, measured in the same run (developer-only; docs/perf.md,
"LoRA training step vs PyTorch (CPU)").

PyTorch runs the step of make_lora_fixtures.py (imported: its model loading, kohya LoRA network and
attention patch) on the tiny SD1.5 model: text encoder with its LoRA -> context (clip_skip 1), noisy latents
(DDPM scaled_linear add_noise), UNet with its LoRA, MSE against the noise, backward, clip_grad_norm_ (1.0),
AdamW (weight decay 0.01; text encoder 5e-5, UNet 1e-4), zero_grad. Network: dim 4, alpha 2 on the attention
blocks (192 UNet + 18 text-encoder modules), as the reference. The inputs are random at the chosen batch
and latent size. Then the C bench (tests/bench/bench_lora_step.c) runs as a subprocess with the same
settings, and one table is printed: configuration, PyTorch ms/step, sdtune ms/step (medians of the timed
steps) and the ratio PyTorch / sdtune (> 1: sdtune is faster). With --rounds R every configuration is
measured R times, the two sides back to back, and each cell keeps its best median (the machine is shared).

Usage (from the repository root, after `make build` or any build of the bench_lora_step target):
    /work/golden-venv/bin/python tools/train/bench_lora_peer.py [--bench build/release/bin/bench_lora_step]
        [--rounds 2] [--latents 8,16,32] [--batches 1,4] [--threads 1,2] [--unet-only] [--steps N]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_lora_fixtures as ref  # noqa: E402  (also patches diffusers' attention scores, as the reference)

# Timed steps per latent side when --steps is not given: a few seconds per cell on a 2-core machine.
DEFAULT_STEPS = {8: 20, 16: 8, 32: 3}
WARMUP = 2


def make_inputs(batch, side, sets=4, seed=3601):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(sets, batch, 4, side, side, generator=gen)
    noise = torch.randn(sets, batch, 4, side, side, generator=gen)
    timesteps = torch.randint(0, 1000, (sets, batch), generator=gen)
    ids = torch.full((sets, batch, ref.TOKENS), ref.EOS, dtype=torch.int64)
    for s in range(sets):
        for b in range(batch):
            n = int(torch.randint(1, 40, (1,), generator=gen))
            ids[s, b, 0] = ref.BOS
            ids[s, b, 1:1 + n] = torch.randint(0, ref.BOS, (n,), generator=gen)
    return latents, noise, timesteps, ids


def torch_median_ms(unet, text, batch, side, steps, unet_only):
    """Median and best ms of `steps` training steps after WARMUP, with a fresh network and optimizer."""
    torch.manual_seed(ref.SEED_NETWORK)
    te = [] if unet_only else ref.create_modules("lora_te", text, ref.TE_TARGETS, 0, 0)
    un = ref.create_modules("lora_unet", unet, ref.UNET_TARGETS, 0, 0)
    te_params = [p for m in te for p in (m.lora_down.weight, m.lora_up.weight)]
    unet_params = [p for m in un for p in (m.lora_down.weight, m.lora_up.weight)]
    groups = [{"params": unet_params, "lr": ref.UNET_LR}]
    if te_params:
        groups.insert(0, {"params": te_params, "lr": ref.TE_LR})
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    params = te_params + unet_params
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False)
    latents, noise, timesteps, ids = make_inputs(batch, side)
    unet.train()
    text.train()
    frozen = None
    if unet_only:
        with torch.no_grad():
            frozen = text(ids[0]).last_hidden_state
    times = []
    for i in range(WARMUP + steps):
        s = 0 if unet_only else i % latents.shape[0]
        start = time.perf_counter()
        context = frozen if unet_only else text(ids[s]).last_hidden_state
        noisy = scheduler.add_noise(latents[s], noise[s], timesteps[s])
        pred = unet(noisy, timesteps[s], context).sample
        loss = F.mse_loss(pred.float(), noise[s].float(), reduction="none").mean([1, 2, 3]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, ref.MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = 1000.0 * (time.perf_counter() - start)
        if i >= WARMUP:
            times.append(elapsed)
    ref.detach_network(te + un)
    return statistics.median(times), min(times)


def sdtune_median_ms(bench, batch, side, threads, steps, unet_only):
    cmd = [bench, "--steps", str(steps), "--warmup", str(WARMUP), "--batch", str(batch), "--latent", str(side),
           "--threads", str(threads), "--json"] + (["--unet-only"] if unet_only else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["median_ms"], result["best_ms"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", default="build/release/bin/bench_lora_step")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--latents", default="8,16,32")
    p.add_argument("--batches", default="1,4")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--steps", type=int, default=0, help="timed steps per cell (0: by latent size)")
    p.add_argument("--unet-only", action="store_true")
    args = p.parse_args()
    if not os.path.isfile(args.bench):
        sys.exit("%s not found: build the bench_lora_step target or pass --bench" % args.bench)
    latents = [int(v) for v in args.latents.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    thread_counts = [int(v) for v in args.threads.split(",")]

    unet, text = ref.load_models()
    configs = [(t, b, s) for t in thread_counts for b in batches for s in latents]
    best = {}  # config -> [torch ms, sdtune ms], best median over the rounds
    for r in range(args.rounds):
        for t, b, s in configs:
            steps = args.steps or DEFAULT_STEPS.get(s, 5)
            torch.set_num_threads(t)
            pt, _ = torch_median_ms(unet, text, b, s, steps, args.unet_only)
            sd, _ = sdtune_median_ms(args.bench, b, s, t, steps, args.unet_only)
            cell = best.setdefault((t, b, s), [pt, sd])
            cell[0], cell[1] = min(cell[0], pt), min(cell[1], sd)
            print("round %d: threads %d, batch %d, latent %d: PyTorch %.2f ms, sdtune %.2f ms"
                  % (r + 1, t, b, s, pt, sd), file=sys.stderr)
    what = "UNet only (frozen text encoder)" if args.unet_only else "text encoder + UNet"
    print("LoRA training step, sd15_tiny, %s; torch %s; best of %d rounds of the median ms/step" % (
        what, torch.__version__, args.rounds))
    print()
    print("| threads | batch | latent | timed steps | PyTorch ms/step | sdtune ms/step | PyTorch / sdtune |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for t, b, s in configs:
        pt, sd = best[(t, b, s)]
        steps = args.steps or DEFAULT_STEPS.get(s, 5)
        print("| %d | %d | %dx%d | %d | %.1f | %.1f | %.2f |" % (t, b, s, s, steps, pt, sd, pt / sd))


if __name__ == "__main__":
    main()
