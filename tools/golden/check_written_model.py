#!/usr/bin/env python3
"""Checks that the models sdtune writes load in the reference libraries.

Writes a model with `sdtune-engine init-model` as a single file and as a diffusers folder, then:
- loads each diffusers component with diffusers/transformers `from_pretrained` and requires no missing,
  unexpected or mismatched keys;
- converts the single file with diffusers' own LDM converter and requires every tensor to equal the
  folder's (so both writers agree with diffusers' key mapping);
- runs one UNet forward.

Usage (from the repository root, after `make build`):
    python tools/golden/check_written_model.py [--engine build/release/bin/sdtune-engine] [--arch sd15-tiny]
Needs torch, diffusers==0.30.3, transformers==4.44.2 and safetensors (see README.md here).
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
from safetensors.torch import load_file
from transformers import CLIPTextModel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="build/release/bin/sdtune-engine")
    parser.add_argument("--arch", default="sd15-tiny")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder, single = Path(tmp) / "model", Path(tmp) / "model.safetensors"
        for out, fmt in ((folder, "diffusers"), (single, "ldm")):
            subprocess.run([args.engine, "init-model", "--arch", args.arch, "--seed", str(args.seed),
                            "--out", str(out), "--format", fmt], check=True)

        unet, info = UNet2DConditionModel.from_pretrained(folder / "unet", output_loading_info=True)
        failures += report("unet loads in diffusers", info)
        vae, info = AutoencoderKL.from_pretrained(folder / "vae", output_loading_info=True)
        failures += report("vae loads in diffusers", info)
        _, info = CLIPTextModel.from_pretrained(folder / "text_encoder", output_loading_info=True)
        failures += report("text_encoder loads in transformers", info)

        ldm = load_file(str(single))
        for name, model, convert in (("unet", unet, convert_ldm_unet_checkpoint),
                                     ("vae", vae, convert_ldm_vae_checkpoint)):
            converted = convert(ldm, dict(model.config))
            differ = [k for k, w in model.state_dict().items()
                      if k not in converted or not torch.equal(w, converted[k].reshape(w.shape))]
            print(f"{'ok' if not differ else 'FAIL':4} {name}: diffusers' conversion of the single file equals "
                  f"the folder ({len(differ)} of {len(converted)} tensors differ)")
            failures += bool(differ)

        cfg = unet.config
        x = torch.randn(1, cfg.in_channels, 16, 16)
        context = torch.randn(1, 77, cfg.cross_attention_dim)
        out = unet(x, 10, context).sample
        ok = out.shape == x.shape and torch.isfinite(out).all()
        print(f"{'ok' if ok else 'FAIL':4} unet forward in diffusers: {tuple(out.shape)}")
        failures += not ok
    print("written model: all checks passed" if failures == 0 else f"written model: {failures} checks failed")
    return 1 if failures else 0


def report(what: str, info: dict) -> int:
    problems = {k: v for k, v in info.items() if v}
    print(f"{'ok' if not problems else 'FAIL':4} {what}" + (f": {problems}" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
