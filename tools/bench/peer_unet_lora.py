#!/usr/bin/env python3
"""The PyTorch peer of `sdtune-engine bench --arch sd15 --mode lora`: the same LoRA training step on the
same GPU, so that the two can be compared in one run (docs/cuda.md, "The PyTorch peer").

What one step is (the way kohya-ss/sd-scripts trains a LoRA with cached latents, mixed precision bf16):
  - diffusers' UNet2DConditionModel at the SD1.5 configuration, randomly initialised (nothing is
    downloaded), its frozen weights stored in bf16;
  - LoRA rank 32, alpha 16 (scale alpha/rank: sdtune's network_dim and network_alpha defaults, which
    `sdtune-engine bench` trains) on every Linear and Conv2d inside each Transformer2DModel,
    as kohya's networks.lora targets them for a UNet: proj_in, attn1/attn2 to_q/to_k/to_v/to_out.0,
    ff.net.0.proj, ff.net.2, proj_out, 12 per block, 192 for SD1.5 (--targets attn: the 8 attention
    projections only); LoRA weights in fp32, down initialised Kaiming-uniform, up zero, like kohya;
  - bf16 autocast, PyTorch's scaled_dot_product_attention (diffusers' AttnProcessor2_0);
  - cached latents: random [B, 4, 64, 64] latents and random [B, 77, 768] text embeddings, the DDPM
    forward process at random timesteps, MSE against the noise;
  - AdamW (fused where the PyTorch version has it) on the LoRA parameters only.

Timing: warm-up steps, then timed steps between two CUDA events (the whole run of steps, divided by
their number). Peak VRAM is torch.cuda.max_memory_allocated over the warm-up and timed steps of that
batch size (the model's weights included). TFLOP/s counts the analytic training FLOPs per image of
../shared/specs/perf_anchors.md section 1.3 (SD1.5 at 512 px: LoRA 1.80 TFLOP, LoRA with gradient
checkpointing 2.60 TFLOP); MFU is against the H200's dense bf16 peak of 989 TFLOP/s (the same file's
"Hardware assumptions").

    python3 tools/bench/peer_unet_lora.py --batch 1,4,8 --steps 20
    python3 tools/bench/peer_unet_lora.py --batch 1,4,8 --sdtune 1=12.5,4=40,8=61   # adds sdtune/PyTorch
    python3 tools/bench/peer_unet_lora.py --device cpu --tiny                       # a quick check anywhere

diffusers is not installed on the GPU machine: tools/bench/README.md says how to bring it.
"""

import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# perf_anchors.md section 1.3: training FLOPs per image at 512 px (64x64 latents), latents cached.
TRAIN_TFLOP_PER_IMAGE = {"lora": 1.80, "lora+ckpt": 2.60}
# perf_anchors.md, "Hardware assumptions": the H200's dense bf16 peak.
PEAK_TFLOPS = 989.0


def sd15_config():
    """diffusers' UNet2DConditionModel arguments for Stable Diffusion 1.5 (its unet/config.json)."""
    return dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        center_input_sample=False,
        flip_sin_to_cos=True,
        freq_shift=0,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        downsample_padding=1,
        mid_block_scale_factor=1,
        act_fn="silu",
        norm_num_groups=32,
        norm_eps=1e-5,
        cross_attention_dim=768,
        attention_head_dim=8,
        use_linear_projection=False,
    )


def tiny_config():
    """A few-channel UNet of the same structure, for checking the script on a CPU."""
    cfg = sd15_config()
    cfg.update(
        sample_size=16,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    return cfg


class LoRA(nn.Module):
    """kohya's LoRA module around a frozen Linear or 1x1 Conv2d: y = base(x) + up(down(x)) * alpha / rank."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        if isinstance(base, nn.Linear):
            self.down = nn.Linear(base.in_features, rank, bias=False)
            self.up = nn.Linear(rank, base.out_features, bias=False)
        elif isinstance(base, nn.Conv2d) and base.kernel_size == (1, 1):
            self.down = nn.Conv2d(base.in_channels, rank, 1, bias=False)
            self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            raise ValueError(f"LoRA on {type(base).__name__} {getattr(base, 'kernel_size', '')} is not supported")
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.scale = alpha / rank

    def forward(self, x, *args, **kwargs):
        # diffusers passes extra arguments (a LoRA scale) to some projections in older versions.
        return self.base(x) + self.up(self.down(x)) * self.scale


ATTN_NAMES = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
              "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")


def add_lora(unet, rank, alpha, targets):
    """Wraps kohya's UNet targets; returns the wrapped module names."""
    chosen = []
    for name, module in unet.named_modules():
        if type(module).__name__ != "Transformer2DModel":
            continue
        for sub, child in module.named_modules():
            if not isinstance(child, (nn.Linear, nn.Conv2d)):
                continue
            if targets == "attn" and not sub.endswith(ATTN_NAMES):
                continue
            chosen.append(f"{name}.{sub}")
    for full in chosen:
        parent_name, _, leaf = full.rpartition(".")
        parent = unet.get_submodule(parent_name)
        setattr(parent, leaf, LoRA(getattr(parent, leaf), rank, alpha))
    return chosen


def add_peft_lora(unet, rank, alpha, targets):
    """The same targets through peft (installed on the GPU machine), for a second opinion."""
    from peft import LoraConfig, inject_adapter_in_model

    names = []
    for name, module in unet.named_modules():
        if type(module).__name__ != "Transformer2DModel":
            continue
        for sub, child in module.named_modules():
            if isinstance(child, (nn.Linear, nn.Conv2d)) and (targets != "attn" or sub.endswith(ATTN_NAMES)):
                names.append(f"{name}.{sub}")
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=names, init_lora_weights=True)
    inject_adapter_in_model(config, unet)
    return names


