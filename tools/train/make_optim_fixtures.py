#!/usr/bin/env python3
"""Reference values for tests/train/test_optim.c and test_lr_schedule.c.

Runs torch.optim.AdamW and torch.optim.SGD, and Lion written from its published update, for 20 steps on
small random tensors in two parameter groups with given gradient sequences (optionally clipped with
torch.nn.utils.clip_grad_norm_), recording the parameters after every step; the same for
transformers' Adafactor and prodigyopt's Prodigy (optim_reference_more.json, with tensor shapes); AdamW8bit
from a numpy reimplementation of bitsandbytes' block-wise 8-bit Adam (no bitsandbytes on the CPU) on
tensors made from a hash both sides compute; and records the learning rate of every diffusers schedule for
110 steps. Needs `pip install prodigyopt==1.0` in the venv. Run with the golden venv:

    /work/golden-venv/bin/python tools/train/make_optim_fixtures.py tests/data/train
"""
import json
import os
import sys

import numpy as np
import torch
from diffusers.optimization import get_scheduler

STEPS = 20
SIZES = [7, 5]  # one tensor per group (UNet, text encoder)


class Lion(torch.optim.Optimizer):
    """sign(b1*m + (1-b1)*g) update with decoupled weight decay, then m = b2*m + (1-b2)*g."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                update = m.clone().mul_(b1).add(p.grad, alpha=1 - b1).sign_()
                p.add_(update, alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


CASES = [
    # name, kind, options, base learning rates per group, max_grad_norm
    ("adamw", "adamw", dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), [1e-2, 5e-3], 0.0),
    ("adamw_wd_clip", "adamw", dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), [3e-2, 1e-2], 1.0),
    ("sgd", "sgd", dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0), [0.1, 0.05], 0.0),
    ("sgd_momentum_wd", "sgd", dict(momentum=0.9, dampening=0.1, nesterov=False, weight_decay=0.01),
     [0.05, 0.02], 0.0),
    ("sgd_nesterov_clip", "sgd", dict(momentum=0.9, dampening=0.0, nesterov=True, weight_decay=1e-3),
     [0.05, 0.02], 0.5),
    ("lion", "lion", dict(betas=(0.9, 0.99), weight_decay=0.0), [1e-2, 3e-3], 0.0),
    ("lion_wd_clip", "lion", dict(betas=(0.95, 0.98), weight_decay=0.1), [1e-2, 3e-3], 2.0),
]


def floats(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def optimizer_case(seed, name, kind, opts, lrs, max_norm):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, generator=gen, dtype=torch.float32) for n in SIZES]
    initial = [floats(p) for p in params]
    groups = [dict(params=[p], lr=lr) for p, lr in zip(params, lrs)]
    if kind == "adamw":
        opt = torch.optim.AdamW(groups, foreach=False, **opts)
    elif kind == "sgd":
        opt = torch.optim.SGD(groups, foreach=False, **opts)
    else:
        opt = Lion(groups, **opts)
    steps = []
    for s in range(STEPS):
        # The learning rate changes every step, as a schedule would change it.
        step_lrs = [lr * (1.0 - s / 40.0) for lr in lrs]
        for g, lr in zip(opt.param_groups, step_lrs):
            g["lr"] = lr
        grads = [torch.randn(n, generator=gen, dtype=torch.float32) * 0.7 for n in SIZES]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        norm = 0.0
        if max_norm > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        opt.step()
        steps.append(dict(lrs=step_lrs, grads=[floats(g) for g in grads], norm=norm,
                          params=[floats(p) for p in params]))
    out = dict(name=name, kind=kind, max_grad_norm=max_norm, initial=initial, steps=steps)
    for key, value in opts.items():
        if key == "betas":
            out["beta1"], out["beta2"] = value
        else:
            out[key] = float(value) if not isinstance(value, bool) else int(value)
    return out


SCHEDULES = [
    ("constant", {}),
    ("constant_with_warmup", {}),
    ("linear", {}),
    ("cosine", {}),
    ("cosine_with_restarts", dict(num_cycles=3)),
    ("polynomial", dict(power=2.0)),
    ("polynomial", dict(power=1.0)),
]


def schedule_case(name, kwargs, base_lr=1e-3, warmup=10, total=100, count=110):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total, **kwargs)
    lrs = []
    for _ in range(count):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return dict(name=name, base_lr=base_lr, warmup_steps=warmup, training_steps=total,
                num_cycles=float(kwargs.get("num_cycles", 1)), power=float(kwargs.get("power", 1.0)),
                lr_end=1e-7, lrs=lrs)


MORE_CASES = [
    # name, kind, options, base learning rates per group (None: relative step), shapes per group
    ("adafactor_kohya", "adafactor", dict(scale_parameter=False, relative_step=False, warmup_init=False),
     [1e-2, 5e-3], [[3, 4], [2, 3, 1, 2]]),
    ("adafactor_default", "adafactor", dict(), [None, None], [[4, 3], [5]]),
    ("adafactor_beta1_wd", "adafactor",
     dict(beta1=0.9, weight_decay=0.01, relative_step=True, warmup_init=True, clip_threshold=0.5,
          decay_rate=-0.7, eps=(1e-30, 1e-2)), [None, None], [[2, 2, 3], [6, 2]]),
    ("adafactor_scaled_lr", "adafactor", dict(scale_parameter=True, relative_step=False), [3e-2, 1e-2],
     [[7], [1, 5]]),
    ("prodigy", "prodigy", dict(), [1.0, 1.0], [[7], [5]]),
    ("prodigy_options", "prodigy",
     dict(betas=(0.8, 0.99), beta3=0.95, weight_decay=0.01, use_bias_correction=True,
          safeguard_warmup=True, d_coef=2.0, growth_rate=1.5, d0=1e-3), [1.0, 1.0], [[7], [5]]),
    ("prodigy_coupled_zero_lr", "prodigy", dict(weight_decay=0.1, decouple=False, d0=1e-4), [1.0, 0.0],
     [[7], [5]]),
]


def more_case(seed, name, kind, opts, lrs, shapes):
    import prodigyopt
    from transformers.optimization import Adafactor

    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(*s, generator=gen, dtype=torch.float32) for s in shapes]
    initial = [floats(p) for p in params]
    groups = [dict(params=[p]) if lr is None else dict(params=[p], lr=lr) for p, lr in zip(params, lrs)]
    if kind == "adafactor":
        opt = Adafactor(groups, **opts)
    else:
        opt = prodigyopt.Prodigy(groups, **opts)
    steps = []
    for s in range(STEPS):
        step_lrs = [0.0 if lr is None else lr * (1.0 - s / 40.0) for lr in lrs]
        for g, lr in zip(opt.param_groups, step_lrs):
            if g["lr"] is not None:
                g["lr"] = lr
        # Prodigy's d only grows when the gradients keep a direction: give them one.
        bias = 0.5 if kind == "prodigy" else 0.0
        grads = [torch.randn(*p.shape, generator=gen, dtype=torch.float32) * 0.7 + bias for p in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        step = dict(lrs=step_lrs, grads=[floats(g) for g in grads], params=[floats(p) for p in params])
        if kind == "prodigy":
            step["d"] = opt.param_groups[0]["d"]
        steps.append(step)
    out = dict(name=name, kind=kind, shapes=shapes, initial=initial, steps=steps, args=[])
    for key, value in opts.items():
        out["args"].append(f"{key}={value}")
    return out


# ---- AdamW8bit: bitsandbytes' block-wise 8-bit Adam, written from its published algorithm ----

def dynamic_map(signed):
    """create_dynamic_map(signed, max_exponent_bits=7, total_bits=8), midpoints computed in float64."""
    data = []
    for i in range(7):
        parts = 2 ** i if signed else 2 ** (i + 1)
        scale = 10.0 ** (i - 6)
        for j in range(parts):
            lo = 0.1 + 0.9 * j / parts
            hi = 0.1 + 0.9 * (j + 1) / parts
            mid = (lo + hi) / 2.0
            data.append(scale * mid)
            if signed:
                data.append(-scale * mid)
    data += [0.0, 1.0]
    assert len(data) == 256
    return np.array(sorted(np.float32(x) for x in data), dtype=np.float32)


def check_dynamic_map_against_bitsandbytes():
    """bitsandbytes builds the midpoints with torch.linspace in F32: the two agree to F32 rounding."""
    for signed in (True, False):
        ours = dynamic_map(signed)
        ref = []
        for i in range(7):
            n = (2 ** i + 1) if signed else (2 ** (i + 1) + 1)
            b = torch.linspace(0.1, 1, n)
            means = ((b[:-1] + b[1:]) / 2.0).tolist()
            ref += [10 ** (-6 + i) * m for m in means]
            if signed:
                ref += [-(10 ** (-6 + i)) * m for m in means]
        ref = np.array(sorted(np.float32(x) for x in ref + [0.0, 1.0]), dtype=np.float32)
        assert np.max(np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-12)) < 1e-6


def quantize(code, x):
    """Nearest code (ties to the lower index) of x in the ascending map."""
    hi = np.clip(np.searchsorted(code, x, side="right"), 1, 255)
    lo = hi - 1
    pick_lo = (x - code[lo]) <= (code[hi] - x)
    out = np.where(pick_lo, lo, hi)
    out = np.where(x <= code[0], 0, out)
    out = np.where(x >= code[255], 255, out)
    return out.astype(np.uint8)


def hash_floats(seed, n):
    """Uniform [-1, 1) values exactly representable in F32, computed the same way in the C test."""
    i = np.arange(n, dtype=np.uint64)
    x = (i * np.uint64(2654435761) + np.uint64(seed) * np.uint64(97531)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(2246822519)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(13)
    return (((x >> np.uint64(8)).astype(np.float64) / 16777216.0 - 0.5) * 2.0).astype(np.float32)


BLOCK = 2048


def adam_f32(p, g, m, v, lr, wd, b1, b2, eps, step):
    f = np.float32
    b1, b2, eps = f(b1), f(b2), f(eps)
    c1 = f(1) - np.power(b1, f(step))
    c2 = np.sqrt(f(1) - np.power(b2, f(step)))
    step_size = (-f(lr) * c2) / c1
    decay = f(1) - f(lr) * f(wd)
    m[:] = m * b1 + (f(1) - b1) * g
    v[:] = v * b2 + (f(1) - b2) * (g * g)
    if wd > 0:
        p[:] = p * decay
    p[:] = p + step_size * (m / (np.sqrt(v) + eps * c2))


def adamw8bit_case(name, sizes, lrs, wd, betas, eps, min_8bit_size):
    smap, umap = dynamic_map(True), dynamic_map(False)
    params = [hash_floats(99 + 7 * gi, n) for gi, n in enumerate(sizes)]
    state = []
    for n in sizes:
        if n >= min_8bit_size:
            blocks = (n + BLOCK - 1) // BLOCK
            state.append(dict(c1=np.zeros(n, np.uint8), c2=np.zeros(n, np.uint8),
                              a1=np.zeros(blocks, np.float32), a2=np.zeros(blocks, np.float32)))
        else:
            state.append(dict(m=np.zeros(n, np.float32), v=np.zeros(n, np.float32)))
    samples = [list(range(0, n, 97)) + [n - 1] for n in sizes]
    steps = []
    for s in range(STEPS):
        step_lrs = [lr * (1.0 - s / 40.0) for lr in lrs]
        for gi, n in enumerate(sizes):
            g = hash_floats(1000 * (s + 1) + 7 * gi + 1, n)
            p, st = params[gi], state[gi]
            if "m" in st:
                adam_f32(p, g, st["m"], st["v"], step_lrs[gi], wd, betas[0], betas[1], eps, s + 1)
                continue
            for b, begin in enumerate(range(0, n, BLOCK)):
                end = min(begin + BLOCK, n)
                m = smap[st["c1"][begin:end]] * st["a1"][b]
                v = umap[st["c2"][begin:end]] * st["a2"][b]
                pb = p[begin:end]
                adam_f32(pb, g[begin:end], m, v, step_lrs[gi], wd, betas[0], betas[1], eps, s + 1)
                p[begin:end] = pb
                st["a1"][b] = np.max(np.abs(m))
                st["a2"][b] = np.max(np.abs(v))
                n1 = m / st["a1"][b] if st["a1"][b] > 0 else np.zeros_like(m)
                n2 = v / st["a2"][b] if st["a2"][b] > 0 else np.zeros_like(v)
                st["c1"][begin:end] = quantize(smap, n1)
                st["c2"][begin:end] = quantize(umap, n2)
        steps.append(dict(lrs=step_lrs,
                          samples=[[float(params[gi][i]) for i in samples[gi]] for gi in range(len(sizes))]))
    absmax = [[float(x) for x in st.get("a1", [])] + [float(x) for x in st.get("a2", [])] for st in state]
    return dict(name=name, kind="adamw8bit", sizes=sizes, sample_index=samples, steps=steps,
                final_absmax=absmax,
                args=[f"betas=({betas[0]}, {betas[1]})", f"eps={eps}", f"weight_decay={wd}",
                      f"min_8bit_size={min_8bit_size}"])


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/data/train"
    os.makedirs(out_dir, exist_ok=True)
    cases = [optimizer_case(1000 + i, *c) for i, c in enumerate(CASES)]
    with open(os.path.join(out_dir, "optim_reference.json"), "w") as f:
        json.dump(dict(steps=STEPS, cases=cases), f, separators=(",", ":"))
        f.write("\n")
    check_dynamic_map_against_bitsandbytes()
    more = [more_case(2000 + i, *c) for i, c in enumerate(MORE_CASES)]
    more.append(adamw8bit_case("adamw8bit", [4500, 700], [1e-2, 5e-3], 0.01, (0.9, 0.999), 1e-8, 1024))
    more.append(adamw8bit_case("adamw8bit_nowd", [2048, 3000], [3e-3, 1e-2], 0.0, (0.8, 0.99), 1e-6, 0))
    with open(os.path.join(out_dir, "optim_reference_more.json"), "w") as f:
        json.dump(dict(steps=STEPS, cases=more), f, separators=(",", ":"))
        f.write("\n")
    schedules = [schedule_case(n, k) for n, k in SCHEDULES]
    with open(os.path.join(out_dir, "lr_schedule_reference.json"), "w") as f:
        json.dump(dict(schedules=schedules), f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
