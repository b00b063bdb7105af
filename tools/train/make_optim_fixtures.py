#!/usr/bin/env python3
"""Reference values for tests/train/test_optim.c and test_lr_schedule.c.

Runs torch.optim.AdamW and torch.optim.SGD, and Lion written from its published update, for 20 steps on
small random tensors in two parameter groups with given gradient sequences (optionally clipped with
torch.nn.utils.clip_grad_norm_), recording the parameters after every step; and records the learning rate
of every diffusers schedule for 110 steps. Run with the golden venv:

    /work/golden-venv/bin/python tools/train/make_optim_fixtures.py tests/data/train
"""
import json
import os
import sys

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


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/data/train"
    os.makedirs(out_dir, exist_ok=True)
    cases = [optimizer_case(1000 + i, *c) for i, c in enumerate(CASES)]
    with open(os.path.join(out_dir, "optim_reference.json"), "w") as f:
        json.dump(dict(steps=STEPS, cases=cases), f, separators=(",", ":"))
        f.write("\n")
    schedules = [schedule_case(n, k) for n, k in SCHEDULES]
    with open(os.path.join(out_dir, "lr_schedule_reference.json"), "w") as f:
        json.dump(dict(schedules=schedules), f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
