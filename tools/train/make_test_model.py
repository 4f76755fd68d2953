"""Write models/test/random-tiny.cnw and random-tiny.expected.json (numpy only).

A tiny, randomly initialised (seed 20261122) network with every layer feature
of FORMAT.md: 3x3 and 1x1 convs, dilation 1/2/4, relu and none, two maxpools
(stride 4), and one extra tensor the reader must ignore. The expected file
holds the numpy reference forward pass (float64 arithmetic on the float32
weights and float32 normalized input) of the top-left 37x53 (rows x cols)
crop of OSBS_029.png, raw outputs 4 x 9 x 13, and the decoded peaks at the
score threshold given in the file.

    python make_test_model.py [--neon ../../tests/data/neon] [--out models/test]
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from export import read_cnw, write_cnw  # noqa: E402
import evaluate as ev  # noqa: E402

SEED = 20261122
CROP_H, CROP_W = 37, 53
THRESHOLD = 0.5


def tiny_arch():
    return {
        "name": "canopy-crown",
        "version": "random-tiny-1",
        "stride": 4,
        "input": {"channels": ["r", "g", "b", "exg"],
                  "mean": [float(np.float32(v)) for v in (0.40, 0.45, 0.35, 0.15)],
                  "std": [float(np.float32(v)) for v in (0.20, 0.19, 0.18, 0.10)]},
        "layers": [
            {"type": "conv", "name": "c1", "in": 4, "out": 8, "k": 3, "dilation": 1, "act": "relu"},
            {"type": "maxpool"},
            {"type": "conv", "name": "c2", "in": 8, "out": 12, "k": 3, "dilation": 2, "act": "relu"},
            {"type": "maxpool"},
            {"type": "conv", "name": "c3", "in": 12, "out": 8, "k": 3, "dilation": 4, "act": "relu"},
            {"type": "conv", "name": "c4", "in": 8, "out": 8, "k": 1, "dilation": 1, "act": "relu"},
            {"type": "conv", "name": "head", "in": 8, "out": 4, "k": 1, "dilation": 1, "act": "none"},
        ],
        "outputs": ["heatmap", "log_radius", "dx", "dy"],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--neon", default="../../tests/data/neon")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "models", "test"))
    a = ap.parse_args(argv)
    rng = np.random.default_rng(SEED)
    arch = tiny_arch()
    tensors = []
    for layer in arch["layers"]:
        if layer["type"] != "conv":
            continue
        fan_in = layer["in"] * layer["k"] * layer["k"]
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), (layer["out"], layer["in"], layer["k"], layer["k"]))
        b = rng.normal(0.0, 0.1, (layer["out"],))
        if layer["name"] == "head":  # spread the heatmap logits so peaks are far from ties
            w[0] *= 8.0
            b[0] *= 8.0
        tensors.append((layer["name"] + ".weight", w.astype(np.float32)))
        tensors.append((layer["name"] + ".bias", b.astype(np.float32)))
    # an extra tensor the reader must accept and ignore
    tensors.append(("meta.score_threshold", np.array([THRESHOLD], dtype=np.float32)))
    os.makedirs(a.out, exist_ok=True)
    cnw = os.path.join(a.out, "random-tiny.cnw")
    write_cnw(cnw, arch, tensors)
    arch2, t2 = read_cnw(cnw)  # round trip

    img = ev.load_image(os.path.join(a.neon, "OSBS_029.png"))[:CROP_H, :CROP_W]
    x = ev.preprocess(img, arch2["input"]["mean"], arch2["input"]["std"])
    out64 = ev.forward(arch2, t2, x, dtype=np.float64)
    out32 = ev.forward(arch2, t2, x, dtype=np.float32)
    trees = ev.decode(out64.astype(np.float32), arch2["stride"], THRESHOLD)
    # how close the decode is to a tie / the threshold (robustness of the expected peaks)
    score = ev.sigmoid32(out64[0].astype(np.float32)).astype(np.float64)
    hh, ww = score.shape
    margin = np.inf
    for i in range(hh):
        for j in range(ww):
            margin = min(margin, abs(score[i, j] - THRESHOLD))
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    ii, jj = i + di, j + dj
                    if (di or dj) and 0 <= ii < hh and 0 <= jj < ww:
                        margin = min(margin, abs(score[i, j] - score[ii, jj]))
    expected = {
        "model": "random-tiny.cnw",
        "input": {"image": "OSBS_029.png", "crop": {"x": 0, "y": 0, "width": CROP_W, "height": CROP_H},
                  "note": "top-left crop: rows 0..36, columns 0..52 of the RGB image"},
        "output_shape": list(out64.shape),
        "output_order": "CHW: output[c][i][j], c in heatmap, log_radius, dx, dy",
        "output": out64.tolist(),
        "float32_vs_float64_max_abs_diff": float(np.max(np.abs(out32 - out64))),
        "score_threshold": THRESHOLD,
        "min_score_gap_between_neighbours_or_threshold": float(margin),
        "trees": [{"x": t["x"], "y": t["y"], "radius": t["radius"],
                   "score": t["score"], "cell": t["cell"]} for t in trees],
        "trees_order": "score descending, ties in row-major cell order",
    }
    with open(os.path.join(a.out, "random-tiny.expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print("wrote %s: output %s, %d trees at threshold %.2f, f32/f64 diff %.2e, min gap %.2e"
          % (cnw, out64.shape, len(trees), THRESHOLD, expected["float32_vs_float64_max_abs_diff"],
             margin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
