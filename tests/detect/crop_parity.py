#!/usr/bin/env python3
"""Parity of canopy's tree-type classifier with torchvision (DeepForest's
CropModel as a second stage).

    crop_parity.py --canopy BIN --neon-dir DIR [--backend auto|cpu|opencl]
                   [--cases NAME,...] [--seed N]

Runs in the interpreter of .venv-torch (torch, torchvision, safetensors,
Pillow); CMake passes that interpreter, and a missing one is a failure.

For each case (architecture, interpolation, expand, images):
 1. builds torchvision's ResNet with DeepForest's create_crop_backbone rule
    (fc replaced by a Linear of 3 outputs), seeded random weights, batch
    norm statistics taken from synthetic crops and perturbed (so that
    folding them is exercised), saved in CropModel's Hugging Face layout
    (config.json "cropmodel" section, model.safetensors with "model." keys);
 2. `canopy model import DIR --output m.cnw`;
 3. `canopy run --classifier m.cnw` on the NEON images (the default crown
    detector finds the trees);
 4. for every tree of trees.json: the crop as BoundingBoxDataset cuts it
    from the box trees.json gives (expand, clamp, int offset,
    int(max(1, x1 - x0)) size), DeepForest's bounding_box_transform
    (ToTensor, Normalize, Resize(interpolation)), the model, softmax, argmax
    and max.
Comparison: the same type wherever torchvision's top-two margin exceeds
1e-3 (near-ties counted; more than MAX_NEAR_TIES of them fails), and every
type_score within 1e-4 of torchvision's probability of canopy's type.
trees.json holds boxes to 2 decimals: where a box coordinate within 0.005
of the value written would give another crop, every such crop is tried and
the best matching one is used (counted as "ambiguous").

Then a GeoTIFF of a NEON image processed in windows against the same run
whole (types, scores, type_counts and the tree_count --types asks for), and
the refusals of `canopy model import`: an unknown architecture, a
missing tensor, a malformed label_dict and an fc of the wrong size, each
named with the file, the tensor or key, and the reason.
"""

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

LABELS = {"alive": 0, "dead": 1, "snag": 2}
MAX_NEAR_TIES = 0.02  # of the trees compared
SCORE_TOL = 1e-4
MARGIN = 1e-3
# name: (architecture, interpolation, expand, images)
CASES = {
    "r18_bilinear": ("resnet18", "bilinear", 0, None),
    "r18_nearest_expand": ("resnet18", "nearest", 120, None),
    "r50_bilinear_expand": ("resnet50", "bilinear", 110, ["OSBS_029.png"]),
    "r18_opencl_small": ("resnet18", "bilinear", 0, ["SOAP_061.png"]),
}


# ---- the model --------------------------------------------------------------

def synthetic_crops(g, n=8, s=224):
    """Crops in [0, 1] with the statistics of tree crowns on a background."""
    img = 0.3 + 0.3 * F.interpolate(torch.rand(n, 3, 6, 6, generator=g), size=(s, s),
                                    mode="bilinear", align_corners=False)
    yy = torch.arange(s, dtype=torch.float32).view(s, 1)
    xx = torch.arange(s, dtype=torch.float32).view(1, s)
    for i in range(n):
        for _ in range(6):
            cy, cx = [float(v) * s for v in torch.rand(2, generator=g)]
            sig = 10 + 40 * float(torch.rand(1, generator=g))
            col = 0.2 + 0.5 * torch.rand(3, 1, 1, generator=g)
            img[i] += col * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sig * sig))
    return (img + 0.1 * (torch.rand(img.shape, generator=g) - 0.5)).clamp(0, 1)


