#!/usr/bin/python3
"""Independent check of the golden op fixtures (developer-only; needs numpy only, not torch).

    /usr/bin/python3 tools/golden/check_op_fixtures.py tests/data/ops

For every *.safetensors file in the folder:
- parses the file with its own reader and validates it the way the reference safetensors reader does
  (header length, JSON, string-only __metadata__, offsets that tile the data buffer exactly, byte sizes
  that match dtype and shape, no trailing bytes) plus this project's conventions (header padded to a
  multiple of 8, __metadata__ first, all tensors F32);
- checks the metadata (op, case = file name, exactly the op's dimension keys) and that the tensor names and
  shapes are the ones docs/ops.md gives for those dimensions;
- recomputes `out` in float64 with numpy directly in sdtune's channels-last layouts (a second, torch-free
  implementation written from the definitions in docs/ops.md) and compares;
- checks every `grad.<slot>` against central differences of sum(dout * f(inputs)) along random directions,
  which catches a gradient stored in the wrong layout.
Prints one line per case with its tensors and shapes; exits 1 on any failure.
"""

import json
import math
import os
import struct
import sys

import numpy as np

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "BOOL": 1}

OP_DIMS = {
    "linear": "N C OC bias",
    "conv2d": "B H W C OC KH KW stride pad_top pad_left pad_bottom pad_right bias",
    "group_norm": "B HW C G eps silu",
    "layer_norm": "N C eps",
    "attention": "B Lq Lk H D causal",
    "softmax": "N C",
    "silu": "N", "gelu": "N", "gelu_tanh": "N", "quick_gelu": "N",
    "geglu": "N F",
    "add": "N",
    "add_channel_vector": "B HW C",
    "concat": "N Ca Cb",
    "upsample2x": "B H W C",
    "timestep_embedding": "B dim flip shift max_period",
    "mse_loss": "B N weighted",
}
FLOAT_DIMS = {"eps", "shift", "max_period"}


