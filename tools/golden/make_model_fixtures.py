#!/usr/bin/env python3
"""Write the golden model fixtures for the tiny SD1.5 networks (developer-only).

The tiny UNet, CLIP text encoder and VAE of docs/models.md are built with diffusers / transformers, given
random weights, and run in fp32 on the CPU. The outputs, and for the UNet and the text encoder the
gradients of a random cotangent, are the references that sdtune's models are compared with.

Files written into the output folder (tests/data/models/):

    sd15_tiny.safetensors   one single-file (LDM layout) checkpoint with all three networks, F16
    unet_tiny_io.safetensors, clip_tiny_io.safetensors, vae_tiny_io.safetensors
                            inputs, outputs and gradients, F32 (input_ids I64), PyTorch layouts
    keymap_sd15.json        diffusers <-> LDM names and shapes of every tensor, real SD1.5 and tiny
    diffusers_configs/{sd15,sd15_tiny}/{unet,vae,text_encoder}/config.json
                            the config files of a diffusers model folder

The diffusers -> LDM key mapping is implemented here from sd_arch_spec.md section 7 (no converter is
imported), and asserted to be a bijection over every parameter. check_model_fixtures.py proves it right by
loading the checkpoint back through an independent inverse mapping and through diffusers' own converter.

Usage (from the repository root):
    python tools/golden/make_model_fixtures.py --out tests/data/models
    python tools/golden/make_model_fixtures.py --out tests/data/models --check

--check runs tools/golden/check_model_fixtures.py on the folder afterwards.
"""

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import torch
from safetensors.torch import save_file
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

# ---------------------------------------------------------------------------------------------------------
# Configs

# Tiny models: the SD1.5 topology with small widths (docs/models.md, "Tiny configs").
TINY_UNET = dict(
    sample_size=16, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(32, 32, 64, 64), layers_per_block=2,
    cross_attention_dim=48, attention_head_dim=8, norm_num_groups=8,
)
# vocab 1000 keeps the file small; BOS/EOS are its last two ids, and padding is EOS as in SD1.5.
TINY_TEXT = dict(
    vocab_size=1000, hidden_size=48, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
    max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=998, eos_token_id=999, pad_token_id=999,
)
TINY_VAE = dict(
    in_channels=3, out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 16, 32, 32), layers_per_block=2, latent_channels=4, norm_num_groups=8,
    sample_size=32,
)

# Full-size SD1.5 (sd_arch_spec.md 1.1, 3.1, 4.1); everything not listed is the diffusers default, which is
# the SD1.5 value.
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    cross_attention_dim=768, attention_head_dim=8,
)
# CLIP ViT-L/14 text model as in the SD1.5 text_encoder/config.json. That file carries the pre-2023
# transformers token ids bos 0 / eos 2 / pad 1 (not the real 49406 / 49407), and transformers keys its
# legacy pooling rule (argmax of input_ids) on eos_token_id == 2, so they are kept as users' folders have them.
SD15_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
)

# Parameter counts quoted in sd_arch_spec.md (1.8, 3.1, 4.6).
SD15_COUNTS = {"unet": 859520964, "text_encoder": 123060480, "vae": 83653863}

# Single-file checkpoint prefixes (sd_arch_spec.md 7.1).
PREFIX = {"unet": "model.diffusion_model.", "text_encoder": "cond_stage_model.transformer.",
          "vae": "first_stage_model."}

# Seeds. Each network and each input gets its own, so changing one leaves the others alone.
SEED_UNET, SEED_TEXT, SEED_VAE = 1501, 1502, 1503
SEED_UNET_IO, SEED_CLIP_IO, SEED_VAE_IO = 2501, 2502, 2503

# Parameter gradients stored in the io files: LDM / HF names without the component prefix, spread over
# the whole network (time embedding, every block kind, first and last layers).
UNET_GRAD_PARAMS = [
    "time_embed.0.weight",
    "time_embed.2.bias",
    "input_blocks.0.0.weight",
    "input_blocks.1.0.in_layers.0.weight",
    "input_blocks.1.0.emb_layers.1.weight",
    "input_blocks.1.1.proj_in.weight",
    "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
    "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight",
    "input_blocks.4.1.transformer_blocks.0.ff.net.0.proj.weight",
    "input_blocks.3.0.op.weight",
    "middle_block.1.norm.bias",
    "middle_block.2.out_layers.3.weight",
    "output_blocks.2.1.conv.weight",
    "output_blocks.5.0.skip_connection.weight",
    "output_blocks.11.1.transformer_blocks.0.norm3.weight",
    "out.0.weight",
    "out.2.weight",
]
CLIP_GRAD_PARAMS = [
    "text_model.embeddings.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight",
    "text_model.encoder.layers.0.self_attn.q_proj.weight",
    "text_model.encoder.layers.1.self_attn.out_proj.bias",
    "text_model.encoder.layers.2.mlp.fc1.weight",
    "text_model.encoder.layers.2.layer_norm2.weight",
    "text_model.final_layer_norm.bias",
]


