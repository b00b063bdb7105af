#!/usr/bin/env python3
"""Reference runs of kohya-style LoRA training for tests/train/test_lora_reference.c (developer-only).

The tiny SD1.5 model (tests/data/models/sd15_tiny.safetensors) is loaded into diffusers'
UNet2DConditionModel and transformers' CLIPTextModel (fp32, CPU) through tests/data/models/keymap_sd15.json.
A LoRA network is attached as sd-scripts' networks/lora.py does it: the forward of every Linear and Conv2d
inside the target modules is wrapped, y = org(x) + up(down(x)) * multiplier * scale with scale = alpha / dim,
lora_down initialised with kaiming_uniform_(a=sqrt(5)) from a fixed seed and lora_up with zeros.

Then 20 training steps run with kohya's process_batch (kohya_inventory.md section 2.13) on fixed inputs:
text encoder (with its LoRA) -> last hidden state (clip_skip 1) as context; noisy = DDPMScheduler
(scaled_linear) add_noise(latents, noise, t); MSE(UNet(noisy, t, context), noise) averaged over every
element; backward; clip_grad_norm_ (max norm 1.0; 0.05 in the SGD run) over every LoRA parameter;
optimizer step; zero grads. Two parameter groups (text encoder lr 5e-5, UNet lr 1e-4), constant learning
rates. diffusers' attention scores are computed without torch.baddbmm (see attention_scores).

Files written into the output folder (tests/data/train/):

    lora_reference_inputs.safetensors   per-step inputs shared by every run, channels-last as the engine
                                        wants them: latents / noise [steps, 2, 8, 8, 4] F32,
                                        timesteps [steps, 2] I32, input_ids [steps, 2, 77] I32
    lora_reference_init.safetensors     the initial network as a kohya LoRA file (dim 4, alpha 2), F16
    lora_reference_locon_init.safetensors
                                        the same with conv_dim 4 / conv_alpha 1 (LoCon: ResnetBlock2D,
                                        Downsample2D, Upsample2D)
    lora_reference_<run>.safetensors    loss [steps] F64 and grad_norm [steps] F64 (the total norm before
                                        clipping) as computed in fp32, and "final.<kohya key>" F32: the
                                        weights of a few modules after the last step, in the file layout

Runs: adamw (torch AdamW, weight_decay 0.01), lion (the published update, as make_optim_fixtures.py has
it, weight_decay 0.01), sgd_nesterov (torch SGD, momentum 0.9, nesterov), adamw_locon (AdamW with the
LoCon network).

Usage (from the repository root):
    /work/golden-venv/bin/python tools/train/make_lora_fixtures.py tests/data/train
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

MODEL = "tests/data/models/sd15_tiny.safetensors"
KEYMAP = "tests/data/models/keymap_sd15.json"
PREFIX = {"unet": "model.diffusion_model.", "text_encoder": "cond_stage_model.transformer."}

STEPS = 20
BATCH = 2
LATENT = 8  # latents [BATCH, 4, LATENT, LATENT]: the tiny UNet's 4 levels go down to 1x1
TOKENS = 77
BOS, EOS = 998, 999  # the tiny vocabulary's (1000 ids); padding is EOS as in SD1.5
NETWORK_DIM, NETWORK_ALPHA = 4, 2.0
CONV_DIM, CONV_ALPHA = 4, 1.0
TE_LR, UNET_LR = 5e-5, 1e-4
MAX_GRAD_NORM = 1.0
SEED_INPUTS, SEED_NETWORK, SEED_LOCON = 3601, 3602, 3603

UNET_TARGETS = ("Transformer2DModel",)
UNET_CONV_TARGETS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
TE_TARGETS = ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP")

# Modules whose final weights are stored: every kind of target (1x1-conv proj_in, self- and
# cross-attention, feed-forward, both text-encoder kinds; with LoCon a 3x3 conv, a downsampler, an
# upsampler, a time-embedding projection and a 1x1 shortcut).
FINAL_MODULES = [
    "lora_unet_down_blocks_0_attentions_0_proj_in",
    "lora_unet_down_blocks_1_attentions_1_transformer_blocks_0_attn1_to_q",
    "lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_attn2_to_k",
    "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_out_0",
    "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_0_proj",
    "lora_unet_up_blocks_3_attentions_2_proj_out",
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
    "lora_te_text_model_encoder_layers_2_mlp_fc2",
]
FINAL_LOCON_MODULES = [
    "lora_unet_down_blocks_0_resnets_0_conv1",
    "lora_unet_down_blocks_0_downsamplers_0_conv",
    "lora_unet_up_blocks_0_upsamplers_0_conv",
    "lora_unet_mid_block_resnets_1_time_emb_proj",
    "lora_unet_up_blocks_1_resnets_0_conv_shortcut",
]


# ---------------------------------------------------------------------------------------------------------
# The tiny model


def attention_scores(self, query, key, attention_mask=None):
    """softmax(scale * q k^T) without torch.baddbmm. diffusers' AttnProcessor (the one torch 1.13 gets, as
    it has no scaled_dot_product_attention) calls baddbmm(torch.empty(...), q, k^T, beta=0), and torch 1.13's
    CPU baddbmm lets NaNs of the uninitialised input through for some shapes (seen at the 2x2 level of the
    8x8 latents): the output is NaN at random."""
    assert attention_mask is None and not self.upcast_attention
    scores = torch.bmm(query, key.transpose(-1, -2)) * self.scale
    return scores.softmax(dim=-1).to(query.dtype)


Attention.get_attention_scores = attention_scores


def load_models():
    with open(KEYMAP) as f:
        keymap = json.load(f)["sd15_tiny"]
    models = {}
    with safe_open(MODEL, framework="pt") as f:
        meta = f.metadata()
        for component in ("unet", "text_encoder"):
            cfg = json.loads(meta[component + "_config"])
            if component == "unet":
                model = UNet2DConditionModel.from_config(cfg)
            else:
                model = CLIPTextModel(CLIPTextConfig.from_dict(cfg))
            sd = {}
            for dname, lname, dshape, _ in keymap[component]:
                sd[dname] = f.get_tensor(PREFIX[component] + lname).float().reshape(dshape).contiguous()
            model.load_state_dict(sd, strict=True)
            for p in model.parameters():
                p.requires_grad_(False)
            models[component] = model
    return models["unet"], models["text_encoder"]


# ---------------------------------------------------------------------------------------------------------
# kohya's LoRA module and network (networks/lora.py, written from kohya_inventory.md section 6)


class LoRAModule(torch.nn.Module):
    def __init__(self, name, org, dim, alpha):
        super().__init__()
        self.lora_name = name
        if isinstance(org, torch.nn.Conv2d):
            self.lora_down = torch.nn.Conv2d(org.in_channels, dim, org.kernel_size, org.stride, org.padding,
                                             bias=False)
            self.lora_up = torch.nn.Conv2d(dim, org.out_channels, (1, 1), (1, 1), bias=False)
        else:
            self.lora_down = torch.nn.Linear(org.in_features, dim, bias=False)
            self.lora_up = torch.nn.Linear(dim, org.out_features, bias=False)
        torch.nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_up.weight)
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.scale = float(alpha) / dim
        self.multiplier = 1.0
        self.org_forward = org.forward
        org.forward = self.forward  # wraps the original module; its weights stay untouched

    def forward(self, x):
        return self.org_forward(x) + self.lora_up(self.lora_down(x)) * self.multiplier * self.scale


def create_modules(prefix, root, targets, conv_dim, conv_alpha):
    """kohya's create_modules: every Linear / Conv2d below a module of a target class."""
    modules = []
    for name, module in root.named_modules():
        if module.__class__.__name__ not in targets:
            continue
        for child_name, child in module.named_modules():
            is_linear = isinstance(child, torch.nn.Linear)
            is_conv = isinstance(child, torch.nn.Conv2d)
            if not (is_linear or is_conv):
                continue
            if is_linear or tuple(child.kernel_size) == (1, 1):
                dim, alpha = NETWORK_DIM, NETWORK_ALPHA
            elif conv_dim:
                dim, alpha = conv_dim, conv_alpha
            else:
                continue
            lora_name = (prefix + "." + name + "." + child_name).replace(".", "_")
            modules.append(LoRAModule(lora_name, child, dim, alpha))
    return modules