def read_safetensors(path):
    """Returns (metadata, {name: np.ndarray}); raises ValueError on any format violation."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > 100_000_000 or 8 + n > len(blob):
        raise ValueError("bad header length %d" % n)
    if n % 8:
        raise ValueError("header length %d not a multiple of 8" % n)
    raw = blob[8:8 + n]
    if not raw.startswith(b"{"):
        raise ValueError("header does not start with '{'")
    if raw.rstrip(b" ") != raw.rstrip():
        raise ValueError("header padded with something other than spaces")
    header = json.loads(raw.decode("utf-8"), object_pairs_hook=lambda pairs: pairs)
    keys = [k for k, _ in header]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate keys in header")
    if keys[0] != "__metadata__":
        raise ValueError("__metadata__ is not the first key")
    header = dict(header)
    meta = dict(header.pop("__metadata__"))
    for k, v in meta.items():
        if not isinstance(v, str):
            raise ValueError("metadata %s is not a string" % k)
    data = blob[8 + n:]
    entries = []
    for name, info in header.items():
        info = dict(info)
        if set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError("%s: unexpected fields %s" % (name, sorted(info)))
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise ValueError("%s: unknown dtype %s" % (name, dtype))
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError("%s: bad shape %s" % (name, shape))
        count = 1
        for d in shape:
            count *= d
        if end < begin or end - begin != count * DTYPE_BYTES[dtype]:
            raise ValueError("%s: %d bytes for %s %s" % (name, end - begin, dtype, shape))
        entries.append((begin, end, name, dtype, shape))
    entries.sort()
    pos = 0
    for begin, end, name, _, _ in entries:
        if begin != pos:
            raise ValueError("%s: offset %d, expected %d (gap or overlap)" % (name, begin, pos))
        pos = end
    if pos != len(data):
        raise ValueError("data buffer is %d bytes, tensors cover %d" % (len(data), pos))
    tensors = {}
    for begin, end, name, dtype, shape in entries:
        if dtype != "F32":
            raise ValueError("%s: dtype %s, fixtures are all F32" % (name, dtype))
        tensors[name] = np.frombuffer(data, dtype="<f4", count=(end - begin) // 4, offset=begin).reshape(shape)
    return meta, tensors


# ---------------------------------------------------------------------------------------------------------
# float64 numpy forwards in sdtune's layouts, written from docs/ops.md

def erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softmax_rows(s):
    m = np.max(s, axis=-1, keepdims=True)
    e = np.exp(s - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def f_linear(d, x, weight, bias=None):
    y = x @ weight.T
    return y + bias if bias is not None else y


def f_conv2d(d, x, weight, bias=None):
    s = d["stride"]
    xp = np.pad(x, ((0, 0), (d["pad_top"], d["pad_bottom"]), (d["pad_left"], d["pad_right"]), (0, 0)))
    OH = (d["H"] + d["pad_top"] + d["pad_bottom"] - d["KH"]) // s + 1
    OW = (d["W"] + d["pad_left"] + d["pad_right"] - d["KW"]) // s + 1
    out = np.zeros((d["B"], OH, OW, d["OC"]))
    for kh in range(d["KH"]):
        for kw in range(d["KW"]):
            patch = xp[:, kh:kh + s * (OH - 1) + 1:s, kw:kw + s * (OW - 1) + 1:s, :]   # [B, OH, OW, C]
            out += np.einsum("bhwc,oc->bhwo", patch, weight[:, kh, kw, :])
    return out + bias if bias is not None else out


def f_group_norm(d, x, weight, bias):
    B, HW, C, G = d["B"], d["HW"], d["C"], d["G"]
    g = x.reshape(B, HW, G, C // G)
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = ((g - mean) ** 2).mean(axis=(1, 3), keepdims=True)
    y = ((g - mean) / np.sqrt(var + d["eps"])).reshape(B, HW, C) * weight + bias
    return y * sigmoid(y) if d["silu"] else y


def f_layer_norm(d, x, weight, bias):
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + d["eps"]) * weight + bias


def f_attention(d, q, k, v):
    B, Lq, Lk, H, D = d["B"], d["Lq"], d["Lk"], d["H"], d["D"]
    qh, kh, vh = q.reshape(B, Lq, H, D), k.reshape(B, Lk, H, D), v.reshape(B, Lk, H, D)
    s = np.einsum("bqhd,bkhd->bhqk", qh, kh) * D ** -0.5
    if d["causal"]:
        s = np.where(np.arange(Lk)[None, :] <= np.arange(Lq)[:, None], s, -np.inf)
    return np.einsum("bhqk,bkhd->bqhd", softmax_rows(s), vh).reshape(B, Lq, H * D)


def f_gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


FORWARD = {
    "linear": f_linear,
    "conv2d": f_conv2d,
    "group_norm": f_group_norm,
    "layer_norm": f_layer_norm,
    "attention": f_attention,
    "softmax": lambda d, x: softmax_rows(x),
    "silu": lambda d, x: x * sigmoid(x),
    "gelu": lambda d, x: f_gelu(x),
    "gelu_tanh": lambda d, x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
    "quick_gelu": lambda d, x: x * sigmoid(1.702 * x),
    "geglu": lambda d, x: x[:, :d["F"]] * f_gelu(x[:, d["F"]:]),
    "add": lambda d, a, b: a + b,
    "add_channel_vector": lambda d, x, vec: x + vec[:, None, :],
    "concat": lambda d, a, b: np.concatenate([a, b], axis=1),
    "upsample2x": lambda d, x: np.repeat(np.repeat(x, 2, axis=1), 2, axis=2),
    "mse_loss": lambda d, pred, target, weight=None: np.array([np.mean(
        (weight if weight is not None else 1.0) * np.mean((pred - target) ** 2, axis=1))]),
}


def f_timestep_embedding(d, t):
    """float64 evaluation of the formula; the fixture holds diffusers' fp32 result, so compared loosely."""
    half = d["dim"] // 2
    freqs = np.exp(-math.log(d["max_period"]) * np.arange(half) / (half - d["shift"]))
    arg = t[:, None] * freqs[None, :]
    parts = [np.cos(arg), np.sin(arg)] if d["flip"] else [np.sin(arg), np.cos(arg)]
    if d["dim"] % 2:
        parts.append(np.zeros((t.shape[0], 1)))
    return np.concatenate(parts, axis=1)