# ---------------------------------------------------------------------------------------------------------
# diffusers -> LDM names (sd_arch_spec.md 7.2, 7.4, 7.5, 7.6)
#
# Each mapper takes a diffusers state_dict name and the model config and returns the LDM name without the
# component prefix. Unknown names raise, so a diffusers version that adds a tensor cannot slip through.

UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _unet_resnet(rest):
    module, leaf = rest.split(".", 1)
    return UNET_RESNET[module] + "." + leaf


def unet_ldm_name(name, cfg):
    # LDM numbers input_blocks / output_blocks as one flat list. Down level i holds layers_per_block
    # resnets (+ attentions) and then one downsampler, so it spans layers_per_block + 1 entries after
    # input_blocks.0 (conv_in). Up level i holds layers_per_block + 1 resnets, the upsampler sharing the
    # last entry, so it also spans layers_per_block + 1 entries.
    step = cfg["layers_per_block"] + 1
    up_has_attn = [t.startswith("CrossAttn") for t in cfg["up_block_types"]]

    m = re.fullmatch(r"time_embedding\.linear_([12])\.(.+)", name)
    if m:
        return "time_embed.%d.%s" % (0 if m.group(1) == "1" else 2, m.group(2))
    m = re.fullmatch(r"conv_in\.(.+)", name)
    if m:
        return "input_blocks.0.0." + m.group(1)
    m = re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", name)
    if m:
        i, j = int(m.group(1)), int(m.group(2))
        return "input_blocks.%d.0.%s" % (step * i + j + 1, _unet_resnet(m.group(3)))
    m = re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", name)
    if m:
        # transformer names are the same in both layouts
        i, j = int(m.group(1)), int(m.group(2))
        return "input_blocks.%d.1.%s" % (step * i + j + 1, m.group(3))
    m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", name)
    if m:
        return "input_blocks.%d.0.op.%s" % (step * (int(m.group(1)) + 1), m.group(2))
    m = re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", name)
    if m:
        return "middle_block.%d.%s" % (2 * int(m.group(1)), _unet_resnet(m.group(2)))
    m = re.fullmatch(r"mid_block\.attentions\.0\.(.+)", name)
    if m:
        return "middle_block.1." + m.group(1)
    m = re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", name)
    if m:
        i, j = int(m.group(1)), int(m.group(2))
        return "output_blocks.%d.0.%s" % (step * i + j, _unet_resnet(m.group(3)))
    m = re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", name)
    if m:
        i, j = int(m.group(1)), int(m.group(2))
        return "output_blocks.%d.1.%s" % (step * i + j, m.group(3))
    m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", name)
    if m:
        # the upsampler follows the last resnet of the level: slot 1, or slot 2 after an attention
        i = int(m.group(1))
        return "output_blocks.%d.%d.conv.%s" % (step * i + step - 1, 2 if up_has_attn[i] else 1, m.group(2))
    m = re.fullmatch(r"conv_norm_out\.(.+)", name)
    if m:
        return "out.0." + m.group(1)
    m = re.fullmatch(r"conv_out\.(.+)", name)
    if m:
        return "out.2." + m.group(1)
    raise KeyError("no LDM name for UNet tensor " + name)


VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
              "conv_shortcut": "nin_shortcut"}
VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _vae_resnet(rest):
    module, leaf = rest.split(".", 1)
    return VAE_RESNET[module] + "." + leaf


