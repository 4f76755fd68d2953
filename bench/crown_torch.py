#!/usr/bin/env python3
"""The crown network of a .cnw (format version 1, models/FORMAT.md) in
PyTorch: the same input transform and layers (conv with "same" dilated
padding and ReLU, 2x2 max pools), on the whole image in one call, timed with
--threads threads (medians of --repeats after one warm-up). With --check, the
canopy CPU backend's output on the same image (bench_crown_cpu --dump) must
match PyTorch's before anything is timed (max abs difference <= --tol).

  crown_torch.py --cnw FILE --image PNG [--threads N] [--repeats N]
                 [--check OUT.f32 --tol X] [--json FILE]
"""
import argparse
import json
import statistics
import struct
import sys
import time

import numpy as np
import torch
from PIL import Image


def read_cnw(path):
    b = open(path, "rb").read()
    if b[:8] != b"CNPYWTS\0" or struct.unpack("<I", b[8:12])[0] != 1:
        sys.exit(f"{path}: not a .cnw version 1 (crown model)")
    n = struct.unpack("<I", b[12:16])[0]
    arch = json.loads(b[16:16 + n])
    off = 16 + n
    count = struct.unpack("<I", b[off:off + 4])[0]
    off += 4
    tensors = {}
    for _ in range(count):
        ln = struct.unpack("<H", b[off:off + 2])[0]
        name = b[off + 2:off + 2 + ln].decode()
        off += 2 + ln
        dtype, ndim = b[off], b[off + 1]
        off += 2
        dims = struct.unpack(f"<{ndim}I", b[off:off + 4 * ndim])
        off += 4 * ndim
        doff, nbytes = struct.unpack("<QQ", b[off:off + 16])
        off += 16
        if dtype != 1:
            sys.exit(f"{path}: tensor {name}: dtype {dtype}")
        tensors[name] = np.frombuffer(b, "<f4", nbytes // 4, doff).reshape(dims).copy()
    return arch, tensors


def build(arch, tensors):
    layers = []
    for l in arch["layers"]:
        if l["type"] == "maxpool":
            layers.append(torch.nn.MaxPool2d(2, 2))
            continue
        k, d = l["k"], l["dilation"]
        conv = torch.nn.Conv2d(l["in"], l["out"], k, padding=d * (k - 1) // 2, dilation=d)
        conv.weight.data = torch.from_numpy(tensors[l["name"] + ".weight"])
        conv.bias.data = torch.from_numpy(tensors[l["name"] + ".bias"])
        layers.append(conv)
        if l["act"] == "relu":
            layers.append(torch.nn.ReLU(inplace=True))
    return torch.nn.Sequential(*layers).eval()


def transform(arch, rgba):
    """models/FORMAT.md "Input channels", in float32 as det_crown_preprocess."""
    px = rgba.astype(np.float32) / np.float32(255.0)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    v = {"r": r, "g": g, "b": b, "exg": np.float32(2.0) * g - r - b}
    inp = arch["input"]
    ch = [(v[c] - np.float32(m)) / np.float32(s)
          for c, m, s in zip(inp["channels"], inp["mean"], inp["std"])]
    return torch.from_numpy(np.stack(ch)[None].astype(np.float32))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnw", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--check")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    arch, tensors = read_cnw(a.cnw)
    net = build(arch, tensors)
    rgba = np.asarray(Image.open(a.image).convert("RGBA"))

    def run():
        with torch.inference_mode():
            return net(transform(arch, rgba))

    out = run()[0].numpy()
    result = {"model": arch["version"], "image": a.image, "width": rgba.shape[1],
              "height": rgba.shape[0], "threads": torch.get_num_threads(),
              "torch": torch.__version__, "out_h": out.shape[1], "out_w": out.shape[2]}
    if a.check:
        c = np.fromfile(a.check, "<f4")
        if c.size != out.size:
            sys.exit(f"crown_torch: {a.check}: {c.size} floats, PyTorch's output has {out.size}")
        diff = float(np.abs(c.reshape(out.shape) - out).max())
        result["max_abs_diff"] = diff
        print(f"canopy CPU backend against PyTorch: max abs difference {diff:.3g} "
              f"(bound {a.tol:g}) over {out.size} outputs")
        if not diff <= a.tol:
            sys.exit("crown_torch: the outputs differ: not timing")
    t = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        run()
        t.append(time.perf_counter() - t0)
    result["network_s"] = statistics.median(t)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads: network "
          f"{result['network_s']:.4f} s (median of {a.repeats})")
    if a.json:
        json.dump(result, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