# ---------------------------------------------------------------------------------------------------------
# the expected slots and shapes of each op, from docs/ops.md

def slots(op, d):
    """Returns (inputs: [(name, shape)], differentiable names, out shape)."""
    if op == "linear":
        ins = [("x", [d["N"], d["C"]]), ("weight", [d["OC"], d["C"]])] + ([("bias", [d["OC"]])] if d["bias"] else [])
        return ins, [n for n, _ in ins], [d["N"], d["OC"]]
    if op == "conv2d":
        OH = (d["H"] + d["pad_top"] + d["pad_bottom"] - d["KH"]) // d["stride"] + 1
        OW = (d["W"] + d["pad_left"] + d["pad_right"] - d["KW"]) // d["stride"] + 1
        ins = [("x", [d["B"], d["H"], d["W"], d["C"]]), ("weight", [d["OC"], d["KH"], d["KW"], d["C"]])]
        ins += [("bias", [d["OC"]])] if d["bias"] else []
        return ins, [n for n, _ in ins], [d["B"], OH, OW, d["OC"]]
    if op == "group_norm":
        ins = [("x", [d["B"], d["HW"], d["C"]]), ("weight", [d["C"]]), ("bias", [d["C"]])]
        return ins, ["x", "weight", "bias"], [d["B"], d["HW"], d["C"]]
    if op == "layer_norm":
        ins = [("x", [d["N"], d["C"]]), ("weight", [d["C"]]), ("bias", [d["C"]])]
        return ins, ["x", "weight", "bias"], [d["N"], d["C"]]
    if op == "attention":
        HD = d["H"] * d["D"]
        ins = [("q", [d["B"], d["Lq"], HD]), ("k", [d["B"], d["Lk"], HD]), ("v", [d["B"], d["Lk"], HD])]
        return ins, ["q", "k", "v"], [d["B"], d["Lq"], HD]
    if op == "softmax":
        return [("x", [d["N"], d["C"]])], ["x"], [d["N"], d["C"]]
    if op in ("silu", "gelu", "gelu_tanh", "quick_gelu"):
        return [("x", [d["N"]])], ["x"], [d["N"]]
    if op == "geglu":
        return [("x", [d["N"], 2 * d["F"]])], ["x"], [d["N"], d["F"]]
    if op == "add":
        return [("a", [d["N"]]), ("b", [d["N"]])], ["a", "b"], [d["N"]]
    if op == "add_channel_vector":
        return [("x", [d["B"], d["HW"], d["C"]]), ("vec", [d["B"], d["C"]])], ["x", "vec"], [d["B"], d["HW"], d["C"]]
    if op == "concat":
        return [("a", [d["N"], d["Ca"]]), ("b", [d["N"], d["Cb"]])], ["a", "b"], [d["N"], d["Ca"] + d["Cb"]]
    if op == "upsample2x":
        return [("x", [d["B"], d["H"], d["W"], d["C"]])], ["x"], [d["B"], 2 * d["H"], 2 * d["W"], d["C"]]
    if op == "timestep_embedding":
        return [("t", [d["B"]])], [], [d["B"], d["dim"]]
    if op == "mse_loss":
        ins = [("pred", [d["B"], d["N"]]), ("target", [d["B"], d["N"]])] + ([("weight", [d["B"]])] if d["weighted"] else [])
        return ins, ["pred"], [1]
    raise ValueError("unknown op " + op)


