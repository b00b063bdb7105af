#!/usr/bin/env python3
"""Writes tests/data/train/objective.json, the reference values tests/train/test_objective.c checks the
training objective (train/objective*.c) against.

The schedule comes from two places: diffusers' DDPMScheduler (float32, as kohya trains with it) and the
same formulas evaluated in float64, which is what sdtune keeps. The rest (noise offset, multires noise,
Huber thresholds, loss weightings, loss types, masked mean, gradients) follows kohya's sd-scripts
formulas, written here with torch in float64 on float32-rounded inputs. Arrays are stored channels-last
[B, h, w, C] like the C code's latents.

Run: /work/golden-venv/bin/python tools/train/make_objective_fixtures.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "train", "objective.json")
T = 1000


def schedule64(zero_terminal_snr):
    i = torch.arange(T, dtype=torch.float64)
    a, b = math.sqrt(0.00085), math.sqrt(0.012)
    betas = (a + (b - a) * i / (T - 1)) ** 2
    ac = torch.cumprod(1.0 - betas, 0)
    snr = ac / (1.0 - ac)
    if zero_terminal_snr:
        s = ac.sqrt()
        s0, sT = s[0].clone(), s[-1].clone()
        s = (s - sT) * (s0 / (s0 - sT))
        acn = s**2
        alphas = torch.cat([acn[:1], acn[1:] / acn[:-1]])
        ac = torch.cumprod(alphas, 0)
    return ac, snr


def nhwc(x):  # [B, C, H, W] -> flat list in [B, H, W, C] order
    return x.permute(0, 2, 3, 1).reshape(-1).tolist()


def f32(x):
    return x.float().double()


def main():
    g = torch.Generator().manual_seed(1234)
    out = {}

    # ---- schedule ----
    idx = list(range(0, T, 37)) + [998, 999]
    ac, snr = schedule64(False)
    acz, _ = schedule64(True)
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=T, clip_sample=False)
    schedz = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                           num_train_timesteps=T, clip_sample=False, rescale_betas_zero_snr=True)
    out["schedule"] = {
        "index": idx,
        "alphas_cumprod": [ac[i].item() for i in idx],
        "alphas_cumprod_zero_terminal_snr": [acz[i].item() for i in idx],
        "snr": [snr[i].item() for i in idx],
        "diffusers_alphas_cumprod": [sched.alphas_cumprod[i].item() for i in idx],
        "diffusers_alphas_cumprod_zero_terminal_snr": [schedz.alphas_cumprod[i].item() for i in idx],
    }

    # ---- forward process ----
    B, C, H, W = 2, 4, 4, 6
    x0 = f32(torch.randn(B, C, H, W, generator=g, dtype=torch.float64))
    noise = f32(torch.randn(B, C, H, W, generator=g, dtype=torch.float64))
    ts = torch.tensor([10, 900])
    sa = ac[ts].sqrt().view(-1, 1, 1, 1)
    sb = (1 - ac[ts]).sqrt().view(-1, 1, 1, 1)
    out["forward"] = {
        "shape": [B, H, W, C], "t": ts.tolist(), "x0": nhwc(x0), "noise": nhwc(noise),
        "noisy": nhwc(sa * x0 + sb * noise), "velocity": nhwc(sa * noise - sb * x0),
        "diffusers_noisy": nhwc(sched.add_noise(x0.float(), noise.float(), ts).double()),
        "diffusers_velocity": nhwc(sched.get_velocity(x0.float(), noise.float(), ts).double()),
    }

    # ---- noise offset (kohya apply_noise_offset), plain and adaptive ----
    normals = f32(torch.randn(B, C, 1, 1, generator=g, dtype=torch.float64))
    offs = {"shape": [B, H, W, C], "latents": nhwc(x0), "noise": nhwc(noise),
            "normals": normals.reshape(-1).tolist(), "offset": 0.1, "adaptive_scale": 0.05}
    offs["plain"] = nhwc(noise + 0.1 * normals)
    o = torch.clamp(0.1 + 0.05 * x0.mean(dim=(2, 3), keepdim=True).abs(), min=0.0)
    offs["adaptive"] = nhwc(noise + o * normals)
    o = torch.clamp(0.1 + (-3.0) * x0.mean(dim=(2, 3), keepdim=True).abs(), min=0.0)
    offs["adaptive_negative_scale"] = -3.0
    offs["adaptive_negative"] = nhwc(noise + o * normals)
    out["noise_offset"] = offs

    # ---- multires (kohya pyramid_noise_like with given ratios and level noise) ----
    MB, MC, MH, MW = 2, 4, 8, 6
    base = f32(torch.randn(MB, MC, MH, MW, generator=g, dtype=torch.float64))
    ratios = [2.0 + 2.0 * torch.rand(1, generator=g, dtype=torch.float64).item() for _ in range(4)]
    discount = 0.3
    acc = base.clone()
    levels = []
    for i, r in enumerate(ratios):
        wn, hn = max(1, int(MH / (r**i))), max(1, int(MW / (r**i)))
        lv = f32(torch.randn(MB, MC, wn, hn, generator=g, dtype=torch.float64))
        levels.append({"size": [wn, hn], "noise": nhwc(lv)})
        acc = acc + F.interpolate(lv, size=(MH, MW), mode="bilinear") * discount**i
        if wn == 1 or hn == 1:
            break
    out["multires"] = {"shape": [MB, MH, MW, MC], "noise": nhwc(base), "ratios": ratios[:len(levels)],
                       "discount": discount, "levels": levels,
                       "result": nhwc(acc / acc.std())}

    # ---- losses ----
    LB, LC, LH, LW = 3, 4, 2, 3
    pred = f32(torch.randn(LB, LC, LH, LW, generator=g, dtype=torch.float64))
    target = f32(torch.randn(LB, LC, LH, LW, generator=g, dtype=torch.float64))
    mask = f32(torch.rand(LB, 1, LH, LW, generator=g, dtype=torch.float64))
    lt = torch.tensor([0, 421, 999])
    prior = torch.tensor([1.0, 0.5, 1.0], dtype=torch.float64)

    def huber_c(schedule, c, scale, t, acs):
        if schedule == "exponential":
            alpha = -math.log(c) / T
            return torch.exp(-alpha * t.double()) * scale
        if schedule == "snr":
            a = acs[t]
            sig = ((1.0 - a) / a) ** 0.5
            return (1 - c) / (1 + sig) ** 2 + c
        return torch.full((len(t),), c * scale, dtype=torch.float64)

    def loss_case(opts):
        v = opts.get("v", False)
        acs = acz if opts.get("zero_terminal_snr") else ac
        p = pred.clone().requires_grad_(True)
        c = huber_c(opts.get("huber_schedule", "snr"), opts.get("huber_c", 0.1), opts.get("huber_scale", 1.0),
                    lt, acs).view(-1, 1, 1, 1)
        d = p - target
        kind = opts.get("loss_type", "l2")
        if kind == "l2":
            el = d**2
        elif kind == "l1":
            el = d.abs()
        elif kind == "huber":
            el = 2 * c * (torch.sqrt(d**2 + c**2) - c)
        else:
            el = 2 * (torch.sqrt(d**2 + c**2) - c)
        if opts.get("mask"):
            el = el * mask
        loss = el.mean([1, 2, 3])
        if opts.get("prior"):
            loss = loss * prior
        s = snr[lt]  # kohya's all_snr: the original schedule
        if opts.get("min_snr_gamma"):
            m = torch.minimum(s, torch.full_like(s, opts["min_snr_gamma"]))
            loss = loss * (m / (s + 1) if v else m / s)
        sc = torch.minimum(s, torch.full_like(s, 1000.0))
        if opts.get("scale_v_pred"):
            loss = loss * (sc / (sc + 1))
        if opts.get("v_pred_like"):
            loss = loss + loss / (sc / (sc + 1)) * opts["v_pred_like"]
        if opts.get("debiased"):
            loss = loss * (1 / (sc + 1) if v else 1 / torch.sqrt(sc))
        total = loss.mean()
        total.backward()
        return {"options": opts, "huber_c": c.view(-1).tolist(), "per_sample": loss.detach().tolist(),
                "loss": total.item(), "grad": nhwc(p.grad)}

    cases = [
        {"loss_type": "l2"},
        {"loss_type": "l1", "mask": True, "prior": True},
        {"loss_type": "huber", "huber_schedule": "snr", "huber_c": 0.1},
        {"loss_type": "huber", "huber_schedule": "snr", "huber_c": 0.3, "zero_terminal_snr": True, "v": True},
        {"loss_type": "huber", "huber_schedule": "exponential", "huber_c": 0.1, "huber_scale": 2.0},
        {"loss_type": "huber", "huber_schedule": "constant", "huber_c": 0.2, "huber_scale": 1.5, "mask": True},
        {"loss_type": "smooth_l1", "huber_schedule": "snr", "huber_c": 0.1, "prior": True},
        {"loss_type": "smooth_l1", "huber_schedule": "exponential", "huber_c": 0.05},
        {"loss_type": "l2", "min_snr_gamma": 5.0},
        {"loss_type": "l2", "min_snr_gamma": 5.0, "v": True},
        {"loss_type": "l2", "v": True, "scale_v_pred": True},
        {"loss_type": "l2", "v_pred_like": 0.2},
        {"loss_type": "l2", "debiased": True, "mask": True},
        {"loss_type": "l2", "debiased": True, "v": True, "min_snr_gamma": 1.0, "prior": True},
    ]
    out["loss"] = {"shape": [LB, LH, LW, LC], "pred": nhwc(pred), "target": nhwc(target),
                   "mask": mask.reshape(-1).tolist(), "t": lt.tolist(), "prior": prior.tolist(),
                   "cases": [loss_case(c) for c in cases]}

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
