#!/usr/bin/env python3
"""Parity of canopy's RetinaNet with torchvision's (DeepForest's tree model).

    retina_parity.py --torch-python PY --source-dir DIR --canopy BIN [--seed N]
                     [--backend opencl|cpu] [--conv PATH]
    retina_parity.py --torch-python PY --source-dir DIR --self-test

Runs with any Python 3 (standard library only); torch runs in PY, the
interpreter of .venv-torch (scripts/bootstrap.sh --torch creates it). A missing PY
is a failure, not a skip.

Full run:
 1. tools/deepforest/make_fixture.py builds a seeded random RetinaNet in the
    three layouts (Hugging Face, Lightning .ckpt, state_dict .pt);
    convert.py turns the .ckpt and the .pt into the Hugging Face layout.
 2. `canopy model import DIR --output m.cnw` for each: the three .cnw must be
    byte-identical (the three directories have the same name, so even a
    version string taken from it cannot differ).
 3. Untiled: `canopy run --model m.cnw --input IMG --output OUT` plus
    UNTILED_SET on the NEON images and two crops (one resized by max_size,
    one upscaled), against reference.py's predict_image.
 4. Tiled: the same with TILED_SET on an image larger than one patch,
    against reference.py --tile (DeepForest's predict_tile).

Comparison: every torchvision box must have a canopy box with IoU >= 0.99 or
every coordinate within 0.05 px (thin and empty boxes: torchvision keeps boxes
clipped to nothing at the image's edge)
(tiled: or every coordinate within 1 px when reference.py marks the box's
integer truncation a near-tie) and a score within 1e-3, and every canopy box
must be such a match; near-ties (reference.py) are excluded both ways and
counted; more than MAX_NEAR_TIE_FRACTION of them fails the test.

--backend: which backend runs the model in every `canopy run` ([device]
backend; default opencl), with the same bounds. --conv: the OpenCL
convolution path of every run ([detector] conv; default auto, what the
device measures fastest), e.g. winograd4 to hold Winograd F(4x4, 3x3),
whose errors are the largest, to the same bounds.

--self-test (no canopy): reference.py's output is identical for the three
layouts; convert.py writes byte-identical files from the .ckpt and the .pt
and refuses a state_dict that is not this RetinaNet; the tiling windows are
DeepForest's; the comparison passes on reference output written as canopy
would write it and fails on a missing, moved or extra box.
"""

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

# ---- the contract with canopy (see tools/deepforest/README.md) -------------
# `canopy run` options for DeepForest's predict_image (no tiling) and for its
# predict_tile. The score / NMS thresholds and the input sizes are the model's
# (config.json, carried in the .cnw).
UNTILED_SET = ["detector.patch_size=0"]
TILED_SET = ["detector.patch_size=400", "detector.patch_overlap=0.05",
             "detector.patch_iou=0.15"]
UNTILED_IMAGES = ["OSBS_029.png", "SOAP_061.png", "YELL_541000_west.png"]
# Crops of a NEON image (name, source, (left, top, right, bottom)), written by
# the driver: with min_size 256 / max_size 512 the strip is resized by
# max_size (downscaled), the small one upscaled.
CROPS = [("YELL_strip.png", "YELL_541000_west.png", (0, 0, 700, 180)),
         ("YELL_small.png", "YELL_541000_west.png", (100, 500, 400, 700))]
TILED_IMAGES = ["YELL_541000_west.png"]
SEED = 1
MIN_IOU = 0.99
# ... or every coordinate within this many pixels: thin or empty boxes (a box
# decoded outside the image is clipped to zero height or width, and torchvision
# keeps it), whose IoU 2-decimal coordinates cannot keep at 0.99.
COORD_TOL = 0.05
SCORE_TOL = 1e-3
MAX_NEAR_TIE_FRACTION = 0.25