def create_network(unet, text, conv, seed):
    torch.manual_seed(seed)  # kaiming_uniform_ draws from the global generator
    te = create_modules("lora_te", text, TE_TARGETS, 0, 0)
    targets = UNET_TARGETS + (UNET_CONV_TARGETS if conv else ())
    un = create_modules("lora_unet", unet, targets, CONV_DIM if conv else 0, CONV_ALPHA)
    names = [m.lora_name for m in te + un]
    assert len(set(names)) == len(names), "duplicate module names"
    return te, un


def network_state(modules):
    """The kohya file's tensors (file layout: conv weights [OC, C, KH, KW])."""
    sd = {}
    for m in modules:
        sd[m.lora_name + ".lora_down.weight"] = m.lora_down.weight.detach().clone().contiguous()
        sd[m.lora_name + ".lora_up.weight"] = m.lora_up.weight.detach().clone().contiguous()
        sd[m.lora_name + ".alpha"] = m.alpha.detach().clone()
    return sd


def load_network_state(modules, sd):
    with torch.no_grad():
        for m in modules:
            m.lora_down.weight.copy_(sd[m.lora_name + ".lora_down.weight"].float())
            m.lora_up.weight.copy_(sd[m.lora_name + ".lora_up.weight"].float())


def detach_network(modules):
    """Puts the original forwards back (the models are reused by the next run)."""
    for m in modules:
        m.org_forward.__self__.forward = m.org_forward