def noise_schedule(device):
    """SD's DDPM schedule ("scaled_linear", 0.00085 to 0.012, 1000 steps): cumulative alpha products."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(device=device, dtype=torch.float32)


def parse_pairs(text):
    """"1=12.5,4=40" -> {1: 12.5, 4: 40.0}."""
    out = {}
    for item in filter(None, (text or "").split(",")):
        batch, _, value = item.partition("=")
        out[int(batch)] = float(value)
    return out


def run_batch(args, unet, params, optimizer, alphas, batch, cfg, device, dtype):
    latent = cfg["sample_size"]
    gen = torch.Generator(device="cpu").manual_seed(1234 + batch)
    # Cached latents and text embeddings: a few distinct batches, cycled, like a data loader's.
    pool = []
    for _ in range(4):
        pool.append((
            torch.randn(batch, 4, latent, latent, generator=gen).to(device),
            torch.randn(batch, 77, cfg["cross_attention_dim"], generator=gen).to(device),
        ))

    def step(i):
        latents, text = pool[i % len(pool)]
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (batch,), device=device)
        a = alphas[t].view(batch, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=args.autocast):
            pred = unet(noisy, t, encoder_hidden_states=text).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup):
        loss = step(i)
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    else:
        t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(args.warmup + i)
    if cuda:
        end.record()
        torch.cuda.synchronize()
        total_ms = start.elapsed_time(end)
    else:
        total_ms = (time.perf_counter() - t0) * 1000.0
    loss = float(loss)
    if not math.isfinite(loss):
        raise RuntimeError(f"batch {batch}: the loss is {loss}")
    step_ms = total_ms / args.steps
    result = {
        "batch": batch,
        "step_ms": step_ms,
        "images_per_s": batch * 1000.0 / step_ms,
        "peak_vram_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
        "loss": loss,
    }
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", default="1,4,8", help="batch sizes, comma-separated (default 1,4,8)")
    p.add_argument("--res", type=int, default=512, help="image resolution; latents are res/8 (default 512)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per batch size (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    # sdtune's config defaults (network_dim 32, network_alpha 16), as `sdtune-engine bench` trains them.
    p.add_argument("--rank", type=int, default=32, help="LoRA rank (default 32, sdtune's network_dim)")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (default 16, sdtune's network_alpha)")
    p.add_argument("--targets", choices=("kohya", "attn"), default="kohya",
                   help="kohya: the 12 Linear/Conv2d of every transformer block (default); attn: q/k/v/out")
    p.add_argument("--lora", choices=("kohya", "peft"), default="kohya",
                   help="the small LoRA module here (default) or peft's")
    p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing in the UNet")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--tiny", action="store_true", help="a tiny UNet of the same structure (checks the script)")
    p.add_argument("--sdtune", default="", help="sdtune's images/s per batch, e.g. 1=12.5,4=40: adds ratios")
    p.add_argument("--json", default="", help="also write the results to this file")
    args = p.parse_args()

    from diffusers import UNet2DConditionModel

    import diffusers

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("peer_unet_lora: no CUDA device visible to PyTorch (use --device cpu --tiny to check the script)")
    cfg = tiny_config() if args.tiny else sd15_config()
    if not args.tiny:
        cfg["sample_size"] = args.res // 8
    dtype = torch.bfloat16
    # Autocast on a CPU with torch < 2 supports bf16 only partly; the tiny check then runs in fp32.
    args.autocast = device.type == "cuda" or int(torch.__version__.split(".")[0]) >= 2
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    unet = UNet2DConditionModel(**cfg)
    unet.requires_grad_(False)
    if hasattr(F, "scaled_dot_product_attention"):
        from diffusers.models.attention_processor import AttnProcessor2_0

        unet.set_attn_processor(AttnProcessor2_0())
        attention = "SDPA (AttnProcessor2_0)"
    else:
        attention = "diffusers AttnProcessor (this PyTorch has no SDPA)"
    if args.grad_ckpt:
        unet.enable_gradient_checkpointing()
    # The frozen base in bf16, as kohya keeps it under --mixed_precision bf16; LoRA weights stay fp32.
    if args.autocast:
        unet.to(dtype)
    if args.lora == "peft":
        names = add_peft_lora(unet, args.rank, args.alpha, args.targets)
        params = [q for n, q in unet.named_parameters() if "lora_" in n]
        for q in params:
            q.data = q.data.float()
            q.requires_grad_(True)
    else:
        names = add_lora(unet, args.rank, args.alpha, args.targets)
        params = [q for m in unet.modules() if isinstance(m, LoRA) for q in (m.down.weight, m.up.weight)]
        for q in params:
            q.data = q.data.float()
            q.requires_grad_(True)
    unet.to(device)
    if args.channels_last:
        unet.to(memory_format=torch.channels_last)
    unet.train()
    if args.compile:
        unet = torch.compile(unet)
    try:
        optimizer = torch.optim.AdamW(params, lr=args.lr, fused=device.type == "cuda")
    except (TypeError, RuntimeError):
        optimizer = torch.optim.AdamW(params, lr=args.lr)
    alphas = noise_schedule(device)

    n_lora = sum(q.numel() for q in params)
    n_base = sum(q.numel() for q in unet.parameters()) - n_lora
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# PyTorch {torch.__version__}, diffusers {diffusers.__version__}, "
          f"cuDNN {torch.backends.cudnn.version() if device.type == 'cuda' else '-'}, {gpu}")
    print(f"# UNet {'tiny' if args.tiny else 'SD1.5'} {n_base / 1e6:.1f} M frozen params "
          f"({'bf16' if args.autocast else 'fp32'}), latents {cfg['sample_size']}x{cfg['sample_size']}, "
          f"attention: {attention}")
    print(f"# LoRA ({args.lora}) rank {args.rank} alpha {args.alpha:g} on {len(names)} modules "
          f"({args.targets}), {n_lora / 1e6:.2f} M trainable; AdamW; autocast "
          f"{'bf16' if args.autocast else 'off'}; grad ckpt {'on' if args.grad_ckpt else 'off'}; "
          f"warm-up {args.warmup}, timed {args.steps} steps")

    flop_key = "lora+ckpt" if args.grad_ckpt else "lora"
    tflop = TRAIN_TFLOP_PER_IMAGE[flop_key] if (not args.tiny and args.res == 512) else None
    sdtune = parse_pairs(args.sdtune)
    results = []
    header = "| batch | images/s | step ms | peak VRAM GiB | TFLOP/s | MFU |" + (" sdtune images/s | sdtune/PyTorch |" if sdtune else "")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for batch in [int(b) for b in args.batch.split(",") if b]:
        r = run_batch(args, unet, params, optimizer, alphas, batch, cfg, device, dtype)
        r["tflops"] = tflop * r["images_per_s"] if tflop else None
        r["mfu"] = r["tflops"] / PEAK_TFLOPS if tflop and device.type == "cuda" else None
        row = (f"| {batch} | {r['images_per_s']:.2f} | {r['step_ms']:.1f} | "
               f"{r['peak_vram_gib']:.2f} | " if r["peak_vram_gib"] is not None else
               f"| {batch} | {r['images_per_s']:.2f} | {r['step_ms']:.1f} | - | ")
        row += f"{r['tflops']:.1f} | " if r["tflops"] else "- | "
        row += f"{100 * r['mfu']:.1f}% |" if r["mfu"] else "- |"
        if sdtune:
            mine = sdtune.get(batch)
            r["sdtune_images_per_s"] = mine
            r["ratio"] = mine / r["images_per_s"] if mine else None
            row += f" {mine:.2f} | {r['ratio']:.2f}x |" if mine else " - | - |"
        print(row, flush=True)
        results.append(r)
    if tflop:
        print(f"# TFLOP/s: {tflop} TFLOP per image ({flop_key}, perf_anchors.md sec. 1.3); "
              f"MFU against {PEAK_TFLOPS:g} TFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "lora_modules": len(names), "trainable_params": n_lora,
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