def build_model(arch, seed):
    """create_crop_backbone(arch, 3, pretrained=False) with seeded weights."""
    g = torch.Generator().manual_seed(seed)
    m = getattr(torchvision.models, arch)(weights=None)
    m.fc = torch.nn.Linear(m.fc.in_features, len(LABELS))
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Conv2d):
            fan_in = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
            with torch.no_grad():
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) *
                                 math.sqrt(2.0 / fan_in))
        elif isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            last = name.endswith("bn3") or (arch == "resnet18" and name.endswith("bn2"))
            with torch.no_grad():
                mod.weight.copy_((0.6 + 0.8 * torch.rand(n, generator=g)) *
                                 (0.5 if last else 1.0))
                mod.bias.copy_(torch.randn(n, generator=g) * 0.2)

    def bn_pre(mod, inp):
        x = inp[0]
        mu, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3)) + 1e-3
        n = mu.numel()
        mod.running_mean.copy_(mu + 0.2 * var.sqrt() * torch.randn(n, generator=g))
        mod.running_var.copy_(var * (0.6 + torch.rand(n, generator=g)))

    hooks = [mod.register_forward_pre_hook(bn_pre) for mod in m.modules()
             if isinstance(mod, torch.nn.BatchNorm2d)]
    norm = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    crops = norm(synthetic_crops(g))
    m.eval()
    with torch.no_grad():
        m(crops)
        for h in hooks:
            h.remove()
        # Logits with a spread of a few units around zero: types differ from
        # crop to crop.
        body = torch.nn.Sequential(*list(m.children())[:-1])
        feats = torch.flatten(body(crops), 1)
        w = torch.randn(m.fc.weight.shape, generator=g)
        w *= 2.5 / (float((feats @ w.t()).std()) + 1e-6)
        m.fc.weight.copy_(w)
        m.fc.bias.copy_(torch.randn(len(LABELS), generator=g) * 0.3 - feats.mean(0) @ w.t())
    return m


def save_cropmodel(m, arch, interp, expand, out):
    """CropModel.push_to_hub's files: config.json and model.safetensors."""
    os.makedirs(out, exist_ok=True)
    sd = {"model." + k: v.contiguous() for k, v in m.state_dict().items()}
    save_file(sd, os.path.join(out, "model.safetensors"))
    cfg = {"cropmodel": {"architecture": arch, "label_dict": LABELS, "resize": [224, 224],
                         "resize_interpolation": interp, "normalize": None, "expand": expand,
                         "batch_size": 4}}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    return sd, cfg


# ---- DeepForest's crops ------------------------------------------------------

def crop_rect(box, expand, W, H):
    """BoundingBoxDataset.__getitem__'s window: (col_off, row_off, w, h)."""
    xmin, ymin, xmax, ymax = box
    if expand > 0:
        xmin, ymin = max(0, xmin - expand), max(0, ymin - expand)
        xmax, ymax = min(W, xmax + expand), min(H, ymax + expand)
    return (int(xmin), int(ymin), int(max(1, xmax - xmin)), int(max(1, ymax - ymin)))


def candidate_rects(box, expand, W, H):
    """Every crop a box within 0.005 of the written one (2 decimals) gives."""
    rects = set()
    for d in itertools.product((-0.005, 0.0, 0.005), repeat=4):
        b = [min(max(v + e, 0.0), lim) for v, e, lim in zip(box, d, (W, H, W, H))]
        rects.add(crop_rect(b, expand, W, H))
    return sorted(rects, key=lambda r: r != crop_rect(box, expand, W, H))


def predict(m, img, rects, interp):
    """bounding_box_transform + the model + softmax for crops of img (H x W x 3)."""
    t = transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        transforms.Resize([224, 224], interpolation=(
            transforms.InterpolationMode.NEAREST if interp == "nearest"
            else transforms.InterpolationMode.BILINEAR)),
    ])
    batch = torch.stack([t(img[y:y + h, x:x + w]) for x, y, w, h in rects])
    with torch.no_grad():
        out = []
        for i in range(0, len(batch), 32):
            out.append(F.softmax(m(batch[i:i + 32]), 1))
    return torch.cat(out).numpy()


# ---- the comparison ---------------------------------------------------------

