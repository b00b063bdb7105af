#!/usr/bin/env python3
"""Independent check of the golden model fixtures (developer-only).

    python tools/golden/check_model_fixtures.py tests/data/models

Needs the same Python packages as make_model_fixtures.py (torch, diffusers, transformers, safetensors), and
shares no code with it. It checks:

- keymap_sd15.json: every row's LDM name is mapped back to its diffusers name by an inverse mapping written
  here from sd_arch_spec.md section 7, and shapes agree; rows match, in order, the state_dict of models
  built from diffusers_configs/<model>/*/config.json; diffusers' own single-file converter
  (diffusers.loaders.single_file_utils) maps every LDM name to the same diffusers name and shape;
  per-component counts equal the sums of the rows and, for SD1.5, the figures in sd_arch_spec.md.
- sd15_tiny.safetensors: all tensors F16, the key set is exactly the component prefixes + the tiny
  rows' LDM names with their LDM shapes, and the metadata holds format=pt and the three configs.
- the checkpoint, converted back with the inverse mapping and, separately, with diffusers' converter, gives
  identical state dicts; loaded into fresh diffusers / transformers models built from the metadata configs,
  these reproduce every stored output and gradient of the *_io.safetensors files bit for bit (fp32 on the
  CPU, one thread, as the writer ran).
- the io files: tensor names, dtypes (F32, input_ids I64), shapes and metadata.

Prints one line per check; exits 1 on any failure.
"""

import json
import os
import re
import struct
import sys
import traceback

import torch
from safetensors import safe_open
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                 convert_ldm_vae_checkpoint)
from transformers import CLIPTextConfig, CLIPTextModel

PREFIX = {"unet": "model.diffusion_model.", "text_encoder": "cond_stage_model.transformer.",
          "vae": "first_stage_model."}
COMPONENTS = ("unet", "vae", "text_encoder")
SD15_COUNTS = {"unet": 859520964, "text_encoder": 123060480, "vae": 83653863}


# ---------------------------------------------------------------------------------------------------------
# LDM -> diffusers names, written from the tables of sd_arch_spec.md 7.2, 7.4, 7.5 (the inverse direction of
# the writer's mapping, so the two implementations check each other)

UNET_RESNET_INV = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
                   "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def _resnet_inv(rest, table):
    for ldm, diff in table.items():
        if rest.startswith(ldm + "."):
            return diff + rest[len(ldm):]
    raise KeyError(rest)