def vae_ldm_name(name, cfg):
    n_up = len(cfg["up_block_types"])
    m = re.fullmatch(r"(quant_conv|post_quant_conv)\.(.+)", name)
    if m:
        return name
    m = re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out)\.(.+)", name)
    if m:
        return name
    m = re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", name)
    if m:
        return "%s.norm_out.%s" % (m.group(1), m.group(2))
    m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", name)
    if m:
        return "encoder.down.%s.block.%s.%s" % (m.group(1), m.group(2), _vae_resnet(m.group(3)))
    m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", name)
    if m:
        return "encoder.down.%s.downsample.conv.%s" % (m.group(1), m.group(2))
    # LDM numbers the decoder levels by resolution (up.0 is the full-resolution one, run last); diffusers
    # numbers them in processing order, so the index is reversed.
    m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", name)
    if m:
        return "decoder.up.%d.block.%s.%s" % (n_up - 1 - int(m.group(1)), m.group(2), _vae_resnet(m.group(3)))
    m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", name)
    if m:
        return "decoder.up.%d.upsample.conv.%s" % (n_up - 1 - int(m.group(1)), m.group(2))
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", name)
    if m:
        return "%s.mid.block_%d.%s" % (m.group(1), int(m.group(2)) + 1, _vae_resnet(m.group(3)))
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)",
                     name)
    if m:
        return "%s.mid.attn_1.%s.%s" % (m.group(1), VAE_ATTN[m.group(2)], m.group(3))
    raise KeyError("no LDM name for VAE tensor " + name)


def vae_ldm_shape(name, shape):
    """LDM stores the VAE mid-attention q/k/v/proj_out as 1x1 conv weights [C, C, 1, 1]; diffusers as
    Linear [C, C]. Reshape only, no transpose."""
    if re.search(r"\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$", name):
        assert len(shape) == 2, (name, shape)
        return list(shape) + [1, 1]
    return list(shape)


def text_ldm_name(name, cfg):
    # SD1.x single files keep the Hugging Face names under cond_stage_model.transformer.
    if not name.startswith("text_model."):
        raise KeyError("no LDM name for text encoder tensor " + name)
    return name


MAPPERS = {
    "unet": (unet_ldm_name, lambda n, s: list(s)),   # UNet shapes agree (SD1.5 proj_in/out are convs in both)
    "vae": (vae_ldm_name, vae_ldm_shape),
    "text_encoder": (text_ldm_name, lambda n, s: list(s)),
}


def keymap_rows(component, model, cfg):
    """[[diffusers_name, ldm_name, diffusers_shape, ldm_shape], ...] in state_dict order, asserting that the
    mapping is a bijection from every persistent tensor of the model onto distinct LDM names."""
    to_name, to_shape = MAPPERS[component]
    sd = model.state_dict()
    params = dict(model.named_parameters())
    rows = []
    for name, tensor in sd.items():
        if name.endswith("position_ids"):
            continue   # a buffer, not a weight; SD checkpoints may or may not carry it, sdtune ignores it
        assert name in params, "state_dict entry %s is not a parameter" % name
        shape = list(tensor.shape)
        new_shape = to_shape(name, shape)
        assert _numel(new_shape) == _numel(shape)
        rows.append([name, to_name(name, cfg), shape, new_shape])
    ldm_names = [r[1] for r in rows]
    assert len(set(ldm_names)) == len(ldm_names), component + ": two diffusers tensors map to one LDM name"
    assert set(r[0] for r in rows) == set(params), component + ": the mapping misses a parameter"
    return rows


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------------------------------------------------
# Models

def build_unet(cfg):
    return UNet2DConditionModel(**cfg)


def build_text(cfg):
    return CLIPTextModel(CLIPTextConfig(**cfg))


def build_vae(cfg):
    return AutoencoderKL(**cfg)


@torch.no_grad()
def randomise(model, gen):
    """Give every parameter a value that matters, then round it to F16.

    Default init leaves norms at weight 1 / bias 0, and transformers' CLIP init zeroes every Linear bias;
    with those a loader that drops or swaps such a tensor would still pass. Norms become 1 + 0.1*randn /
    0.1*randn, any other constant tensor becomes 0.1*randn. Every value is then rounded to float16 and
    back, so the fp32 reference runs on exactly the numbers the F16 checkpoint stores.
    Returns the names of the non-norm tensors that were constant after default init.
    """
    was_constant = []
    norm_params = set()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
            mod.weight.copy_(1.0 + 0.1 * torch.randn(mod.weight.shape, generator=gen))
            mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
            norm_params.update([mod_name + ".weight", mod_name + ".bias"])
    for name, p in model.named_parameters():
        if name in norm_params:
            continue
        flat = p.reshape(-1)
        if bool((flat == flat[0]).all()):
            was_constant.append(name)
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    for name, p in model.named_parameters():
        p.copy_(p.half().float())
        flat = p.reshape(-1)
        assert not bool((flat == flat[0]).all()), name + " is still constant"
        assert bool(torch.isfinite(p).all()), name
    return was_constant