def compare(m, case, trees_json, img):
    arch, interp, expand, _ = case
    names = {v: k for k, v in LABELS.items()}
    H, W = img.shape[:2]
    trees = trees_json["trees"]
    cands = [candidate_rects((t["xmin"], t["ymin"], t["xmax"], t["ymax"]), expand, W, H)
             for t in trees]
    flat = sorted({r for c in cands for r in c})
    probs = dict(zip(flat, predict(m, img, flat, interp)))
    st = {"trees": len(trees), "near_ties": 0, "ambiguous": 0, "bad": [], "max_diff": 0.0,
          "small": 0, "large": 0, "edge": 0}
    for t, cand in zip(trees, cands):
        if "type" not in t:
            st["bad"].append("tree at (%s, %s) has no type" % (t["x"], t["y"]))
            continue
        k = LABELS.get(t["type"], -1)
        best = min(cand, key=lambda r: abs(probs[r][k] - t["type_score"]) if k >= 0 else 0)
        if len(cand) > 1:
            st["ambiguous"] += 1
        p = probs[best]
        x, y, w, h = best
        st["small"] += max(w, h) < 224
        st["large"] += max(w, h) > 224
        st["edge"] += x == 0 or y == 0 or x + w == W or y + h == H
        order = np.argsort(-p)
        margin = p[order[0]] - p[order[1]]
        if margin <= MARGIN:
            st["near_ties"] += 1
        elif k != order[0]:
            st["bad"].append("tree at (%s, %s), crop %s: canopy %s, torchvision %s "
                             "(%.6f vs %.6f)" % (t["x"], t["y"], best, t["type"],
                                                 names[order[0]], p[k], p[order[0]]))
            continue
        diff = abs(p[k] - t["type_score"]) if k >= 0 else 1.0
        st["max_diff"] = max(st["max_diff"], diff)
        if diff > SCORE_TOL:
            st["bad"].append("tree at (%s, %s), crop %s: type_score %.6f, torchvision %.6f"
                             % (t["x"], t["y"], best, t["type_score"], p[k]))
    return st


def run_case(name, case, args, work):
    arch, interp, expand, images = case
    images = images or sorted(f for f in os.listdir(args.neon_dir) if f.endswith(".png"))
    m = build_model(arch, args.seed)
    src = os.path.join(work, name, "hf")
    save_cropmodel(m, arch, interp, expand, src)
    cnw = os.path.join(work, name, "m.cnw")
    subprocess.run([args.canopy, "model", "import", src, "--output", cnw], check=True)
    out = os.path.join(work, name, "out")
    cmd = [args.canopy, "run", "--classifier", cnw, "--output", out, "--set",
           "device.backend=" + args.backend, "--set", "output.overlay=false"]
    for f in images:
        cmd += ["--input", os.path.join(args.neon_dir, f)]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    canopy_s = time.time() - t0
    total = {"trees": 0, "near_ties": 0, "ambiguous": 0, "bad": [], "max_diff": 0.0,
             "small": 0, "large": 0, "edge": 0}
    for f in images:
        with open(os.path.join(out, f[:-4] + ".trees.json")) as fh:
            tj = json.load(fh)
        img = np.array(Image.open(os.path.join(args.neon_dir, f)).convert("RGB"))
        st = compare(m, case, tj, img)
        for k in total:
            total[k] = total[k] + st[k] if k != "max_diff" else max(total[k], st[k])
    print("%s: %d trees (%d crops < 224, %d > 224, %d at the edge), near-ties %d, "
          "ambiguous boxes %d, max |score diff| %.2e, canopy %.1fs"
          % (name, total["trees"], total["small"], total["large"], total["edge"],
             total["near_ties"], total["ambiguous"], total["max_diff"], canopy_s))
    ok = True
    if total["trees"] < 20:
        print("  FAIL: too few trees to compare")
        ok = False
    if total["near_ties"] > MAX_NEAR_TIES * total["trees"]:
        print("  FAIL: too many near-ties")
        ok = False
    for b in total["bad"][:20]:
        print("  FAIL:", b)
    return ok and not total["bad"]


# ---- windows ----------------------------------------------------------------

