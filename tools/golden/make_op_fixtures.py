#!/usr/bin/python3
"""Write the golden op fixtures described in docs/ops.md (developer-only).

One safetensors file per case, <case>.safetensors, in the output folder. Each holds the inputs of the op
under their slot names (F32), `dout` (F32, shaped like `out`), the expected `out` and `grad.<slot>` for
every differentiable input, plus `__metadata__` with `op`, `case` and every dimension key of the op.

Inputs are random F32 values drawn from a generator seeded by the case name. The references are computed
by PyTorch in float64 from those F32 values, with the functions diffusers / transformers call, in
PyTorch's own layouts (NCHW images, [OC, C, KH, KW] conv weights, [B, H, L, D] attention heads); the
results are permuted to sdtune's channels-last layouts and rounded to F32 once. The one exception is
timestep_embedding, whose reference is diffusers' own fp32 computation (SD runs it in fp32).

Usage:
    /usr/bin/python3 tools/golden/make_op_fixtures.py --out tests/data/ops
    /usr/bin/python3 tools/golden/make_op_fixtures.py --out tests/data/ops --check

--check runs tools/golden/check_op_fixtures.py on the folder afterwards.
"""

import argparse
import glob
import json
import math
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

# Dimension keys of every op, in the order of docs/ops.md.
OP_DIMS = {
    "linear": ["N", "C", "OC", "bias"],
    "conv2d": ["B", "H", "W", "C", "OC", "KH", "KW", "stride", "pad_top", "pad_left", "pad_bottom",
               "pad_right", "bias"],
    "group_norm": ["B", "HW", "C", "G", "eps", "silu"],
    "layer_norm": ["N", "C", "eps"],
    "attention": ["B", "Lq", "Lk", "H", "D", "causal"],
    "softmax": ["N", "C"],
    "silu": ["N"],
    "gelu": ["N"],
    "gelu_tanh": ["N"],
    "quick_gelu": ["N"],
    "geglu": ["N", "F"],
    "add": ["N"],
    "add_channel_vector": ["B", "HW", "C"],
    "concat": ["N", "Ca", "Cb"],
    "upsample2x": ["B", "H", "W", "C"],
    "timestep_embedding": ["B", "dim", "flip", "shift", "max_period"],
    "mse_loss": ["B", "N", "weighted"],
}


# ---------------------------------------------------------------------------------------------------------
# safetensors writer (standard library + numpy)

def write_safetensors(path, tensors, metadata):
    """tensors: dict name -> np.ndarray (float32). metadata: dict str -> str (kept in insertion order)."""
    names = sorted(tensors)  # all F32: the reference writer orders equal dtypes by name
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in names:
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        data = arr.tobytes(order="C")
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def meta_value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    raise TypeError(v)


# ---------------------------------------------------------------------------------------------------------
# helpers

class Rand:
    """Seeded F32 draws; the seed comes from the case name so adding a case does not change the others."""

    def __init__(self, case):
        self.g = torch.Generator().manual_seed(zlib.crc32(case.encode("utf-8")))

    def randn(self, *shape, scale=1.0, shift=0.0):
        x = torch.randn(*shape, generator=self.g, dtype=torch.float32)
        return (x * scale + shift).to(torch.float32)

    def uniform(self, *shape, lo=0.0, hi=1.0):
        x = torch.rand(*shape, generator=self.g, dtype=torch.float32)
        return (lo + (hi - lo) * x).to(torch.float32)


def leaf(x32, perm=None):
    """F32 value in sdtune layout -> float64 leaf tensor in PyTorch layout (perm applied), requiring grad."""
    x = x32.to(torch.float64)
    if perm is not None:
        x = x.permute(*perm)
    return x.contiguous().requires_grad_(True)


def inv_perm(perm):
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return out


def to_sd(t, perm=None):
    """PyTorch-layout tensor -> sdtune layout (inverse of perm), detached float64."""
    t = t.detach()
    if perm is not None:
        t = t.permute(*inv_perm(perm))
    return t.contiguous()


