#!/usr/bin/env python3
"""crop_ckpt: a DeepForest CropModel checkpoint (.ckpt) through
tools/deepforest/convert.py into `canopy model import`.

torchvision's ResNet-18 and ResNet-50 with seeded weights (crop_parity.py's
build_model) are saved twice: in CropModel.push_to_hub's layout (the one
crop_parity.py proves against torchvision), and as the Lightning checkpoint
CropModel writes (state_dict under "model.", a metrics entry beside it,
hyper_parameters.config.cropmodel, the top-level label_dict of
on_save_checkpoint): DeepForest 2's, with the transform rules in its
config; and DeepForest 1.x's, with neither config nor architecture (read
from the blocks). Each checkpoint converted and imported gives a .cnw
byte-identical to the Hugging Face layout's. Refused, naming file and
reason: a checkpoint without label_dict, and one whose label_dict does not
match fc's outputs."""
import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# The version is given: by default it is the safetensors file's SHA-256,
# which its metadata changes.
from crop_parity import LABELS, build_model, save_cropmodel  # noqa: E402

CONVERT = os.path.join(HERE, "..", "..", "tools", "deepforest", "convert.py")


def ckpt_of(m, cropmodel, label_dict):
    sd = {"model." + k: v for k, v in m.state_dict().items()}
    sd["metrics.Accuracy.tp"] = torch.zeros(3)  # another module's state: dropped
    hp = {"model": None, "config_args": None}
    if cropmodel is not None:
        hp["config"] = {"batch_size": 2, "cropmodel": cropmodel}
    ck = {"state_dict": sd, "hyper_parameters": hp, "epoch": 3,
          "pytorch-lightning_version": "2.5.0"}
    if label_dict is not None:
        ck["label_dict"] = label_dict
    return ck


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--canopy", required=True)
    ap.add_argument("--seed", type=int, default=21)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="crop_ckpt.")
    ok = True

    def convert_import(tag, ck):
        path = os.path.join(work, tag + ".ckpt")
        torch.save(ck, path)
        out = os.path.join(work, tag)
        r = subprocess.run([sys.executable, CONVERT, path, "--output", out],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return r, None
        cnw = os.path.join(work, tag + ".cnw")
        subprocess.run([args.canopy, "model", "import", out, "--output", cnw, "--version",
                        "crop-ckpt"], check=True, stdout=subprocess.DEVNULL)
        return r, cnw

    try:
        cases = [
            # DeepForest 2: rules and architecture in hyper_parameters.config
            ("df2_r18", "resnet18", "nearest", 7,
             {"architecture": "resnet18", "resize": [224, 224], "resize_interpolation":
              "nearest", "normalize": None, "expand": 7, "lr": 1e-4,
              "balance_classes": False}),
            # DeepForest 1.x: no config at all, a ResNet-50 (simple_resnet_50)
            ("df1_r50", "resnet50", "bilinear", 0, None),
        ]
        models = {}
        for tag, arch, interp, expand, cropmodel in cases:
            m = models.setdefault(arch, build_model(arch, args.seed))
            hf = os.path.join(work, tag + "-hf")
            save_cropmodel(m, arch, interp, expand, hf)
            ref = os.path.join(work, tag + "-hf.cnw")
            subprocess.run([args.canopy, "model", "import", hf, "--output", ref, "--version",
                            "crop-ckpt"], check=True, stdout=subprocess.DEVNULL)
            r, cnw = convert_import(tag, ckpt_of(m, cropmodel, LABELS))
            same = cnw is not None and filecmp.cmp(ref, cnw, shallow=False)
            dropped = "dropped 1 entries" in r.stderr and "metrics.Accuracy.tp" in r.stderr
            print("%s: convert exit %d, .cnw %s the Hugging Face layout's%s: %s"
                  % (tag, r.returncode, "equals" if same else "DIFFERS from",
                     "" if dropped else ", metrics entry not reported", r.stderr.strip()))
            ok = ok and same and dropped

        m = models["resnet18"]
        for tag, ck, needles in (
                ("no_labels", ckpt_of(m, {"architecture": "resnet18"}, None),
                 ["no_labels.ckpt", "without a label_dict"]),
                ("two_labels", ckpt_of(m, None, {"alive": 0, "dead": 1}),
                 ["two_labels.ckpt", "label_dict names 2 classes",
                  "model.fc.weight has 3 outputs"])):
            r, cnw = convert_import(tag, ck)
            msg = r.stderr.strip()
            good = r.returncode != 0 and cnw is None and all(n in msg for n in needles) \
                and not os.path.exists(os.path.join(work, tag, "model.safetensors"))
            print("refusal %s: exit %d: %s%s" % (tag, r.returncode, msg, "" if good else
                                                  "  FAIL"))
            ok = ok and good
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("crop ckpt:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
