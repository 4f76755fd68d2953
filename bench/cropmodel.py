#!/usr/bin/env python3
"""Tree-type classifier bench: canopy's second stage against the same model
in PyTorch, on the same machine and threads, in one run.

    .venv-torch/bin/python bench/cropmodel.py --canopy build/canopy
        [--arch resnet18,resnet50] [--threads 2] [--copies 8] [--repeats 3]
        [--backend cpu|opencl] [--out bench/results]

For each architecture: a seeded CropModel (tests/detect/crop_parity.py's
build_model: torchvision's ResNet, 3 classes) is saved, imported, and
  canopy: `canopy run` on --copies copies of a NEON image (OSBS_029, 400 x
  400) three ways: binarization only (--no-detector), detection (the default
  crown model), detection + classifier. Medians of --repeats runs. The
  classifier's time is (detection + classifier) - detection, over the trees
  typed; the detector's (detection) - (binarization only); the second stage's
  cost is their ratio. Start-up is in every run alike (model load, kernel
  build) and cancels in the differences only approximately: each run's
  classifier also loads its model (a few ms) and plans its engine.
  PyTorch: the same model on the same crops (cut as BoundingBoxDataset cuts
  them from canopy's boxes), bounding_box_transform and the forward pass in
  batches of 16, softmax, torch.set_num_threads(--threads); median of
  --repeats passes.
Writes OUT/cropmodel.json and OUT/cropmodel.md.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "detect"))
import crop_parity  # noqa: E402

sys.path.insert(0, HERE)
from retina_report import cpu_model  # noqa: E402


def timed_run(canopy, args):
    t0 = time.monotonic()
    subprocess.run([canopy, "run"] + args, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def bench_arch(arch, args, work, img_path):
    m = crop_parity.build_model(arch, 21)
    src = os.path.join(work, arch)
    crop_parity.save_cropmodel(m, arch, "bilinear", 0, src)
    cnw = os.path.join(work, arch + ".cnw")
    subprocess.run([args.canopy, "model", "import", src, "--output", cnw], check=True,
                   stdout=subprocess.DEVNULL)
    inputs = []
    for i in range(args.copies):
        p = os.path.join(work, "in", "copy%02d.png" % i)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        shutil.copy(img_path, p)
        inputs += ["--input", p]
    common = ["--set", "device.backend=" + args.backend, "--set",
              "device.threads=%d" % args.threads, "--set", "output.overlay=false",
              "--set", "output.vector=none"] + inputs
    out = os.path.join(work, "out-" + arch)
    times = {"binarize": [], "detect": [], "classify": []}
    for _ in range(args.repeats):
        for mode, extra in (("binarize", ["--no-detector"]), ("detect", []),
                            ("classify", ["--classifier", cnw])):
            shutil.rmtree(out, ignore_errors=True)
            times[mode].append(timed_run(args.canopy, ["--output", out] + extra + common))
    med = {k: statistics.median(v) for k, v in times.items()}
    with open(os.path.join(out, "copy00.trees.json")) as f:
        tj = json.load(f)
    trees = len(tj["trees"]) * args.copies
    cls_s = med["classify"] - med["detect"]
    det_s = med["detect"] - med["binarize"]

    # PyTorch on the same crops.
    torch.set_num_threads(args.threads)
    img = np.array(Image.open(img_path).convert("RGB"))
    H, W = img.shape[:2]
    rects = [crop_parity.crop_rect((t["xmin"], t["ymin"], t["xmax"], t["ymax"]), 0, W, H)
             for t in tj["trees"]] * args.copies
    passes = []
    for _ in range(args.repeats):
        t0 = time.monotonic()
        crop_parity.predict(m, img, rects, "bilinear")
        passes.append(time.monotonic() - t0)
    torch_s = statistics.median(passes)
    return {
        "arch": arch, "trees": trees, "copies": args.copies,
        "canopy_runs_s": times, "canopy_classifier_s": cls_s, "canopy_detector_s": det_s,
        "canopy_crops_per_s": trees / cls_s if cls_s > 0 else None,
        "torch_s": torch_s, "torch_crops_per_s": trees / torch_s,
        "second_stage_fraction_of_detection": cls_s / det_s if det_s > 0 else None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--canopy", required=True)
    ap.add_argument("--arch", default="resnet18,resnet50")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    img = os.path.join(HERE, "..", "tests", "data", "neon", "OSBS_029.png")
    work = tempfile.mkdtemp(prefix="bench_cropmodel.")
    try:
        results = [bench_arch(a, args, work, img) for a in args.arch.split(",")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count(),
           "threads": args.threads, "backend": args.backend, "torch": torch.__version__,
           "image": "OSBS_029.png (400 x 400) x %d" % args.copies, "repeats": args.repeats,
           "note": args.note, "results": results}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "cropmodel.json"), "w") as f:
        json.dump(doc, f, indent=1)
    lines = ["# Tree-type classifier: canopy against PyTorch", "",
             "%s, %s cores, %d threads for both, canopy backend %s, torch %s, %s; %s. "
             "Medians of %d runs. %s" % (doc["cpu"], doc["cores"], args.threads, args.backend,
                                         doc["torch"], doc["date"], doc["image"], args.repeats,
                                         args.note), "",
             "| model | trees | canopy crops/s | PyTorch crops/s | canopy / PyTorch | "
             "second stage / detection |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append("| %s | %d | %.1f | %.1f | %.2f | %.2f |" % (
            r["arch"], r["trees"], r["canopy_crops_per_s"] or 0, r["torch_crops_per_s"],
            (r["canopy_crops_per_s"] or 0) / r["torch_crops_per_s"],
            r["second_stage_fraction_of_detection"] or 0))
    with open(os.path.join(args.out, "cropmodel.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