def f32(t):
    return t.detach().to(torch.float64).contiguous().numpy().astype("<f4")


NHWC_TO_NCHW = (0, 3, 1, 2)


def finish(op, case, dims, inputs, out_sd, dout_sd, grads_sd):
    """Assemble the tensors and metadata of one fixture."""
    tensors = {}
    for name, value in inputs.items():
        tensors[name] = f32(value)
    tensors["out"] = f32(out_sd)
    tensors["dout"] = f32(dout_sd)
    for name, value in grads_sd.items():
        tensors["grad." + name] = f32(value)
    meta = {"op": op, "case": case}
    for key in OP_DIMS[op]:
        meta[key] = meta_value(dims[key])
    return tensors, meta


# ---------------------------------------------------------------------------------------------------------
# the ops; each returns (tensors, metadata)

def case_linear(N, C, OC, bias):
    case = "linear_N%d_C%d_OC%d_%s" % (N, C, OC, "bias" if bias else "nobias")
    r = Rand(case)
    x = r.randn(N, C)
    w = r.randn(OC, C, scale=1.0 / math.sqrt(C))
    b = r.randn(OC, scale=0.5) if bias else None
    X, Wt = leaf(x), leaf(w)
    Bt = leaf(b) if bias else None
    out = F.linear(X, Wt, Bt)
    dout = r.randn(N, OC)
    out.backward(dout.to(torch.float64))
    inputs = {"x": x, "weight": w}
    grads = {"x": X.grad, "weight": Wt.grad}
    if bias:
        inputs["bias"] = b
        grads["bias"] = Bt.grad
    dims = dict(N=N, C=C, OC=OC, bias=int(bias))
    return case, finish("linear", case, dims, inputs, out, dout, grads)


def case_conv2d(B, H, W, C, OC, KH, KW, stride, pads, bias):
    pt, pl, pb, pr = pads
    ksz = "K%d" % KH if KH == KW else "K%dx%d" % (KH, KW)
    case = "conv2d_B%d_H%d_W%d_C%d_OC%d_%s_s%d_p%d%d%d%d_%s" % (
        B, H, W, C, OC, ksz, stride, pt, pl, pb, pr, "bias" if bias else "nobias")
    r = Rand(case)
    x = r.randn(B, H, W, C)                                      # sdtune [B, H, W, C]
    w = r.randn(OC, KH, KW, C, scale=1.0 / math.sqrt(C * KH * KW))  # sdtune [OC, KH, KW, C]
    b = r.randn(OC, scale=0.5) if bias else None
    X = leaf(x, NHWC_TO_NCHW)    # [B, C, H, W]
    Wt = leaf(w, NHWC_TO_NCHW)   # [OC, C, KH, KW]
    Bt = leaf(b) if bias else None
    if pt == pb and pl == pr:
        # diffusers' UNet convs (and 1x1 convs): symmetric padding inside the conv
        out = F.conv2d(X, Wt, Bt, stride=stride, padding=(pt, pl))
    else:
        # diffusers' VAE Downsample2D: F.pad(x, (0, 1, 0, 1)) then conv with padding 0; F.pad's order is
        # (left, right, top, bottom)
        out = F.conv2d(F.pad(X, (pl, pr, pt, pb)), Wt, Bt, stride=stride, padding=0)
    OH = (H + pt + pb - KH) // stride + 1
    OW = (W + pl + pr - KW) // stride + 1
    assert tuple(out.shape) == (B, OC, OH, OW)
    dout = r.randn(B, OH, OW, OC)                                # sdtune layout
    out.backward(dout.to(torch.float64).permute(*NHWC_TO_NCHW))
    inputs = {"x": x, "weight": w}
    grads = {"x": to_sd(X.grad, NHWC_TO_NCHW), "weight": to_sd(Wt.grad, NHWC_TO_NCHW)}
    if bias:
        inputs["bias"] = b
        grads["bias"] = Bt.grad
    dims = dict(B=B, H=H, W=W, C=C, OC=OC, KH=KH, KW=KW, stride=stride, pad_top=pt, pad_left=pl,
                pad_bottom=pb, pad_right=pr, bias=int(bias))
    return case, finish("conv2d", case, dims, inputs, to_sd(out, NHWC_TO_NCHW), dout, grads)