def diffusers_config_json(model):
    """The config of a diffusers model as a JSON string: the public keys of model.config (the private
    `_use_default_values`, `_class_name`, ... are bookkeeping and are left out); tuples become lists."""
    cfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    return json.dumps(cfg, sort_keys=True)


def text_config_json(model):
    return json.dumps(model.config.to_dict(), sort_keys=True)


def save_folder_config(folder, component, model):
    """<folder>/<component>/config.json as a diffusers model folder has it (weights not included)."""
    target = os.path.join(folder, component)
    if component == "text_encoder":
        # model.save_pretrained() records the class and dtype; config.save_pretrained() alone does not.
        model.config.architectures = ["CLIPTextModel"]
        model.config.torch_dtype = "float32"
        model.config.save_pretrained(target)
    else:
        model.save_config(target)


# ---------------------------------------------------------------------------------------------------------
# Fixtures

def save(tensors, path, metadata):
    """safetensors.torch.save_file, made byte-reproducible.

    The writer stores __metadata__ from a hash map, so the order of its keys changes from run to run. The
    header is rewritten in place with the metadata keys sorted: the same JSON members in another order have
    the same length, so the tensor data does not move. The file mode is set to 0644 (the writer creates
    0600 files).
    """
    save_file(tensors, path, metadata=metadata)
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert len(text) <= n, "rewritten header is longer than the original"
        f.seek(8)
        f.write(text + b" " * (n - len(text)))
    os.chmod(path, 0o644)


def write_checkpoint(path, models, rows, configs):
    """The single-file LDM checkpoint: every tensor under its component prefix + LDM name, F16."""
    tensors = {}
    for component, model in models.items():
        sd = model.state_dict()
        for dname, lname, _, lshape in rows[component]:
            t = sd[dname].detach().half().reshape(lshape).contiguous()
            # the fp32 weights were rounded to F16 already, so this conversion is exact
            assert torch.equal(t.float().reshape(sd[dname].shape), sd[dname])
            tensors[PREFIX[component] + lname] = t
    meta = {"format": "pt", "unet_config": configs["unet"], "text_encoder_config": configs["text_encoder"],
            "vae_config": configs["vae"]}
    save(tensors, path, meta)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def unet_io(unet, ldm_to_diffusers, config_json):
    gen = torch.Generator().manual_seed(SEED_UNET_IO)
    x = torch.randn(2, 4, 16, 16, generator=gen)
    timesteps = torch.tensor([999.0, 17.5], dtype=torch.float32)   # fractional t exercises the fp32 sinusoid
    context = torch.randn(2, 77, 48, generator=gen)
    dout = torch.randn(2, 4, 16, 16, generator=gen)

    unet.zero_grad(set_to_none=True)
    xl = x.clone().requires_grad_(True)
    cl = context.clone().requires_grad_(True)
    out = unet(xl, timesteps, encoder_hidden_states=cl).sample
    (out * dout).sum().backward()

    params = dict(unet.named_parameters())
    tensors = {"x": x, "timesteps": timesteps, "context": context, "out": f32(out), "dout": dout,
               "grad.x": f32(xl.grad), "grad.context": f32(cl.grad)}
    for lname in UNET_GRAD_PARAMS:
        tensors["grad." + lname] = f32(params[ldm_to_diffusers[lname]].grad)
    meta = {"config": config_json, "description":
            "tiny SD1.5 UNet (sd15_tiny.safetensors), fp32 on CPU: out = unet(x, timesteps, "
            "encoder_hidden_states=context).sample; grad.* = gradients of sum(out * dout); parameter "
            "gradients are named by LDM name without model.diffusion_model., in the file layout"}
    return tensors, meta


