#!/usr/bin/env python3
"""Checks a kohya LoRA file written by sdtune against diffusers' own kohya LoRA loader.

Developer-only (needs /work/golden-venv: torch, diffusers, transformers, safetensors):

    /work/golden-venv/bin/python tools/train/check_lora_file.py FILE [--arch sd15-tiny|sd15]

1. diffusers' StableDiffusionPipeline.lora_state_dict converts the file (the conversion load_lora_weights
   runs); it raises on any key it cannot place. Every converted key is then mapped to its PEFT name (as
   load_lora_into_unet / load_lora_into_text_encoder do) and looked up in a UNet2DConditionModel and a
   CLIPTextModel of the arch's config: the wrapped module must exist and lora_A / lora_B must have the
   shapes PEFT gives them (Linear: [r, in], [out, r]; Conv2d: [r, in, kh, kw], [out, r, 1, 1]).
   PEFT itself is not installed in the venv, so the adapters are not instantiated.
2. sshs_model_hash / sshs_legacy_hash are recomputed as kohya's train_util.precalculate_safetensors_hashes
   does (safetensors.torch.save of the tensors with the ss_* metadata alone, then hashed) and compared.

Prints the counts and exits 1 on any problem.
"""
import argparse
import hashlib
import io
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save


def arch_models(arch):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if arch == "sd15-tiny":
        unet = UNet2DConditionModel(sample_size=8, block_out_channels=(32, 32, 64, 64), layers_per_block=2,
                                    cross_attention_dim=48, norm_num_groups=8, attention_head_dim=8)
        text = CLIPTextConfig(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=192,
                              hidden_act="quick_gelu", max_position_embeddings=77, vocab_size=49408)
    elif arch == "sd15":
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        text = CLIPTextConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, hidden_act="quick_gelu", max_position_embeddings=77)
    else:
        raise SystemExit(f"unknown arch {arch}")
    return unet, CLIPTextModel(text)


def peft_shapes(module, rank):
    if isinstance(module, torch.nn.Linear):
        return [rank, module.in_features], [module.out_features, rank]
    if isinstance(module, torch.nn.Conv2d):
        kh, kw = module.kernel_size
        return [rank, module.in_channels, kh, kw], [module.out_channels, rank, 1, 1]
    return None


def check_component(name, peft_dict, model, problems):
    modules = dict(model.named_modules())
    checked = 0
    for key in sorted(peft_dict):
        if not key.endswith(".lora_A.weight"):
            continue
        path = key[: -len(".lora_A.weight")]
        down = peft_dict[key]
        up = peft_dict.get(path + ".lora_B.weight")
        module = modules.get(path)
        if module is None or up is None:
            problems.append(f"{name}: {path}: no such module" if module is None else f"{name}: {path}: no lora_B")
            continue
        want = peft_shapes(module, down.shape[0])
        if want is None:
            problems.append(f"{name}: {path} is a {type(module).__name__}, not Linear/Conv2d")
        elif list(down.shape) != want[0] or list(up.shape) != want[1]:
            problems.append(f"{name}: {path}: A {list(down.shape)} B {list(up.shape)}, PEFT wants {want[0]} {want[1]}")
        checked += 1
    return checked


def kohya_hashes(path):
    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        metadata = f.metadata() or {}
    ss_only = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    data = io.BytesIO(save(tensors, ss_only))
    header = int.from_bytes(data.read(8), "little")
    data.seek(8 + header)
    model_hash = hashlib.sha256(data.read()).hexdigest()
    data.seek(0x100000)
    legacy_hash = hashlib.sha256(data.read(0x10000)).hexdigest()[0:8]
    return metadata, model_hash, legacy_hash, len(data.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--arch", default="sd15-tiny")
    args = parser.parse_args()

    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft, convert_unet_state_dict_to_peft

    file_keys = len(load_file(args.file))
    problems = []
    try:
        state_dict, alphas = StableDiffusionPipeline.lora_state_dict(args.file)
    except Exception as exc:  # diffusers refuses the file: say why
        print(f"diffusers refused {args.file}: {exc}")
        return 1
    unet_sd = {k[len("unet."):]: v for k, v in state_dict.items() if k.startswith("unet.")}
    te_sd = {k[len("text_encoder."):]: v for k, v in state_dict.items() if k.startswith("text_encoder.")}
    other = [k for k in state_dict if not k.startswith(("unet.", "text_encoder."))]
    problems += [f"converted key of no component: {k}" for k in other]
    unet, text_encoder = arch_models(args.arch)
    n_unet = check_component("unet", convert_unet_state_dict_to_peft(unet_sd), unet, problems)
    n_te = check_component("text_encoder", convert_state_dict_to_peft(convert_state_dict_to_diffusers(te_sd)),
                           text_encoder, problems)
    print(f"{args.file}: {file_keys} keys; diffusers consumed all of them: {len(state_dict)} weights and "
          f"{len(alphas)} alphas -> {n_unet} UNet modules, {n_te} text encoder modules, 0 unconsumed")

    metadata, model_hash, legacy_hash, size = kohya_hashes(args.file)
    if "sshs_model_hash" in metadata:
        ok = metadata["sshs_model_hash"] == model_hash and metadata["sshs_legacy_hash"] == legacy_hash
        print(f"kohya hashes (ss_* file of {size} bytes): model {model_hash[:16]}..., legacy {legacy_hash}: "
              f"{'match' if ok else 'MISMATCH'} (file: {metadata['sshs_model_hash'][:16]}..., "
              f"{metadata['sshs_legacy_hash']})")
        if not ok:
            problems.append("sshs hashes differ from kohya's")
    else:
        print("no sshs hashes in the file (saved without metadata)")
    for p in problems[:50]:
        print("problem:", p)
    if problems:
        print(f"{len(problems)} problems")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