def case_group_norm(B, HW, C, G, eps, silu):
    case = "group_norm_B%d_HW%d_C%d_G%d_eps%s_silu%d" % (B, HW, C, G, repr(eps), silu)
    r = Rand(case)
    x = r.randn(B, HW, C, scale=2.0, shift=0.5)   # sdtune [B, HW, C]
    w = r.randn(C, scale=0.3, shift=1.0)
    b = r.randn(C, scale=0.3)
    # PyTorch layout: NCHW with the HW positions as H and W = 1, i.e. [B, C, HW, 1]
    perm = (0, 2, 1)
    X = leaf(x, perm)
    Wt, Bt = leaf(w), leaf(b)
    out = F.group_norm(X.unsqueeze(-1), G, Wt, Bt, eps)
    if silu:
        out = F.silu(out)
    out = out.squeeze(-1)                         # [B, C, HW]
    dout = r.randn(B, HW, C)
    out.backward(dout.to(torch.float64).permute(*perm))
    inputs = {"x": x, "weight": w, "bias": b}
    grads = {"x": to_sd(X.grad, perm), "weight": Wt.grad, "bias": Bt.grad}
    dims = dict(B=B, HW=HW, C=C, G=G, eps=eps, silu=silu)
    return case, finish("group_norm", case, dims, inputs, to_sd(out, perm), dout, grads)


def case_layer_norm(N, C, eps):
    case = "layer_norm_N%d_C%d_eps%s" % (N, C, repr(eps))
    r = Rand(case)
    x = r.randn(N, C, scale=1.5, shift=-0.3)
    w = r.randn(C, scale=0.3, shift=1.0)
    b = r.randn(C, scale=0.3)
    X, Wt, Bt = leaf(x), leaf(w), leaf(b)
    out = F.layer_norm(X, (C,), Wt, Bt, eps)
    dout = r.randn(N, C)
    out.backward(dout.to(torch.float64))
    dims = dict(N=N, C=C, eps=eps)
    return case, finish("layer_norm", case, dims, {"x": x, "weight": w, "bias": b}, out, dout,
                        {"x": X.grad, "weight": Wt.grad, "bias": Bt.grad})


def case_attention(B, Lq, Lk, H, D, causal):
    assert not causal or Lq == Lk
    case = "attention_B%d_Lq%d_Lk%d_H%d_D%d_%s" % (B, Lq, Lk, H, D, "causal" if causal else "full")
    r = Rand(case)
    # unit-variance q and k: the scaled scores have a standard deviation of about 1 (softmax not saturated)
    q = r.randn(B, Lq, H * D)
    k = r.randn(B, Lk, H * D)
    v = r.randn(B, Lk, H * D)
    Q, K, V = leaf(q), leaf(k), leaf(v)   # [B, L, H*D] is also the projections' layout in PyTorch

    def heads(t, L):  # [B, L, H*D] -> [B, H, L, D], channel h*D + d = element d of head h
        return t.reshape(B, L, H, D).permute(0, 2, 1, 3)

    scores = torch.matmul(heads(Q, Lq), heads(K, Lk).transpose(-1, -2)) * (D ** -0.5)
    if causal:
        # CLIP's causal mask: -inf above the diagonal (query i sees keys j <= i)
        mask = torch.full((Lq, Lk), float("-inf"), dtype=torch.float64).triu(1)
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1)
    ctx = torch.matmul(probs, heads(V, Lk))                    # [B, H, Lq, D]
    out = ctx.permute(0, 2, 1, 3).reshape(B, Lq, H * D)
    dout = r.randn(B, Lq, H * D)
    out.backward(dout.to(torch.float64))
    dims = dict(B=B, Lq=Lq, Lk=Lk, H=H, D=D, causal=int(causal))
    return case, finish("attention", case, dims, {"q": q, "k": k, "v": v}, out, dout,
                        {"q": Q.grad, "k": K.grad, "v": V.grad})