# ---------------------------------------------------------------------------------------------------------
# Optimizers


class Lion(torch.optim.Optimizer):
    """sign(b1*m + (1-b1)*g) update with decoupled weight decay, then m = b2*m + (1-b2)*g (as in
    make_optim_fixtures.py)."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                update = m.clone().mul_(b1).add(p.grad, alpha=1 - b1).sign_()
                p.add_(update, alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


OPTIMIZERS = {
    "adamw": ("AdamW(weight_decay=0.01)",
              lambda groups: torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)),
    "lion": ("Lion(betas=(0.9, 0.99), weight_decay=0.01)",
             lambda groups: Lion(groups, betas=(0.9, 0.99), weight_decay=0.01)),
    "sgd_nesterov": ("SGD(momentum=0.9, nesterov=True)",
                     lambda groups: torch.optim.SGD(groups, lr=1.0, momentum=0.9, nesterov=True)),
}
# name, optimizer, LoCon, max_grad_norm. The gradient norms of these runs are about 0.1, so kohya's
# default 1.0 never clips; the SGD run (whose update is proportional to the clipped gradient) clips every
# step.
RUNS = [
    ("adamw", "adamw", False, MAX_GRAD_NORM),
    ("lion", "lion", False, MAX_GRAD_NORM),
    ("sgd_nesterov", "sgd_nesterov", False, 0.05),
    ("adamw_locon", "adamw", True, MAX_GRAD_NORM),
]


# ---------------------------------------------------------------------------------------------------------
# Inputs and the training loop


def make_inputs():
    gen = torch.Generator().manual_seed(SEED_INPUTS)
    latents = torch.randn(STEPS, BATCH, 4, LATENT, LATENT, generator=gen)
    noise = torch.randn(STEPS, BATCH, 4, LATENT, LATENT, generator=gen)
    timesteps = torch.randint(0, 1000, (STEPS, BATCH), generator=gen)
    ids = torch.full((STEPS, BATCH, TOKENS), EOS, dtype=torch.int64)
    for s in range(STEPS):
        for b in range(BATCH):
            n = int(torch.randint(1, 40, (1,), generator=gen))  # caption tokens between BOS and EOS
            ids[s, b, 0] = BOS
            ids[s, b, 1:1 + n] = torch.randint(0, BOS, (n,), generator=gen)
    return latents, noise, timesteps, ids


def train(unet, text, te_modules, unet_modules, optimizer_name, max_grad_norm, inputs):
    latents, noise, timesteps, ids = inputs
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False)
    te_params = [p for m in te_modules for p in (m.lora_down.weight, m.lora_up.weight)]
    unet_params = [p for m in unet_modules for p in (m.lora_down.weight, m.lora_up.weight)]
    groups = [{"params": te_params, "lr": TE_LR}, {"params": unet_params, "lr": UNET_LR}]
    optimizer = OPTIMIZERS[optimizer_name][1](groups)
    params = te_params + unet_params
    unet.train()
    text.train()
    losses, norms = [], []
    for s in range(STEPS):
        context = text(ids[s]).last_hidden_state  # clip_skip 1
        noisy = scheduler.add_noise(latents[s], noise[s], timesteps[s])
        pred = unet(noisy, timesteps[s], context).sample
        loss = F.mse_loss(pred.float(), noise[s].float(), reduction="none").mean([1, 2, 3]).mean()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.item()))
        norms.append(float(norm.item()))
    return losses, norms


def save(tensors, path, metadata):
    """safetensors' save_file with the metadata keys sorted (byte-reproducible) and mode 0644."""
    save_file(tensors, path, metadata=metadata)
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert len(text) <= n
        f.seek(8)
        f.write(text + b" " * (n - len(text)))
    os.chmod(path, 0o644)
    print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