def nmse(a, b):
    den = float(np.sum(np.asarray(b, np.float64) ** 2))
    num = float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return num / den if den > 0 else num


def check_file(path, rng):
    meta, t = read_safetensors(path)
    case = os.path.basename(path)[:-len(".safetensors")]
    op = meta.get("op")
    if op not in OP_DIMS:
        raise ValueError("unknown op %r" % op)
    if meta.get("case") != case:
        raise ValueError("metadata case %r is not the file name" % meta.get("case"))
    keys = OP_DIMS[op].split()
    if list(meta) != ["op", "case"] + keys:
        raise ValueError("metadata keys %s, expected op case %s" % (list(meta), keys))
    d = {k: (float(meta[k]) if k in FLOAT_DIMS else int(meta[k])) for k in keys}
    ins, diff, out_shape = slots(op, d)
    want = {n: s for n, s in ins}
    want["out"] = out_shape
    want["dout"] = out_shape
    for n in diff:
        want["grad." + n] = want[n]
    if set(t) != set(want):
        raise ValueError("tensors %s, expected %s" % (sorted(t), sorted(want)))
    for n, s in want.items():
        if list(t[n].shape) != list(s):
            raise ValueError("%s has shape %s, expected %s" % (n, list(t[n].shape), s))
        if not np.all(np.isfinite(t[n])):
            raise ValueError("%s is not finite" % n)
    x = {n: t[n].astype(np.float64) for n, _ in ins}
    notes = []

    if op == "timestep_embedding":
        err = nmse(t["out"], f_timestep_embedding(d, x["t"]))
        notes.append("nmse(fp32 ref, f64 formula)=%.1e" % err)
        if err > 1e-8:
            raise ValueError("out differs from the float64 formula: nmse %.3e" % err)
        return case, t, notes

    f = lambda **kw: FORWARD[op](d, **kw)
    err = nmse(t["out"], f(**x))
    notes.append("out %.1e" % err)
    if err > 1e-12:
        raise ValueError("out differs from the numpy forward: nmse %.3e" % err)

    dout = t["dout"].astype(np.float64)
    score = lambda inputs: float(np.sum(dout * f(**inputs)))
    worst = 0.0
    for n in diff:
        g = t["grad." + n].astype(np.float64)
        for _ in range(2):
            u = rng.standard_normal(x[n].shape)
            h = 1e-5 * max(1.0, float(np.max(np.abs(x[n]))))
            plus, minus = dict(x), dict(x)
            plus[n] = x[n] + h * u
            minus[n] = x[n] - h * u
            fd = (score(plus) - score(minus)) / (2 * h)
            an = float(np.sum(g * u))
            rel = abs(fd - an) / (np.linalg.norm(g) * np.linalg.norm(u) + 1e-300)
            worst = max(worst, rel)
            if rel > 1e-6:
                raise ValueError("grad.%s: directional derivative %.9g, finite differences %.9g" % (n, an, fd))
    if diff:
        notes.append("grad fd %.1e" % worst)
    return case, t, notes


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "tests/data/ops"
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    rng = np.random.default_rng(1234)
    failed = 0
    total = 0
    for name in files:
        path = os.path.join(folder, name)
        total += os.path.getsize(path)
        try:
            case, t, notes = check_file(path, rng)
        except Exception as e:  # noqa: BLE001 - report and go on
            failed += 1
            print("FAIL %s: %s" % (name, e))
            continue
        shapes = " ".join("%s%s" % (n, list(a.shape)) for n, a in sorted(t.items()))
        print("ok   %s  %s  [%s]" % (case, shapes, ", ".join(notes)))
    print("%d files, %d bytes, %d passed, %d failed" % (len(files), total, len(files) - failed, failed))
    return 1 if failed or not files else 0


if __name__ == "__main__":
    sys.exit(main())