def case_softmax(N, C, scale=2.0, shift=0.0, tag=""):
    case = "softmax_N%d_C%d%s" % (N, C, tag)
    r = Rand(case)
    x = r.randn(N, C, scale=scale, shift=shift)
    X = leaf(x)
    out = torch.softmax(X, dim=-1)
    dout = r.randn(N, C)
    out.backward(dout.to(torch.float64))
    return case, finish("softmax", case, dict(N=N, C=C), {"x": x}, out, dout, {"x": X.grad})


ACTIVATIONS = {
    "silu": lambda x: F.silu(x),
    "gelu": lambda x: F.gelu(x, approximate="none"),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),   # transformers' QuickGELUActivation
}
SATURATING = [-20.0, -10.0, -6.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0, 10.0, 20.0]


def case_activation(op, N):
    case = "%s_N%d" % (op, N)
    r = Rand(case)
    x = r.randn(N, scale=3.0)
    special = SATURATING if N >= len(SATURATING) else SATURATING[::2][:N]   # both signs when N is small
    x[:len(special)] = torch.tensor(special, dtype=torch.float32)
    X = leaf(x)
    out = ACTIVATIONS[op](X)
    dout = r.randn(N)
    out.backward(dout.to(torch.float64))
    return case, finish(op, case, dict(N=N), {"x": x}, out, dout, {"x": X.grad})


def case_geglu(N, Fd):
    case = "geglu_N%d_F%d" % (N, Fd)
    r = Rand(case)
    x = r.randn(N, 2 * Fd, scale=1.5)
    X = leaf(x)
    hidden, gate = X.chunk(2, dim=-1)        # diffusers GEGLU: proj(x).chunk(2, dim=-1)
    out = hidden * F.gelu(gate)
    dout = r.randn(N, Fd)
    out.backward(dout.to(torch.float64))
    return case, finish("geglu", case, dict(N=N, F=Fd), {"x": x}, out, dout, {"x": X.grad})


def case_add(N):
    case = "add_N%d" % N
    r = Rand(case)
    a = r.randn(N)
    b = r.randn(N)
    A, Bt = leaf(a), leaf(b)
    out = A + Bt
    dout = r.randn(N)
    out.backward(dout.to(torch.float64))
    return case, finish("add", case, dict(N=N), {"a": a, "b": b}, out, dout, {"a": A.grad, "b": Bt.grad})


def case_add_channel_vector(B, HW, C):
    case = "add_channel_vector_B%d_HW%d_C%d" % (B, HW, C)
    r = Rand(case)
    x = r.randn(B, HW, C)
    vec = r.randn(B, C)
    perm = (0, 2, 1)
    X = leaf(x, perm)                  # [B, C, HW]
    V = leaf(vec)
    # diffusers ResnetBlock2D: hidden_states + temb[:, :, None, None] on NCHW (here [B, C, HW, 1])
    out = (X.unsqueeze(-1) + V[:, :, None, None]).squeeze(-1)
    dout = r.randn(B, HW, C)
    out.backward(dout.to(torch.float64).permute(*perm))
    dims = dict(B=B, HW=HW, C=C)
    return case, finish("add_channel_vector", case, dims, {"x": x, "vec": vec}, to_sd(out, perm), dout,
                        {"x": to_sd(X.grad, perm), "vec": V.grad})