def clip_io(text, config_json):
    gen = torch.Generator().manual_seed(SEED_CLIP_IO)
    bos, eos = TINY_TEXT["bos_token_id"], TINY_TEXT["eos_token_id"]
    # Row 0: a short prompt, EOS, then padding with EOS (SD1.5's tokenizer pads with EOS).
    # Row 1: a full window, 75 tokens between BOS and EOS.
    row0 = [bos] + torch.randint(0, bos, (20,), generator=gen).tolist() + [eos] * 56
    row1 = [bos] + torch.randint(0, bos, (75,), generator=gen).tolist() + [eos]
    input_ids = torch.tensor([row0, row1], dtype=torch.int64)
    assert input_ids.shape == (2, 77)
    dout = torch.randn(2, 77, 48, generator=gen)

    text.zero_grad(set_to_none=True)
    res = text(input_ids=input_ids, output_hidden_states=True)
    hs = res.hidden_states
    assert len(hs) == TINY_TEXT["num_hidden_layers"] + 1
    # hidden_states[0] is the embedding output (token + position), the tensor that enters layer 0;
    # retain_grad() keeps its gradient although it is not a leaf.
    hs[0].retain_grad()
    with torch.no_grad():
        # kohya clip_skip=2: the penultimate layer's output through final_layer_norm
        clip_skip2 = text.text_model.final_layer_norm(hs[-2])
        # hidden_states[-1] is the last layer's output before the final LayerNorm
        assert torch.equal(text.text_model.final_layer_norm(hs[-1]), res.last_hidden_state)
    # The cotangent only touches last_hidden_state; hidden_states share its graph and add nothing.
    (res.last_hidden_state * dout).sum().backward()

    tensors = {"input_ids": input_ids, "last_hidden_state": f32(res.last_hidden_state),
               "pooled": f32(res.pooler_output), "clip_skip2": f32(clip_skip2), "dout": dout,
               "grad.embeddings": f32(hs[0].grad)}
    for i, h in enumerate(hs):
        tensors["hidden_states.%d" % i] = f32(h)
    params = dict(text.named_parameters())
    for name in CLIP_GRAD_PARAMS:
        tensors["grad." + name] = f32(params[name].grad)

    # transformers 4.44 pools at the FIRST position holding eos_token_id (the argmax-of-ids rule applies
    # only when eos_token_id == 2). Confirm the stored pooled vector is that row.
    first_eos = (input_ids == eos).int().argmax(dim=1)
    assert first_eos.tolist() == [21, 76]
    assert torch.equal(res.pooler_output, res.last_hidden_state[torch.arange(2), first_eos])
    meta = {"config": config_json, "description":
            "tiny CLIP text encoder (sd15_tiny.safetensors), fp32 on CPU: text(input_ids, "
            "output_hidden_states=True); pooled = last_hidden_state at the first eos_token_id; "
            "clip_skip2 = final_layer_norm(hidden_states[-2]); grad.* = gradients of "
            "sum(last_hidden_state * dout); grad.embeddings is w.r.t. hidden_states[0]"}
    return tensors, meta


@torch.no_grad()
def vae_io(vae, config_json):
    gen = torch.Generator().manual_seed(SEED_VAE_IO)
    image = torch.rand(1, 3, 32, 32, generator=gen) * 2.0 - 1.0
    z = torch.randn(1, 4, 4, 4, generator=gen)
    # latent_dist.parameters is quant_conv(encoder(image)) before any split / clamp
    moments = vae.encode(image).latent_dist.parameters
    assert torch.equal(moments, vae.quant_conv(vae.encoder(image)))
    # decode = decoder(post_quant_conv(z)); no scaling factor, no clamp
    decoded = vae.decode(z).sample
    tensors = {"image": image, "moments": f32(moments), "z": z, "decoded": f32(decoded)}
    meta = {"config": config_json, "description":
            "tiny SD VAE (sd15_tiny.safetensors), fp32 on CPU: moments = quant_conv(encoder(image)) "
            "(mean = channels 0..3, logvar = 4..7, not clamped); decoded = decoder(post_quant_conv(z))"}
    return tensors, meta