def windows(args, work):
    """A raster processed in windows types its trees as processed whole: the
    same trees (same tiling), the same type and type_score, and tree_count
    counts the types --types names."""
    src = os.path.join(work, "r18_bilinear", "m.cnw")
    if not os.path.exists(src):
        src = os.path.join(work, "win_model.cnw")
        m = build_model("resnet18", args.seed)
        save_cropmodel(m, "resnet18", "bilinear", 7, os.path.join(work, "win_hf"))
        subprocess.run([args.canopy, "model", "import", os.path.join(work, "win_hf"),
                        "--output", src], check=True, stdout=subprocess.DEVNULL)
    tif = os.path.join(work, "yell.tif")
    subprocess.run(["gdal_translate", "-q", "-of", "GTiff", "-a_srs", "EPSG:32617",
                    "-a_ullr", "400000", "3300000", "400070", "3299896.5",
                    os.path.join(args.neon_dir, "YELL_541000_west.png"), tif], check=True)
    docs = []
    for mode, extra in (("whole", []), ("windows", ["--set", "limits.window_pixels=100000"])):
        out = os.path.join(work, "win_" + mode)
        subprocess.run([args.canopy, "run", "--input", tif, "--output", out, "--classifier", src,
                        "--types", "dead,snag", "--set", "device.backend=" + args.backend,
                        "--set", "detector.tile=256", "--set", "detector.tile_overlap=64"] +
                       extra, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(out, "yell.trees.json")) as f:
            docs.append(json.load(f))
    a, b = docs
    key = lambda t: (t["xmin"], t["ymin"], t["xmax"], t["ymax"])  # noqa: E731
    ta, tb = {key(t): t for t in a["trees"]}, {key(t): t for t in b["trees"]}
    same = set(ta) == set(tb) and all(
        ta[k]["type"] == tb[k]["type"] and abs(ta[k]["type_score"] - tb[k]["type_score"]) <= 1e-5
        for k in ta)
    want = sum(1 for t in a["trees"] if t["type"] in ("dead", "snag"))
    counts = {}
    for t in a["trees"]:
        counts[t["type"]] = counts.get(t["type"], 0) + 1
    ok = (same and len(ta) >= 20 and a["tree_count"] == want == b["tree_count"] and
          a["type_counts"] == counts == b["type_counts"] and len(counts) >= 2)
    print("windows: %d trees whole, %d in windows, type_counts %s, tree_count %s / %s%s"
          % (len(ta), len(tb), a["type_counts"], a["tree_count"], b["tree_count"],
             "" if ok else "  FAIL"))
    return ok


# ---- refusals ---------------------------------------------------------------

def refusals(args, work):
    m = build_model("resnet18", args.seed)
    ok = True

    def expect(tag, mutate_sd, mutate_cfg, *needles):
        nonlocal ok
        d = os.path.join(work, "refuse", tag)
        sd, cfg = save_cropmodel(m, "resnet18", "bilinear", 0, d)
        mutate_sd(sd)
        mutate_cfg(cfg["cropmodel"])
        save_file(sd, os.path.join(d, "model.safetensors"))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([args.canopy, "model", "import", d, "--output",
                            os.path.join(d, "m.cnw")], capture_output=True, text=True)
        msg = r.stderr.strip()
        good = r.returncode == 1 and all(n in msg for n in needles) and \
            not os.path.exists(os.path.join(d, "m.cnw"))
        print("refusal %s: exit %d: %s%s" % (tag, r.returncode, msg, "" if good else "  FAIL"))
        ok = ok and good

    nop = lambda x: None  # noqa: E731
    expect("architecture", nop, lambda c: c.update(architecture="vit_b_16"),
           "config.json", "cropmodel.architecture", "vit_b_16")
    expect("arch_mismatch", nop, lambda c: c.update(architecture="resnet50"),
           "model.safetensors", "model.layer1", "resnet50")
    expect("missing", lambda sd: sd.pop("model.layer2.0.bn1.running_var"), nop,
           "model.safetensors", "model.layer2.0.bn1.running_var", "missing")
    expect("label_dict", nop, lambda c: c.update(label_dict={"alive": 0, "dead": 0, "snag": 2}),
           "config.json", "label_dict", "distinct index")
    expect("label_count", nop, lambda c: c.update(label_dict={"alive": 0, "dead": 1}),
           "model.safetensors", "model.fc.weight", "3 outputs", "2 classes")
    expect("interpolation", nop, lambda c: c.update(resize_interpolation="bicubic"),
           "config.json", "resize_interpolation")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--canopy", required=True)
    ap.add_argument("--neon-dir", required=True)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    work = args.keep or tempfile.mkdtemp(prefix="crop_parity.")
    ok = True
    try:
        for name in args.cases.split(","):
            ok = run_case(name, CASES[name], args, work) and ok
        ok = windows(args, work) and ok
        ok = refusals(args, work) and ok
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("crop parity:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