def channels_last(x):
    """[S, B, C, H, W] -> [S, B, H, W, C]."""
    return x.permute(0, 1, 3, 4, 2).contiguous()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/train"
    torch.set_num_threads(1)  # same reduction order on every run
    unet, text = load_models()
    inputs = make_inputs()
    latents, noise, timesteps, ids = inputs
    save({"latents": channels_last(latents), "noise": channels_last(noise),
          "timesteps": timesteps.to(torch.int32).contiguous(), "input_ids": ids.to(torch.int32).contiguous()},
         os.path.join(out, "lora_reference_inputs.safetensors"),
         {"description": "per-step inputs of the LoRA reference runs (tools/train/make_lora_fixtures.py); "
                         "latents and noise channels-last [step, batch, h, w, c]",
          "steps": str(STEPS), "batch": str(BATCH)})

    initial = {}
    for conv, seed, fname in ((False, SEED_NETWORK, "lora_reference_init.safetensors"),
                              (True, SEED_LOCON, "lora_reference_locon_init.safetensors")):
        te, un = create_network(unet, text, conv, seed)
        print("%s: %d text-encoder modules, %d UNet modules" % (fname, len(te), len(un)))
        if not conv:
            assert len(te) == 6 * 3 and len(un) == 16 * 12, (len(te), len(un))
        # Stored in F16, as kohya saves with --save_precision fp16; the runs start from the rounded values.
        initial[conv] = {k: v.half() for k, v in network_state(te + un).items()}
        detach_network(te + un)
        meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(NETWORK_DIM),
                "ss_network_alpha": str(NETWORK_ALPHA)}
        if conv:
            meta["ss_network_args"] = json.dumps({"conv_dim": str(CONV_DIM), "conv_alpha": str(CONV_ALPHA)})
        save(initial[conv], os.path.join(out, fname), meta)

    for run, optimizer_name, conv, max_grad_norm in RUNS:
        te, un = create_network(unet, text, conv, SEED_LOCON if conv else SEED_NETWORK)
        load_network_state(te + un, initial[conv])
        losses, norms = train(unet, text, te, un, optimizer_name, max_grad_norm, inputs)
        final = network_state(te + un)
        detach_network(te + un)
        tensors = {"loss": torch.tensor(losses, dtype=torch.float64),
                   "grad_norm": torch.tensor(norms, dtype=torch.float64)}
        for name in FINAL_MODULES + (FINAL_LOCON_MODULES if conv else []):
            for suffix in (".lora_down.weight", ".lora_up.weight"):
                tensors["final." + name + suffix] = final[name + suffix]
        meta = {"description": "kohya-style LoRA training reference (tools/train/make_lora_fixtures.py)",
                "optimizer": OPTIMIZERS[optimizer_name][0], "network": "locon" if conv else "lora",
                "init": "lora_reference_locon_init.safetensors" if conv else "lora_reference_init.safetensors",
                "text_encoder_lr": repr(TE_LR), "unet_lr": repr(UNET_LR), "max_grad_norm": repr(max_grad_norm)}
        save(tensors, os.path.join(out, "lora_reference_%s.safetensors" % run), meta)
        print("%s: loss %s ... %s, grad norm %.4g ... %.4g" % (run, losses[0], losses[-1], norms[0], norms[-1]))


if __name__ == "__main__":
    main()