# ---------------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/data/models", help="output folder (default tests/data/models)")
    ap.add_argument("--check", action="store_true", help="run check_model_fixtures.py on the output afterwards")
    args = ap.parse_args()

    torch.set_num_threads(1)   # same reduction order on every run
    os.makedirs(args.out, exist_ok=True)
    cfg_dir = os.path.join(args.out, "diffusers_configs")
    if os.path.isdir(cfg_dir):
        shutil.rmtree(cfg_dir)

    # --- tiny models: fixtures -------------------------------------------------------------------------
    tiny = {}
    constant = {}
    for component, build, cfg, seed in (("unet", build_unet, TINY_UNET, SEED_UNET),
                                        ("text_encoder", build_text, TINY_TEXT, SEED_TEXT),
                                        ("vae", build_vae, TINY_VAE, SEED_VAE)):
        torch.manual_seed(seed)   # default init draws from the global generator
        model = build(cfg).eval()
        constant[component] = randomise(model, torch.Generator().manual_seed(seed + 100))
        tiny[component] = model
    for component, names in constant.items():
        print("%s: %d non-norm tensors were constant after default init%s" % (
            component, len(names), (": " + ", ".join(names[:3]) + (", ..." if len(names) > 3 else ""))
            if names else ""))

    tiny_cfg = {"unet": TINY_UNET, "text_encoder": TINY_TEXT, "vae": TINY_VAE}
    tiny_rows = {c: keymap_rows(c, tiny[c], tiny_cfg[c]) for c in ("unet", "vae", "text_encoder")}
    configs = {"unet": diffusers_config_json(tiny["unet"]), "vae": diffusers_config_json(tiny["vae"]),
               "text_encoder": text_config_json(tiny["text_encoder"])}

    written = []
    path = os.path.join(args.out, "sd15_tiny.safetensors")
    write_checkpoint(path, tiny, tiny_rows, configs)
    written.append(path)

    ldm_to_diffusers_unet = {r[1]: r[0] for r in tiny_rows["unet"]}
    for fname, (tensors, meta) in (
            ("unet_tiny_io.safetensors", unet_io(tiny["unet"], ldm_to_diffusers_unet, configs["unet"])),
            ("clip_tiny_io.safetensors", clip_io(tiny["text_encoder"], configs["text_encoder"])),
            ("vae_tiny_io.safetensors", vae_io(tiny["vae"], configs["vae"]))):
        for name, t in tensors.items():
            assert bool(torch.isfinite(t.float()).all()), fname + ": " + name
        path = os.path.join(args.out, fname)
        save(tensors, path, meta)
        written.append(path)

    for component, model in tiny.items():
        save_folder_config(os.path.join(cfg_dir, "sd15_tiny"), component, model)
    keymap = {"sd15_tiny": dict(tiny_rows), "sd15": {}}
    keymap["sd15_tiny"]["counts"] = {c: sum(_numel(r[2]) for r in tiny_rows[c]) for c in tiny_rows}
    del tiny

    # --- full-size SD1.5: names, shapes and counts only ------------------------------------------------
    # Built one at a time (the UNet alone is 3.4 GB in fp32); the weights are never used.
    for component, build, cfg in (("unet", build_unet, SD15_UNET), ("vae", build_vae, SD15_VAE),
                                  ("text_encoder", build_text, SD15_TEXT)):
        model = build(cfg)
        rows = keymap_rows(component, model, cfg)
        count = sum(_numel(r[2]) for r in rows)
        assert count == SD15_COUNTS[component], (component, count, SD15_COUNTS[component])
        keymap["sd15"][component] = rows
        keymap["sd15"].setdefault("counts", {})[component] = count
        save_folder_config(os.path.join(cfg_dir, "sd15"), component, model)
        del model

    path = os.path.join(args.out, "keymap_sd15.json")
    with open(path, "w") as f:
        # one row per line keeps the file readable and its diffs small
        f.write("{\n")
        for mi, model_key in enumerate(("sd15", "sd15_tiny")):
            f.write('  "%s": {\n' % model_key)
            entries = keymap[model_key]
            for component in ("unet", "vae", "text_encoder"):
                f.write('    "%s": [\n' % component)
                rows = entries[component]
                for ri, row in enumerate(rows):
                    f.write("      " + json.dumps(row) + ("," if ri + 1 < len(rows) else "") + "\n")
                f.write("    ],\n")
            f.write('    "counts": ' + json.dumps(entries["counts"]) + "\n")
            f.write("  }" + ("," if mi == 0 else "") + "\n")
        f.write("}\n")
    json.load(open(path))   # the hand-formatted file must still be valid JSON
    written.append(path)

    for p in written:
        print("%-50s %9d bytes" % (p, os.path.getsize(p)))
    for root, _, files in sorted(os.walk(cfg_dir)):
        for fn in sorted(files):
            print(os.path.join(root, fn))

    if args.check:
        checker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_model_fixtures.py")
        return subprocess.call([sys.executable, checker, args.out])
    return 0


if __name__ == "__main__":
    sys.exit(main())