def unet_diffusers_name(ldm, cfg):
    step = cfg["layers_per_block"] + 1   # entries per level in input_blocks / output_blocks
    m = re.fullmatch(r"time_embed\.([02])\.(weight|bias)", ldm)
    if m:
        return "time_embedding.linear_%d.%s" % (1 if m.group(1) == "0" else 2, m.group(2))
    m = re.fullmatch(r"input_blocks\.0\.0\.(weight|bias)", ldm)
    if m:
        return "conv_in." + m.group(1)
    m = re.fullmatch(r"input_blocks\.(\d+)\.0\.op\.(weight|bias)", ldm)
    if m:
        n = int(m.group(1))
        assert n % step == 0, ldm
        return "down_blocks.%d.downsamplers.0.conv.%s" % (n // step - 1, m.group(2))
    m = re.fullmatch(r"input_blocks\.(\d+)\.([01])\.(.+)", ldm)
    if m:
        n = int(m.group(1))
        level, j = (n - 1) // step, (n - 1) % step
        if m.group(2) == "0":
            return "down_blocks.%d.resnets.%d.%s" % (level, j, _resnet_inv(m.group(3), UNET_RESNET_INV))
        return "down_blocks.%d.attentions.%d.%s" % (level, j, m.group(3))
    m = re.fullmatch(r"middle_block\.([012])\.(.+)", ldm)
    if m:
        if m.group(1) == "1":
            return "mid_block.attentions.0." + m.group(2)
        return "mid_block.resnets.%d.%s" % (int(m.group(1)) // 2, _resnet_inv(m.group(2), UNET_RESNET_INV))
    m = re.fullmatch(r"output_blocks\.(\d+)\.([12])\.conv\.(weight|bias)", ldm)
    if m:
        n = int(m.group(1))
        assert n % step == step - 1, ldm
        return "up_blocks.%d.upsamplers.0.conv.%s" % (n // step, m.group(3))
    m = re.fullmatch(r"output_blocks\.(\d+)\.([01])\.(.+)", ldm)
    if m:
        n = int(m.group(1))
        if m.group(2) == "0":
            return "up_blocks.%d.resnets.%d.%s" % (n // step, n % step, _resnet_inv(m.group(3), UNET_RESNET_INV))
        return "up_blocks.%d.attentions.%d.%s" % (n // step, n % step, m.group(3))
    m = re.fullmatch(r"out\.([02])\.(weight|bias)", ldm)
    if m:
        return ("conv_norm_out." if m.group(1) == "0" else "conv_out.") + m.group(2)
    raise KeyError("unknown UNet LDM name " + ldm)


VAE_RESNET_INV = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
                  "nin_shortcut": "conv_shortcut"}
VAE_ATTN_INV = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def vae_diffusers_name(ldm, cfg):
    n_up = len(cfg["up_block_types"])
    if re.fullmatch(r"(quant_conv|post_quant_conv|encoder\.conv_in|encoder\.conv_out|decoder\.conv_in|"
                    r"decoder\.conv_out)\.(weight|bias)", ldm):
        return ldm
    m = re.fullmatch(r"(encoder|decoder)\.norm_out\.(weight|bias)", ldm)
    if m:
        return "%s.conv_norm_out.%s" % (m.group(1), m.group(2))
    m = re.fullmatch(r"encoder\.down\.(\d+)\.block\.(\d+)\.(.+)", ldm)
    if m:
        return "encoder.down_blocks.%s.resnets.%s.%s" % (m.group(1), m.group(2),
                                                          _resnet_inv(m.group(3), VAE_RESNET_INV))
    m = re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)", ldm)
    if m:
        return "encoder.down_blocks.%s.downsamplers.0.conv.%s" % (m.group(1), m.group(2))
    m = re.fullmatch(r"decoder\.up\.(\d+)\.block\.(\d+)\.(.+)", ldm)
    if m:
        return "decoder.up_blocks.%d.resnets.%s.%s" % (n_up - 1 - int(m.group(1)), m.group(2),
                                                        _resnet_inv(m.group(3), VAE_RESNET_INV))
    m = re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)", ldm)
    if m:
        return "decoder.up_blocks.%d.upsamplers.0.conv.%s" % (n_up - 1 - int(m.group(1)), m.group(2))
    m = re.fullmatch(r"(encoder|decoder)\.mid\.block_([12])\.(.+)", ldm)
    if m:
        return "%s.mid_block.resnets.%d.%s" % (m.group(1), int(m.group(2)) - 1,
                                                _resnet_inv(m.group(3), VAE_RESNET_INV))
    m = re.fullmatch(r"(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)", ldm)
    if m:
        return "%s.mid_block.attentions.0.%s.%s" % (m.group(1), VAE_ATTN_INV[m.group(2)], m.group(3))
    raise KeyError("unknown VAE LDM name " + ldm)


def text_diffusers_name(ldm, cfg):
    assert ldm.startswith("text_model.") and not ldm.endswith("position_ids"), ldm
    return ldm


INVERSE = {"unet": unet_diffusers_name, "vae": vae_diffusers_name, "text_encoder": text_diffusers_name}


def diffusers_shape(component, ldm, shape):
    """The VAE attention projections are 1x1 conv weights in LDM and Linear weights in diffusers."""
    if component == "vae" and re.search(r"\.mid\.attn_1\.(q|k|v|proj_out)\.weight$", ldm):
        assert len(shape) == 4 and shape[2:] == [1, 1], (ldm, shape)
        return shape[:2]
    return list(shape)


def ldm_to_diffusers(component, ldm_sd, cfg):
    """{ldm name: tensor} (prefix removed) -> {diffusers name: tensor}."""
    out = {}
    for ldm, t in ldm_sd.items():
        name = INVERSE[component](ldm, cfg)
        assert name not in out, "two LDM names map to " + name
        out[name] = t.reshape(diffusers_shape(component, ldm, list(t.shape)))
    return out


# ---------------------------------------------------------------------------------------------------------
# helpers

def raw_header(path):
    """The JSON header as stored: the dtype strings are checked from it, not from torch dtypes."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        expect(n % 8 == 0, "header length %d is not a multiple of 8" % n)
        return json.loads(f.read(n))


def read_all(path):
    with safe_open(path, framework="pt") as f:
        return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}


def build(component, cfg):
    if component == "unet":
        return UNet2DConditionModel.from_config(cfg)
    if component == "vae":
        return AutoencoderKL.from_config(cfg)
    return CLIPTextModel(CLIPTextConfig.from_dict(cfg))


def folder_config(folder, component):
    with open(os.path.join(folder, component, "config.json")) as f:
        return json.load(f)


def public(cfg):
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_equal(name, got, want):
    if not torch.equal(got, want):
        diff = (got.double() - want.double()).abs().max().item() if got.shape == want.shape else None
        raise AssertionError("%s differs (shapes %s / %s, max abs diff %s)" % (
            name, list(got.shape), list(want.shape), diff))


def dummy(shape):
    """A zero tensor of that shape that takes no memory (a broadcast view), for name/shape checks."""
    return torch.zeros(1).expand(*shape)


def diffusers_convert(component, ckpt, cfg):
    if component == "unet":
        return convert_ldm_unet_checkpoint(ckpt, cfg)
    if component == "vae":
        return convert_ldm_vae_checkpoint(ckpt, cfg)
    return convert_ldm_clip_checkpoint(ckpt)


# ---------------------------------------------------------------------------------------------------------
# checks (each raises on failure and returns a short note)

def check_keymap(folder, keymap, model_key, build_models):
    notes = []
    entry = keymap[model_key]
    expect(set(entry) == set(COMPONENTS) | {"counts"}, "keys of keymap[%s]: %s" % (model_key, sorted(entry)))
    cfg_folder = os.path.join(folder, "diffusers_configs", model_key)
    for component in COMPONENTS:
        rows = entry[component]
        cfg = folder_config(cfg_folder, component)
        # 1. the inverse mapping of this file sends every LDM name back to its diffusers name
        for dname, lname, dshape, lshape in rows:
            expect(INVERSE[component](lname, cfg) == dname, "%s: %s -> %s, keymap says %s" % (
                component, lname, INVERSE[component](lname, cfg), dname))
            expect(diffusers_shape(component, lname, lshape) == dshape, "%s: shape of %s" % (component, lname))
        expect(len({r[1] for r in rows}) == len(rows), component + ": duplicate LDM names")
        # 2. diffusers' own converter agrees on names and shapes
        ckpt = {PREFIX[component] + r[1]: dummy(r[3]) for r in rows}
        conv = diffusers_convert(component, ckpt, cfg)
        want = {r[0]: r[2] for r in rows}
        got = {k: list(v.shape) for k, v in conv.items()}
        if got != want:
            bad = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            raise AssertionError("%s: diffusers' converter disagrees on %d names, e.g. %s" % (
                component, len(bad), bad[:4]))
        # 3. the rows are the state_dict of a model built from the folder's config.json, in order
        if build_models:
            model = build(component, cfg)
            sd_rows = [[k, list(v.shape)] for k, v in model.state_dict().items() if not k.endswith("position_ids")]
            expect(sd_rows == [[r[0], r[2]] for r in rows], component + ": rows are not the model's state_dict")
            del model
        count = sum(torch.Size(r[2]).numel() for r in rows)
        expect(entry["counts"][component] == count, "%s: count %s, rows sum to %d" % (
            component, entry["counts"][component], count))
        if model_key == "sd15":
            expect(count == SD15_COUNTS[component], "%s: %d parameters, spec says %d" % (
                component, count, SD15_COUNTS[component]))
        notes.append("%s %d tensors %d params" % (component, len(rows), count))
    return ", ".join(notes)


def check_checkpoint(path, keymap_tiny, folder):
    header = raw_header(path)
    meta, tensors = read_all(path)
    expect(set(meta) == {"format", "unet_config", "text_encoder_config", "vae_config"}, "metadata keys %s" % sorted(meta))
    expect(meta["format"] == "pt", "format " + meta["format"])
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    expect(dtypes == {"F16"}, "dtypes %s" % sorted(dtypes))
    want = {}
    for component in COMPONENTS:
        for _, lname, _, lshape in keymap_tiny[component]:
            want[PREFIX[component] + lname] = lshape
    got = {k: list(v.shape) for k, v in tensors.items()}
    expect(set(got) == set(want), "key set: missing %s, extra %s" % (
        sorted(set(want) - set(got))[:3], sorted(set(got) - set(want))[:3]))
    expect(got == want, "shapes differ from keymap")
    # the metadata configs are the public part of diffusers_configs/sd15_tiny/*/config.json
    cfg_folder = os.path.join(folder, "diffusers_configs", "sd15_tiny")
    for component in ("unet", "vae"):
        expect(json.loads(meta[component + "_config"]) == public(folder_config(cfg_folder, component)),
               component + "_config differs from config.json")
    te_meta = json.loads(meta["text_encoder_config"])
    te_file = folder_config(cfg_folder, "text_encoder")
    for k, v in te_file.items():
        if k not in ("architectures", "torch_dtype", "transformers_version"):
            expect(te_meta.get(k) == v, "text_encoder_config[%s] = %r, config.json has %r" % (k, te_meta.get(k), v))
    for name, t in tensors.items():
        expect(bool(torch.isfinite(t.float()).all()), name + " not finite")
        flat = t.reshape(-1)
        expect(not bool((flat == flat[0]).all()), name + " is constant")
    return meta, tensors, "%d tensors, all F16, %d bytes" % (len(tensors), os.path.getsize(path))


def load_models(meta, tensors):
    """Fresh models from the metadata configs, weights from the checkpoint through both converters."""
    models = {}
    notes = []
    for component in COMPONENTS:
        cfg = json.loads(meta[{"unet": "unet_config", "vae": "vae_config",
                               "text_encoder": "text_encoder_config"}[component]])
        prefix = PREFIX[component]
        ldm_sd = {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
        mine = ldm_to_diffusers(component, ldm_sd, cfg)
        ref = diffusers_convert(component, {prefix + k: v for k, v in ldm_sd.items()}, cfg)
        expect(set(mine) == set(ref), component + ": converters give different key sets")
        for k in mine:
            expect_equal(component + " " + k, mine[k].contiguous(), ref[k].contiguous())
        model = build(component, cfg).eval()
        model.load_state_dict({k: v.contiguous() for k, v in mine.items()}, strict=True)
        models[component] = model
        notes.append("%s %d" % (component, len(mine)))
    return models, "loaded " + ", ".join(notes) + " tensors; inverse mapping == diffusers converter"


def check_io_layout(path, want_shapes, want_meta):
    header = raw_header(path)
    meta, t = read_all(path)
    expect(set(meta) == set(want_meta), "metadata keys %s" % sorted(meta))
    expect(set(t) == set(want_shapes), "tensors: missing %s, extra %s" % (
        sorted(set(want_shapes) - set(t)), sorted(set(t) - set(want_shapes))))
    for name, shape in want_shapes.items():
        expect(list(t[name].shape) == shape, "%s shape %s, want %s" % (name, list(t[name].shape), shape))
        want_dtype = "I64" if name == "input_ids" else "F32"
        expect(header[name]["dtype"] == want_dtype, "%s dtype %s" % (name, header[name]["dtype"]))
        if want_dtype == "F32":
            expect(bool(torch.isfinite(t[name]).all()), name + " not finite")
    return meta, t


def check_unet_io(path, unet, ckpt_meta, params_by_ldm):
    want = {"x": [2, 4, 16, 16], "timesteps": [2], "context": [2, 77, 48], "out": [2, 4, 16, 16],
            "dout": [2, 4, 16, 16], "grad.x": [2, 4, 16, 16], "grad.context": [2, 77, 48]}
    ldm_params = ["time_embed.0.weight", "time_embed.2.bias", "input_blocks.0.0.weight",
                  "input_blocks.1.0.in_layers.0.weight", "input_blocks.1.0.emb_layers.1.weight",
                  "input_blocks.1.1.proj_in.weight", "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
                  "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight",
                  "input_blocks.4.1.transformer_blocks.0.ff.net.0.proj.weight", "input_blocks.3.0.op.weight",
                  "middle_block.1.norm.bias", "middle_block.2.out_layers.3.weight",
                  "output_blocks.2.1.conv.weight", "output_blocks.5.0.skip_connection.weight",
                  "output_blocks.11.1.transformer_blocks.0.norm3.weight", "out.0.weight", "out.2.weight"]
    for p in ldm_params:
        want["grad." + p] = list(params_by_ldm[p].shape)   # the checkpoint's (file) layout
    meta, t = check_io_layout(path, want, {"config", "description"})
    expect(meta["config"] == ckpt_meta["unet_config"], "config differs from the checkpoint's unet_config")
    expect(t["timesteps"].tolist() == [999.0, 17.5], "timesteps %s" % t["timesteps"].tolist())

    named = dict(unet.named_parameters())
    cfg = json.loads(meta["config"])
    unet.zero_grad(set_to_none=True)
    x = t["x"].clone().requires_grad_(True)
    ctx = t["context"].clone().requires_grad_(True)
    out = unet(x, t["timesteps"], encoder_hidden_states=ctx).sample
    (out * t["dout"]).sum().backward()
    expect_equal("out", out.detach(), t["out"])
    expect_equal("grad.x", x.grad, t["grad.x"])
    expect_equal("grad.context", ctx.grad, t["grad.context"])
    for p in ldm_params:
        g = named[unet_diffusers_name(p, cfg)].grad
        expect_equal("grad." + p, g.reshape(t["grad." + p].shape), t["grad." + p])
    return "out and %d gradients reproduced exactly" % (len(ldm_params) + 2)


def check_clip_io(path, text, ckpt_meta):
    cfg = json.loads(ckpt_meta["text_encoder_config"])
    W, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    params = ["text_model.embeddings.token_embedding.weight", "text_model.embeddings.position_embedding.weight",
              "text_model.encoder.layers.0.self_attn.q_proj.weight",
              "text_model.encoder.layers.1.self_attn.out_proj.bias", "text_model.encoder.layers.2.mlp.fc1.weight",
              "text_model.encoder.layers.2.layer_norm2.weight", "text_model.final_layer_norm.bias"]
    named = dict(text.named_parameters())
    want = {"input_ids": [2, 77], "last_hidden_state": [2, 77, W], "pooled": [2, W], "clip_skip2": [2, 77, W],
            "dout": [2, 77, W], "grad.embeddings": [2, 77, W]}
    for i in range(L + 1):
        want["hidden_states.%d" % i] = [2, 77, W]
    for p in params:
        want["grad." + p] = list(named[p].shape)
    meta, t = check_io_layout(path, want, {"config", "description"})
    expect(meta["config"] == ckpt_meta["text_encoder_config"], "config differs from the checkpoint's")

    ids = t["input_ids"]
    bos, eos = cfg["bos_token_id"], cfg["eos_token_id"]
    expect(ids[:, 0].tolist() == [bos, bos], "rows must start with BOS")
    expect(ids[0, 21:].tolist() == [eos] * 56 and bool((ids[0, 1:21] < bos).all()), "row 0 layout")
    expect(ids[1, 76].item() == eos and bool((ids[1, 1:76] < bos).all()), "row 1 layout")

    text.zero_grad(set_to_none=True)
    res = text(input_ids=ids, output_hidden_states=True)
    res.hidden_states[0].retain_grad()
    (res.last_hidden_state * t["dout"]).sum().backward()
    expect_equal("last_hidden_state", res.last_hidden_state.detach(), t["last_hidden_state"])
    expect_equal("pooled", res.pooler_output.detach(), t["pooled"])
    for i, h in enumerate(res.hidden_states):
        expect_equal("hidden_states.%d" % i, h.detach(), t["hidden_states.%d" % i])
    expect_equal("grad.embeddings", res.hidden_states[0].grad, t["grad.embeddings"])
    for p in params:
        expect_equal("grad." + p, named[p].grad, t["grad." + p])
    with torch.no_grad():
        fln = text.text_model.final_layer_norm
        expect_equal("clip_skip2", fln(t["hidden_states.%d" % (L - 1)]), t["clip_skip2"])
        expect_equal("final LN of hidden_states[-1]", fln(t["hidden_states.%d" % L]), t["last_hidden_state"])
    # pooled is the row of last_hidden_state at the first EOS (positions 21 and 76)
    expect_equal("pooled rows", t["pooled"], t["last_hidden_state"][torch.arange(2), torch.tensor([21, 76])])
    return "last_hidden_state, %d hidden_states, pooled, clip_skip2 and %d gradients reproduced exactly" % (
        L + 1, len(params) + 1)


@torch.no_grad()
def check_vae_io(path, vae, ckpt_meta):
    want = {"image": [1, 3, 32, 32], "moments": [1, 8, 4, 4], "z": [1, 4, 4, 4], "decoded": [1, 3, 32, 32]}
    meta, t = check_io_layout(path, want, {"config", "description"})
    expect(meta["config"] == ckpt_meta["vae_config"], "config differs from the checkpoint's")
    expect(bool((t["image"].abs() <= 1).all()), "image outside [-1, 1]")
    expect_equal("moments", vae.quant_conv(vae.encoder(t["image"])), t["moments"])
    expect_equal("decoded", vae.decoder(vae.post_quant_conv(t["z"])), t["decoded"])
    return "moments and decoded reproduced exactly"


# ---------------------------------------------------------------------------------------------------------

def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "tests/data/models"
    torch.set_num_threads(1)   # the writer's reduction order, so the comparisons can be exact
    failed = 0
    state = {}

    def run(label, fn):
        nonlocal failed
        try:
            note = fn()
        except Exception as e:  # noqa: BLE001 - report and go on
            failed += 1
            print("FAIL %s: %s" % (label, e))
            traceback.print_exc(limit=2)
            return False
        print("ok   %s: %s" % (label, note))
        return True

    def load_keymap():
        with open(os.path.join(folder, "keymap_sd15.json")) as f:
            state["keymap"] = json.load(f)
        expect(set(state["keymap"]) == {"sd15", "sd15_tiny"}, "top-level keys")
        return "sd15, sd15_tiny"

    def ckpt():
        state["meta"], state["tensors"], note = check_checkpoint(
            os.path.join(folder, "sd15_tiny.safetensors"), state["keymap"]["sd15_tiny"], folder)
        return note

    def load():
        state["models"], note = load_models(state["meta"], state["tensors"])
        return note

    if not run("keymap_sd15.json", load_keymap):
        return 1
    run("keymap sd15_tiny", lambda: check_keymap(folder, state["keymap"], "sd15_tiny", True))
    # building full SD1.5 takes about 4 GB and a few seconds; it proves the rows are what diffusers builds
    run("keymap sd15", lambda: check_keymap(folder, state["keymap"], "sd15", True))
    if run("sd15_tiny.safetensors", ckpt) and run("reload sd15_tiny", load):
        m = state["models"]
        unet_params = {k[len(PREFIX["unet"]):]: v for k, v in state["tensors"].items() if k.startswith(PREFIX["unet"])}
        run("unet_tiny_io.safetensors", lambda: check_unet_io(
            os.path.join(folder, "unet_tiny_io.safetensors"), m["unet"], state["meta"], unet_params))
        run("clip_tiny_io.safetensors", lambda: check_clip_io(
            os.path.join(folder, "clip_tiny_io.safetensors"), m["text_encoder"], state["meta"]))
        run("vae_tiny_io.safetensors", lambda: check_vae_io(
            os.path.join(folder, "vae_tiny_io.safetensors"), m["vae"], state["meta"]))
    else:
        failed += 1
    print("model fixtures: %s" % ("all checks passed" if not failed else "%d FAILED" % failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