def case_concat(N, Ca, Cb):
    case = "concat_N%d_Ca%d_Cb%d" % (N, Ca, Cb)
    r = Rand(case)
    a = r.randn(N, Ca)
    b = r.randn(N, Cb)
    # PyTorch layout: the N rows are the pixels of a [1, C, 1, N] NCHW image; the UNet's skip concat is
    # torch.cat([h, skip], dim=1) on the channel dimension
    to_nchw = lambda t: leaf(t.reshape(1, 1, N, -1), NHWC_TO_NCHW)
    A, Bt = to_nchw(a), to_nchw(b)
    out = torch.cat([A, Bt], dim=1)                       # [1, Ca+Cb, 1, N]
    dout = r.randn(N, Ca + Cb)
    out.backward(dout.to(torch.float64).reshape(1, 1, N, Ca + Cb).permute(*NHWC_TO_NCHW))
    back = lambda t, c: to_sd(t, NHWC_TO_NCHW).reshape(N, c)
    dims = dict(N=N, Ca=Ca, Cb=Cb)
    return case, finish("concat", case, dims, {"a": a, "b": b}, back(out, Ca + Cb), dout,
                        {"a": back(A.grad, Ca), "b": back(Bt.grad, Cb)})


def case_upsample2x(B, H, W, C):
    case = "upsample2x_B%d_H%d_W%d_C%d" % (B, H, W, C)
    r = Rand(case)
    x = r.randn(B, H, W, C)
    X = leaf(x, NHWC_TO_NCHW)
    out = F.interpolate(X, scale_factor=2.0, mode="nearest")   # diffusers Upsample2D
    dout = r.randn(B, 2 * H, 2 * W, C)
    out.backward(dout.to(torch.float64).permute(*NHWC_TO_NCHW))
    dims = dict(B=B, H=H, W=W, C=C)
    return case, finish("upsample2x", case, dims, {"x": x}, to_sd(out, NHWC_TO_NCHW), dout,
                        {"x": to_sd(X.grad, NHWC_TO_NCHW)})