class Failure(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def run(cmd, what, timeout=900):
    log("+ " + " ".join(cmd))
    t = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise Failure(f"{what} failed (exit {p.returncode}):\n{p.stdout[-4000:]}")
    log(f"  ({time.monotonic() - t:.1f} s)")
    return p.stdout


def iou(a, b):
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def box(d):
    return (d["xmin"], d["ymin"], d["xmax"], d["ymax"])


def fmt(d):
    return "[{:.3f}, {:.3f}, {:.3f}, {:.3f}] score {:.5f}".format(*box(d), d["score"])


def coord_dist(a, b):
    return max(abs(x - y) for x, y in zip(box(a), box(b)))


def same_box(ref, got, tiled):
    if iou(box(ref), box(got)) >= MIN_IOU or coord_dist(ref, got) <= COORD_TOL:
        return True
    return tiled and "truncation" in ref.get("near_tie", ref.get("why", [])) and \
        all(abs(r - g) <= 1.0 + 1e-6 for r, g in zip(box(ref), box(got)))


def compare(image, ref, got, tiled):
    """ref: reference.py's entry of one image; got: canopy's trees list.
    Returns (errors, excluded) ."""
    errors, excluded = [], 0
    used = set()

    def excluding(d):
        return [w for w in d.get("near_tie", []) if w != "truncation"]

    for i, r in enumerate(ref["boxes"]):
        # Of the unmatched canopy boxes that are the same box, the closest score.
        same = [j for j, g in enumerate(got) if j not in used and same_box(r, g, tiled)]
        best = min(same, key=lambda j: (abs(got[j]["score"] - r["score"]),
                                        -iou(box(r), box(got[j]))), default=None)
        if best is None:
            if excluding(r):
                excluded += 1
                continue
            near = min(range(len(got)), key=lambda j: (-iou(box(r), box(got[j])),
                                                       coord_dist(r, got[j])), default=None)
            hint = (f"; nearest canopy box #{near} {fmt(got[near])} IoU "
                    f"{iou(box(r), box(got[near])):.4f}") if near is not None else ""
            errors.append(f"{image}: torchvision box #{i} {fmt(r)} has no canopy box with "
                          f"IoU >= {MIN_IOU}{hint}")
            continue
        used.add(best)
        g = got[best]
        if abs(g["score"] - r["score"]) > SCORE_TOL:
            errors.append(f"{image}: torchvision box #{i} {fmt(r)}: canopy box #{best} "
                          f"{fmt(g)} has score off by {g['score'] - r['score']:+.5f} "
                          f"(tolerance {SCORE_TOL})")
    for j, g in enumerate(got):
        if j in used:
            continue
        if any(same_box(d, g, tiled) for d in ref["dropped"]) or \
                any(excluding(r) and iou(box(r), box(g)) >= MIN_IOU for r in ref["boxes"]):
            excluded += 1
            continue
        errors.append(f"{image}: canopy box #{j} {fmt(g)} is extra: no torchvision box "
                      f"matches it (torchvision has {len(ref['boxes'])}, canopy {len(got)})")
    n = max(1, len(ref["boxes"]))
    if excluded > max(2, MAX_NEAR_TIE_FRACTION * n):
        errors.append(f"{image}: {excluded} near-ties excluded of {len(ref['boxes'])} boxes "
                      f"(more than {MAX_NEAR_TIE_FRACTION:.0%}: the fixture is too tie-prone)")
    return errors, excluded


def as_canopy(ref_image):
    """reference.py's boxes written as canopy's trees.json would have them
    (2 decimals for coordinates, 4 for the score)."""
    return [{"xmin": round(b["xmin"], 2), "ymin": round(b["ymin"], 2),
             "xmax": round(b["xmax"], 2), "ymax": round(b["ymax"], 2),
             "score": round(b["score"], 4)} for b in ref_image["boxes"]]


class Ctx:
    def __init__(self, a):
        self.a = a
        self.py = a.torch_python
        self.tools = os.path.join(a.source_dir, "tools", "deepforest")
        self.neon = os.path.join(a.source_dir, "tests", "data", "neon")
        if a.neon_dir:
            self.neon = a.neon_dir
        self.tmp = tempfile.mkdtemp(prefix="canopy-retina-parity.")

    def tool(self, name, *args, what=None):
        return run([self.py, os.path.join(self.tools, name), *args], what or name)

    def fixture(self):
        fx = os.path.join(self.tmp, "fx")
        self.tool("make_fixture.py", "--seed", str(self.a.seed), "--out", fx)
        # Three Hugging Face directories of the same name.
        dirs = {}
        for layout in ("hf", "ckpt", "pt"):
            d = os.path.join(self.tmp, layout, "deepforest-fixture")
            os.makedirs(os.path.dirname(d))
            dirs[layout] = d
        shutil.copytree(os.path.join(fx, "hf"), dirs["hf"])
        self.tool("convert.py", os.path.join(fx, "deepforest.ckpt"), "--output", dirs["ckpt"],
                  "--config", os.path.join(fx, "sizes.json"))
        self.tool("convert.py", os.path.join(fx, "state_dict.pt"), "--output", dirs["pt"],
                  "--config", os.path.join(dirs["hf"], "config.json"))
        return fx, dirs

    def reference(self, model, images, out, tiled=False):
        args = ["--model", model, "--out", out]
        if tiled:
            args += ["--tile", "--patch-size", "400", "--patch-overlap", "0.05", "--iou", "0.15"]
        self.tool("reference.py", *args, *images)
        with open(out) as f:
            return json.load(f)

    def image(self, name):
        for crop, src, rect in CROPS:
            if name == crop:
                p = os.path.join(self.tmp, crop)
                if not os.path.isfile(p):
                    run([self.py, "-c", "import sys; from PIL import Image; "
                         "Image.open(sys.argv[1]).crop(tuple(map(int, sys.argv[3:])))"
                         ".save(sys.argv[2])", self.image(src), p, *map(str, rect)],
                        f"cropping {src}")
                return p
        p = os.path.join(self.neon, name)
        if not os.path.isfile(p):
            raise Failure(f"{p}: missing (the NEON test images)")
        return p


def check_near_ties(doc):
    errors = []
    for im in doc["images"]:
        n = len(im["boxes"])
        ex = sum(1 for b in im["boxes"] if [w for w in b["near_tie"] if w != "truncation"])
        log(f"  {im['name']}: {n} boxes, {ex} near-ties, {len(im['dropped'])} dropped near-ties")
        if n < 10:
            errors.append(f"{im['name']}: only {n} boxes from the fixture (want >= 10)")
        if not any(b["near_tie"] == [] for b in im["boxes"]):
            errors.append(f"{im['name']}: every box is a near-tie")
        if ex > MAX_NEAR_TIE_FRACTION * n:
            errors.append(f"{im['name']}: {ex} of {n} boxes are near-ties")
    return errors


def self_test(c):
    errors = []
    fx, dirs = c.fixture()
    for layout in ("ckpt", "pt"):
        for f in ("model.safetensors", "config.json"):
            if not filecmp.cmp(os.path.join(dirs["hf"], f), os.path.join(dirs[layout], f),
                               shallow=False):
                errors.append(f"convert.py: {layout} -> {f} differs from the fixture's")
    # convert.py refuses another architecture, naming the file and the tensor.
    bad = os.path.join(c.tmp, "bad.pt")
    run([c.py, "-c", "import sys, torch; sd = torch.load(sys.argv[1]); "
         "del sd['head.regression_head.bbox_reg.weight']; torch.save(sd, sys.argv[2])",
         os.path.join(fx, "state_dict.pt"), bad], "making a broken state_dict")
    p = subprocess.run([c.py, os.path.join(c.tools, "convert.py"), bad, "--output",
                        os.path.join(c.tmp, "bad")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode == 0 or bad not in p.stdout or \
            "head.regression_head.bbox_reg.weight" not in p.stdout:
        errors.append(f"convert.py accepted or misreported a state_dict without bbox_reg "
                      f"(exit {p.returncode}): {p.stdout.strip()}")
    # ... and keeps only the RetinaNet's tensors of a checkpoint with more.
    more = os.path.join(c.tmp, "more.ckpt")
    run([c.py, "-c", "import sys, torch; ck = torch.load(sys.argv[1], weights_only=False); "
         "ck['state_dict']['crop_model.fc.weight'] = torch.ones(2, 3); "
         "ck['state_dict']['model.extra_buffer'] = torch.zeros(4); torch.save(ck, sys.argv[2])",
         os.path.join(fx, "deepforest.ckpt"), more], "making a checkpoint with more tensors")
    more_dir = os.path.join(c.tmp, "more")
    out = c.tool("convert.py", more, "--output", more_dir, "--config",
                 os.path.join(fx, "sizes.json"))
    if "crop_model.fc.weight" not in out or not filecmp.cmp(
            os.path.join(more_dir, "model.safetensors"),
            os.path.join(dirs["hf"], "model.safetensors"), shallow=False):
        errors.append("convert.py: a checkpoint with two tensors more than the RetinaNet's "
                      f"was not reduced to the RetinaNet's (output: {out.strip()})")
    imgs = [c.image(n) for n in UNTILED_IMAGES + [n for n, _, _ in CROPS]]
    docs = {}
    for layout, d in dirs.items():
        docs[layout] = c.reference(d, imgs, os.path.join(c.tmp, f"ref_{layout}.json"))
    for layout in ("ckpt", "pt"):
        if docs[layout]["images"] != docs["hf"]["images"] or \
                docs[layout]["config"] != docs["hf"]["config"]:
            errors.append(f"reference.py: the {layout} layout gives other predictions "
                          "than the Hugging Face one")
    errors += check_near_ties(docs["hf"])
    # Comparison: passes on itself, fails on a missing, moved or extra box.
    for im in docs["hf"]["images"]:
        got = as_canopy(im)
        e, ex = compare(im["name"], im, got, False)
        if e:
            errors.append(f"compare() fails reference output against itself: {e[:3]}")
        solid = [i for i, b in enumerate(im["boxes"]) if not b["near_tie"]]
        if not solid:
            errors.append(f"{im['name']}: no box that is not a near-tie")
            continue
        k = solid[0]
        cases = {
            "missing": got[:k] + got[k + 1:],
            "moved": [dict(g, xmin=g["xmin"] + 2, xmax=g["xmax"] + 2) if i == k else g
                      for i, g in enumerate(got)],
            "rescored": [dict(g, score=g["score"] + 0.01) if i == k else g
                         for i, g in enumerate(got)],
            "extra": got + [{"xmin": -50.0, "ymin": -50.0, "xmax": -10.0, "ymax": -10.0,
                             "score": 0.5}],
        }
        for what, g in cases.items():
            e, _ = compare(im["name"], im, g, False)
            if not e:
                errors.append(f"compare() passes a {what} box")
            else:
                log(f"  compare() on a {what} box: {e[0]}")
    # Tiling: DeepForest's windows on the 700 x 1035 image.
    tdoc = c.reference(dirs["hf"], [c.image(n) for n in TILED_IMAGES],
                       os.path.join(c.tmp, "ref_tile.json"), tiled=True)
    want = [[0, 0, 400, 400], [0, 380, 400, 400], [0, 635, 400, 400],
            [300, 0, 400, 400], [300, 380, 400, 400], [300, 635, 400, 400]]
    if tdoc["images"][0]["windows"] != want:
        errors.append(f"tile windows {tdoc['images'][0]['windows']}, expected {want}")
    errors += check_near_ties(tdoc)
    for im in tdoc["images"]:
        got = [dict(g) for g in as_canopy(im)]
        e, _ = compare(im["name"], im, got, True)
        if e:
            errors.append(f"compare() (tiled) fails reference output against itself: {e[:3]}")
    return errors


def backend_set(c):
    """The --sets that pick the backend and the conv path of every canopy run."""
    return [f"device.backend={c.a.backend}", f"detector.conv={c.a.conv}"]


def full(c):
    errors = []
    canopy = c.a.canopy
    if not canopy or not os.access(canopy, os.X_OK):
        raise Failure(f"{canopy}: no canopy binary (--canopy)")
    fx, dirs = c.fixture()
    cnw = {}
    for layout, d in dirs.items():
        cnw[layout] = os.path.join(c.tmp, f"m_{layout}.cnw")
        run([canopy, "model", "import", d, "--output", cnw[layout]],
            f"canopy model import ({layout} layout)")
    for layout in ("ckpt", "pt"):
        if not filecmp.cmp(cnw["hf"], cnw[layout], shallow=False):
            errors.append(f"{cnw[layout]} (from the {layout} layout via convert.py) differs "
                          f"from {cnw['hf']} (from the Hugging Face layout)")
    cases = [(UNTILED_IMAGES + [n for n, _, _ in CROPS], UNTILED_SET, False),
             (TILED_IMAGES, TILED_SET, True)]
    total_ex = 0
    for names, sets, tiled in cases:
        imgs = [c.image(n) for n in names]
        ref = c.reference(dirs["hf"], imgs,
                          os.path.join(c.tmp, "ref_tile.json" if tiled else "ref.json"), tiled)
        out = os.path.join(c.tmp, "out_tile" if tiled else "out")
        cmd = [canopy, "run", "--model", cnw["hf"], "--output", out]
        for p in imgs:
            cmd += ["--input", p]
        for s in sets + backend_set(c):
            cmd += ["--set", s]
        run(cmd, "canopy run" + (" (tiled)" if tiled else ""))
        for im in ref["images"]:
            stem = os.path.splitext(im["name"])[0]
            tj = os.path.join(out, stem + ".trees.json")
            try:
                with open(tj) as f:
                    doc = json.load(f)
                got = doc["trees"]
                for t in got:
                    for k in ("xmin", "ymin", "xmax", "ymax", "score"):
                        if not isinstance(t.get(k), (int, float)):
                            raise Failure(f"{tj}: a tree without a number {k!r}: {t}")
            except (OSError, ValueError, KeyError) as e:
                raise Failure(f"{tj}: {e}") from e
            e, ex = compare(im["name"] + (" (tiled)" if tiled else ""), im, got, tiled)
            total_ex += ex
            log(f"  {im['name']}{' (tiled)' if tiled else ''}: torchvision {len(im['boxes'])}"
                f" boxes, canopy {len(got)}, {ex} near-ties excluded, {len(e)} errors")
            errors += e
    log(f"near-ties excluded in all: {total_ex}")
    errors += windowed(c, cnw["hf"])
    return errors


def windowed(c, cnw):
    """The tiled image as a GeoTIFF above [limits] window_pixels: read window
    by window (DeepForest's patches as the windows), its boxes must equal the
    tiled whole-image run's exactly (same patches, same shift and truncation,
    same mosaic)."""
    name = TILED_IMAGES[0]
    src = c.image(name)
    tif = os.path.join(c.tmp, os.path.splitext(name)[0] + ".tif")
    run(["gdal_translate", "-q", "-of", "GTiff", "-co", "TILED=YES", "-b", "1", "-b", "2",
         "-b", "3", src, tif], "gdal_translate")
    out = os.path.join(c.tmp, "out_windows")
    cmd = [c.a.canopy, "run", "--model", cnw, "--output", out, "--input", tif,
           "--set", "limits.window_pixels=100000", "--set", "log.level=debug"]
    for s in TILED_SET + backend_set(c):
        cmd += ["--set", s]
    res = run(cmd, "canopy run (GeoTIFF in windows)")
    stem = os.path.splitext(name)[0]
    errors = []
    if "in windows" not in res:
        errors.append(f"{tif} was not processed in windows")
    with open(os.path.join(c.tmp, "out_tile", stem + ".trees.json")) as f:
        whole = json.load(f)["trees"]
    with open(os.path.join(out, stem + ".trees.json")) as f:
        win = json.load(f)["trees"]
    keys = ("xmin", "ymin", "xmax", "ymax", "score", "label")
    a = sorted(tuple(t.get(k) for k in keys) for t in whole)
    b = sorted(tuple(t.get(k) for k in keys) for t in win)
    if a != b:
        diff = [t for t in b if t not in a][:3]
        errors.append(f"{tif} in windows: {len(b)} boxes, the whole image {len(a)}; "
                      f"boxes only in windows: {diff}")
    log(f"  {name} as a GeoTIFF in windows: {len(b)} boxes, "
        f"{'equal to' if a == b else 'NOT equal to'} the tiled whole-image run")
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch-python", required=True, help=".venv-torch/bin/python")
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--canopy", help="the canopy binary")
    ap.add_argument("--neon-dir", help="NEON images (default: SOURCE/tests/data/neon)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--backend", choices=("opencl", "cpu"), default="opencl",
                    help="[device] backend of every canopy run")
    ap.add_argument("--conv", choices=("auto", "direct", "gemm", "winograd", "pixel", "winograd4"),
                    default="auto", help="[detector] conv of every canopy run (OpenCL)")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    if not os.access(a.torch_python, os.X_OK):
        print(f"FAIL: {a.torch_python}: no torch interpreter; scripts/bootstrap.sh --torch creates "
              ".venv-torch (scripts/requirements-torch.txt)", flush=True)
        return 1
    c = Ctx(a)
    try:
        errors = self_test(c) if a.self_test else full(c)
    except (Failure, subprocess.TimeoutExpired) as e:
        errors = [str(e)]
    finally:
        if a.keep:
            log(f"kept {c.tmp}")
        else:
            shutil.rmtree(c.tmp, ignore_errors=True)
    for e in errors:
        print("FAIL: " + e, flush=True)
    if not errors:
        log("PASS")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
