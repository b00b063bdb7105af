"""Writes tests/data/train/samplers.json: diffusers 0.30.3 schedulers built as kohya's get_my_scheduler
builds them (1000 steps, scaled_linear 0.00085-0.012, steps_offset 1, clip_sample forced on where the class
has it), each run for 10 and 30 steps with a deterministic fake model, epsilon and v prediction.

fake model: out[i] = 0.1 * x_in[i] + 0.01 * t / 1000 + 0.05 * sin(i), x_in the scaled model input, t the
timestep handed to the UNet, i the flat element index. Euler ancestral's noise is replaced by fixed noise
(one block of N(0,1) per step) so that the C side can inject the same values.

Run: /work/golden-venv/bin/python tools/train/make_sampler_fixtures.py
"""
import json
import os

import torch
import diffusers
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler)
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module

N = 64  # elements per latent
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "train", "samplers.json")


def make(kind, v):
    args = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                steps_offset=1)
    if v:
        args["prediction_type"] = "v_prediction"
    if kind == "ddim":
        s = DDIMScheduler(**args)
    elif kind == "euler":
        s = EulerDiscreteScheduler(**args)
    elif kind == "euler_a":
        s = EulerAncestralDiscreteScheduler(**args)
    elif kind == "dpm++2m":
        s = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", **args)
    elif kind == "dpm++2m_karras":
        s = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", use_karras_sigmas=True, **args)
    if hasattr(s.config, "clip_sample") and s.config.clip_sample is False:
        s.config.clip_sample = True
    return s


def main():
    g = torch.Generator().manual_seed(1234)
    x_init = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float32)
    index = torch.arange(N, dtype=torch.float32).reshape(1, 4, 4, 4)
    noise = torch.randn(30, 1, 4, 4, 4, generator=g, dtype=torch.float32)
    cases = []
    for kind in ["ddim", "euler", "euler_a", "dpm++2m", "dpm++2m_karras"]:
        for v in [False, True]:
            for steps in [10, 30]:
                s = make(kind, v)
                s.set_timesteps(steps)
                counter = [0]

                def fixed_noise(shape, generator=None, device=None, dtype=None, layout=None):
                    z = noise[counter[0]].to(dtype)
                    counter[0] += 1
                    return z

                euler_a_module.randn_tensor = fixed_noise
                x = x_init * s.init_noise_sigma
                for t in s.timesteps:
                    x_in = s.scale_model_input(x, t)
                    out = 0.1 * x_in + 0.01 * float(t) / 1000.0 + 0.05 * torch.sin(index)
                    x = s.step(out, t, x).prev_sample
                case = {
                    "sampler": kind,
                    "prediction": "v" if v else "epsilon",
                    "steps": steps,
                    "init_noise_sigma": float(s.init_noise_sigma),
                    "timesteps": [float(t) for t in s.timesteps],
                    "final": [float(a) for a in x.flatten()],
                }
                if hasattr(s, "sigmas"):
                    case["sigmas"] = [float(a) for a in s.sigmas]
                cases.append(case)
    doc = {
        "diffusers": diffusers.__version__,
        "elements": N,
        "x_init": [float(a) for a in x_init.flatten()],
        "noise": [[float(a) for a in z.flatten()] for z in noise],
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f)
        f.write("\n")


if __name__ == "__main__":
    main()