def timestep_embedding_fp32(t, dim, flip, shift, max_period):
    """diffusers' get_timestep_embedding, step by step and in fp32 as diffusers computes it."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32)
    exponent = exponent / (half - shift)
    freqs = torch.exp(exponent)
    args = t[:, None].float() * freqs[None, :]
    args = 1 * args                                           # diffusers' `scale` (1 for SD)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


def case_timestep_embedding(dim, flip, shift, max_period, tvals):
    B = len(tvals)
    case = "timestep_embedding_B%d_dim%d_flip%d_shift%d_mp%d" % (B, dim, flip, shift, max_period)
    r = Rand(case)
    t = torch.tensor(tvals, dtype=torch.float32)
    out = timestep_embedding_fp32(t, dim, flip, shift, max_period)
    assert out.dtype == torch.float32
    dout = r.randn(B, dim)   # no backward (timesteps are data); kept for a uniform file format
    dims = dict(B=B, dim=dim, flip=flip, shift=shift, max_period=max_period)
    return case, finish("timestep_embedding", case, dims, {"t": t}, out, dout, {})


def case_mse_loss(B, N, weighted):
    case = "mse_loss_B%d_N%d_%s" % (B, N, "weighted" if weighted else "unweighted")
    r = Rand(case)
    pred = r.randn(B, N)
    target = r.randn(B, N)
    P, T = leaf(pred), target.to(torch.float64)
    per_sample = F.mse_loss(P, T, reduction="none").mean(dim=1)
    inputs = {"pred": pred, "target": target}
    if weighted:
        weight = r.uniform(B, lo=0.2, hi=2.0)    # positive, like min-SNR weights
        inputs["weight"] = weight
        per_sample = per_sample * weight.to(torch.float64)
    out = per_sample.mean()
    dout = r.randn(1)
    out.backward(dout.to(torch.float64).reshape(()))
    dims = dict(B=B, N=N, weighted=int(weighted))
    return case, finish("mse_loss", case, dims, inputs, out.reshape(1), dout, {"pred": P.grad})


# ---------------------------------------------------------------------------------------------------------
# the case list

def all_cases():
    yield lambda: case_linear(6, 16, 24, True)
    yield lambda: case_linear(6, 16, 24, False)
    yield lambda: case_linear(4, 320, 40, True)
    yield lambda: case_linear(3, 7, 5, False)
    yield lambda: case_linear(1, 77, 3, True)

    # UNet 3x3 conv (pad 1), with and without bias
    yield lambda: case_conv2d(2, 8, 8, 4, 6, 3, 3, 1, (1, 1, 1, 1), True)
    yield lambda: case_conv2d(2, 8, 8, 4, 6, 3, 3, 1, (1, 1, 1, 1), False)
    # UNet Downsample2D: 3x3 stride 2 pad 1 (even and odd sizes)
    yield lambda: case_conv2d(2, 8, 8, 4, 5, 3, 3, 2, (1, 1, 1, 1), True)
    yield lambda: case_conv2d(1, 7, 9, 3, 4, 3, 3, 2, (1, 1, 1, 1), True)
    # VAE encoder Downsample2D: pad bottom/right by 1, stride 2
    yield lambda: case_conv2d(2, 8, 8, 3, 4, 3, 3, 2, (0, 0, 1, 1), True)
    yield lambda: case_conv2d(2, 9, 7, 5, 6, 3, 3, 2, (0, 0, 1, 1), True)
    # 1x1 convs (proj_in/out, conv_shortcut)
    yield lambda: case_conv2d(2, 5, 6, 8, 4, 1, 1, 1, (0, 0, 0, 0), True)
    yield lambda: case_conv2d(1, 4, 3, 16, 16, 1, 1, 1, (0, 0, 0, 0), False)
    # non-square images, more channels
    yield lambda: case_conv2d(1, 6, 10, 4, 8, 3, 3, 1, (1, 1, 1, 1), True)
    yield lambda: case_conv2d(1, 4, 4, 32, 16, 3, 3, 1, (1, 1, 1, 1), True)
    # general geometry: non-square kernels, asymmetric pads, no padding
    yield lambda: case_conv2d(1, 7, 6, 3, 2, 1, 3, 1, (0, 1, 0, 1), True)
    yield lambda: case_conv2d(1, 6, 5, 2, 3, 3, 2, 1, (2, 0, 1, 1), True)
    yield lambda: case_conv2d(2, 5, 5, 3, 2, 3, 3, 1, (0, 0, 0, 0), False)
    yield lambda: case_conv2d(1, 9, 8, 2, 3, 3, 3, 3, (1, 1, 1, 1), True)

    for silu in (0, 1):
        for eps in (1e-5, 1e-6):
            yield lambda silu=silu, eps=eps: case_group_norm(2, 16, 64, 32, eps, silu)
        yield lambda silu=silu: case_group_norm(2, 9, 12, 4, 1e-5, silu)
    yield lambda: case_group_norm(1, 20, 96, 32, 1e-6, 1)
    yield lambda: case_group_norm(3, 5, 8, 1, 1e-5, 0)

    yield lambda: case_layer_norm(6, 32, 1e-5)
    yield lambda: case_layer_norm(3, 768, 1e-5)
    yield lambda: case_layer_norm(5, 7, 1e-5)
    yield lambda: case_layer_norm(4, 40, 1e-6)

    # self-attention (UNet heads: D=40, 80, 160 with H=8 for SD1; D=64 for SD2)
    yield lambda: case_attention(1, 12, 12, 8, 40, False)
    yield lambda: case_attention(2, 8, 8, 5, 64, False)
    yield lambda: case_attention(1, 6, 6, 4, 80, False)
    yield lambda: case_attention(1, 5, 5, 1, 160, False)
    yield lambda: case_attention(2, 3, 3, 3, 8, False)
    # cross-attention against text tokens
    yield lambda: case_attention(2, 9, 7, 8, 40, False)
    yield lambda: case_attention(1, 5, 77, 2, 40, False)
    yield lambda: case_attention(1, 6, 7, 2, 80, False)
    yield lambda: case_attention(1, 4, 7, 8, 160, False)
    yield lambda: case_attention(1, 1, 7, 2, 40, False)
    # CLIP's causal self-attention
    yield lambda: case_attention(2, 9, 9, 2, 64, True)
    yield lambda: case_attention(1, 77, 77, 1, 64, True)
    yield lambda: case_attention(1, 9, 9, 12, 64, True)
    yield lambda: case_attention(1, 5, 5, 3, 16, True)

    yield lambda: case_softmax(5, 7)
    yield lambda: case_softmax(4, 77)
    yield lambda: case_softmax(3, 256, scale=10.0, tag="_wide")
    yield lambda: case_softmax(2, 16, scale=3.0, shift=50.0, tag="_shifted")
    yield lambda: case_softmax(3, 1)

    for op in ("silu", "gelu", "gelu_tanh", "quick_gelu"):
        yield lambda op=op: case_activation(op, 200)
        yield lambda op=op: case_activation(op, 7)

    yield lambda: case_geglu(6, 5)
    yield lambda: case_geglu(2, 20)
    yield lambda: case_geglu(4, 1280)

    yield lambda: case_add(37)
    yield lambda: case_add(1000)

    yield lambda: case_add_channel_vector(2, 12, 8)
    yield lambda: case_add_channel_vector(1, 16, 320)
    yield lambda: case_add_channel_vector(3, 1, 5)

    yield lambda: case_concat(12, 5, 3)
    yield lambda: case_concat(8, 320, 320)
    yield lambda: case_concat(5, 1, 7)

    yield lambda: case_upsample2x(2, 3, 4, 5)
    yield lambda: case_upsample2x(1, 4, 4, 32)
    yield lambda: case_upsample2x(1, 5, 3, 3)

    # SD's time_proj: dim 320 (SD1/2), flip_sin_to_cos=True, downscale_freq_shift=0
    yield lambda: case_timestep_embedding(320, 1, 0, 10000, [0.0, 1.0, 999.0, 500.5])
    yield lambda: case_timestep_embedding(320, 1, 0, 10000, [981.0, 25.0, 640.0, 3.0, 777.0, 250.0])
    # SDXL's add_time_proj: dim 256 on the size/crop conditioning values
    yield lambda: case_timestep_embedding(256, 1, 0, 10000, [1024.0, 768.0, 0.0, 64.0, 1024.0, 1024.0])
    # odd dim, the other flip and shift
    yield lambda: case_timestep_embedding(33, 0, 1, 10000, [0.0, 17.0, 999.0])
    yield lambda: case_timestep_embedding(8, 0, 1, 100, [0.5, 3.0])

    yield lambda: case_mse_loss(4, 64, True)
    yield lambda: case_mse_loss(4, 64, False)
    yield lambda: case_mse_loss(3, 256, True)
    yield lambda: case_mse_loss(1, 50, False)
    yield lambda: case_mse_loss(1, 50, True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/data/ops", help="output folder (default tests/data/ops)")
    ap.add_argument("--check", action="store_true", help="run check_op_fixtures.py on the output afterwards")
    args = ap.parse_args()

    torch.set_num_threads(1)   # float64 reductions split the same way on every run
    os.makedirs(args.out, exist_ok=True)
    for stale in glob.glob(os.path.join(args.out, "*.safetensors")):
        os.remove(stale)

    seen = set()
    total = 0
    for make in all_cases():
        case, (tensors, meta) = make()
        if case in seen:
            raise SystemExit("duplicate case name: " + case)
        seen.add(case)
        path = os.path.join(args.out, case + ".safetensors")
        write_safetensors(path, tensors, meta)
        total += os.path.getsize(path)
    print("wrote %d fixtures, %d bytes, to %s" % (len(seen), total, args.out))

    if args.check:
        checker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_op_fixtures.py")
        return subprocess.call([sys.executable, checker, args.out])
    return 0


if __name__ == "__main__":
    sys.exit(main())
