#!/usr/bin/env python3
"""Converts a DeepForest RetinaNet or CropModel checkpoint to the Hugging Face
layout that `canopy model import` reads (model.safetensors + config.json).

    convert.py SRC.ckpt|SRC.pt --output DIR [--config config.json]

SRC is either a PyTorch Lightning checkpoint as deepforest.main saves it (a
dict with "state_dict", whose keys carry the "model." prefix, and
"hyper_parameters"["config"], DeepForest's configuration), or a plain
state_dict of the RetinaNet (keys without prefix, or with "model.").

Only the RetinaNet's tensors are kept (the names and shapes of torchvision's
retinanet_resnet50_fpn with the checkpoint's number of classes); anything
else (another module of the LightningModule) is dropped with a note. A file
that lacks a tensor of that RetinaNet, or has one of another shape, is
refused with a message naming the file and the tensor.

config.json gets num_classes, nms_thresh, score_thresh, label_dict,
detections_per_img and topk_candidates from the checkpoint's
hyper_parameters where DeepForest stores them (hyper_parameters.config, and
the checkpoint's top-level label_dict), then every key of --config on top
(a JSON object: the only source for a plain state_dict, and the place for
min_size / max_size, which DeepForest's configuration does not carry; left
out, the model uses torchvision's defaults, 800 and 1333).

A CropModel (a tree-type classifier: torchvision's ResNet, model.conv1.weight
... model.fc.weight under the LightningModule's "model." prefix) becomes
CropModel.push_to_hub's layout instead: model.safetensors with the ResNet's
tensors under "model." (anything else dropped with a note), config.json
{"cropmodel": {...}} with label_dict (the checkpoint's top-level label_dict,
which CropModel.on_save_checkpoint writes, else
hyper_parameters.config.cropmodel.label_dict), architecture (the config's,
else resnet18 / 34 / 50 / 101 / 152 read from the blocks), resize,
resize_interpolation, normalize and expand where the checkpoint's config has
them (absent: DeepForest's defaults), then --config's keys on top (a JSON
object of cropmodel keys). canopy model import checks every tensor against
the architecture.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dfcommon  # noqa: E402

CONFIG_KEYS = ("num_classes", "nms_thresh", "score_thresh", "label_dict",
               "detections_per_img", "topk_candidates", "min_size", "max_size")


def config_from_ckpt(ckpt):
    cfg = {}
    hp = ckpt.get("hyper_parameters") or {}
    src = hp.get("config", hp) if isinstance(hp, dict) else {}
    if not isinstance(src, dict):
        src = dict(src)
    for k in CONFIG_KEYS:
        if src.get(k) is not None:
            cfg[k] = src[k]
    # Pre-2.0 DeepForest kept the score threshold under retinanet.score_thresh.
    ret = src.get("retinanet")
    if isinstance(ret, dict) and ret.get("score_thresh") is not None:
        cfg["score_thresh"] = ret["score_thresh"]
    if ckpt.get("label_dict"):
        cfg["label_dict"] = dict(ckpt["label_dict"])
    return cfg


CROP_KEYS = ("architecture", "label_dict", "resize", "resize_interpolation", "normalize",
             "expand")


def is_cropmodel(sd):
    keys = {k[len("model."):] if k.startswith("model.") else k for k in sd}
    return {"conv1.weight", "fc.weight", "layer1.0.conv1.weight"} <= keys


def resnet_name(sd):
    """torchvision's ResNet by its blocks: bottlenecks (conv3) or basic
    blocks, and the number of blocks in layer3."""
    l3 = [int(k.split(".")[2]) for k in sd if k.startswith("model.layer3.")]
    blocks = 1 + max(l3) if l3 else 0
    bottleneck = "model.layer1.0.conv3.weight" in sd
    names = {(False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50",
             (True, 23): "resnet101", (True, 36): "resnet152"}
    return names.get((bottleneck, blocks), "resnet (%s blocks, %d in layer3)"
                     % ("bottleneck" if bottleneck else "basic", blocks))


def convert_crop(src, sd_in, ckpt, extra, outdir):
    """A CropModel's checkpoint (or a plain ResNet state_dict) ->
    CropModel.push_to_hub's files."""
    sd, dropped = {}, []
    for k, v in sd_in.items():
        name = k if k.startswith("model.") or ckpt else "model." + k
        if name.startswith("model.") and torch.is_tensor(v):
            sd[name] = v.float() if v.is_floating_point() else v
        else:
            dropped.append(k)
    if dropped:
        print(f"convert.py: {src}: dropped {len(dropped)} entries that are not the "
              f"classifier's: {', '.join(sorted(dropped)[:5])}"
              f"{' ...' if len(dropped) > 5 else ''}", file=sys.stderr)
    hp = ckpt.get("hyper_parameters") or {}
    conf = hp.get("config") if hasattr(hp, "get") else None
    cm = conf.get("cropmodel") if hasattr(conf, "get") else None
    cm = dict(cm) if cm is not None else {}
    crop = {k: cm[k] for k in CROP_KEYS if k in cm}
    if ckpt.get("label_dict"):
        crop["label_dict"] = dict(ckpt["label_dict"])
    crop.update(extra)
    crop.setdefault("architecture", resnet_name(sd))
    if not crop.get("label_dict"):
        dfcommon.die(f"{src}: a CropModel without a label_dict (neither the checkpoint's "
                     "label_dict nor hyper_parameters.config.cropmodel.label_dict; give one "
                     "with --config)")
    crop["label_dict"] = {str(k): int(v) for k, v in dict(crop["label_dict"]).items()}
    for k in ("resize", "normalize"):  # OmegaConf's containers as JSON's
        if crop.get(k) is not None and not isinstance(crop[k], (int, float, str, bool)):
            crop[k] = (list(crop[k]) if k == "resize" else
                       {kk: list(vv) for kk, vv in dict(crop[k]).items()})
    fc = sd["model.fc.weight"]
    if len(crop["label_dict"]) != fc.shape[0]:
        dfcommon.die(f"{src}: label_dict names {len(crop['label_dict'])} classes, but "
                     f"model.fc.weight has {fc.shape[0]} outputs")
    dfcommon.save_hf(sd, {"cropmodel": crop}, outdir)
    print(f"convert.py: {src}: a CropModel ({crop['architecture']}, "
          f"{len(crop['label_dict'])} classes) -> {outdir}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="DeepForest .ckpt (Lightning) or .pt (state_dict)")
    ap.add_argument("--output", required=True, help="directory to write")
    ap.add_argument("--config", help="JSON object of config.json keys to set")
    a = ap.parse_args()

    try:
        obj = torch.load(a.src, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any reason torch gives
        dfcommon.die(f"{a.src}: not a PyTorch checkpoint ({e})")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd_in, ckpt = obj["state_dict"], obj
    elif isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        sd_in, ckpt = obj, None
    else:
        dfcommon.die(f"{a.src}: neither a Lightning checkpoint (no \"state_dict\") nor a "
                     "state_dict (a dict of tensors)")
    if a.config:
        try:
            with open(a.config) as f:
                extra = json.load(f)
        except (OSError, ValueError) as e:
            dfcommon.die(f"{a.config}: {e}")
        if not isinstance(extra, dict):
            dfcommon.die(f"{a.config}: not a JSON object")
    else:
        extra = {}
    if is_cropmodel(sd_in):
        return convert_crop(a.src, sd_in, ckpt or {}, extra, a.output)
    config = config_from_ckpt(ckpt) if ckpt is not None else {}
    config.update(extra)

    # Strip the LightningModule's "model." prefix (RetinaNetHub's own hook
    # does the same when it loads an old checkpoint).
    sd = {}
    for k, v in sd_in.items():
        name = k[len("model."):] if k.startswith("model.") else k
        sd[name] = v
    cls = sd.get("head.classification_head.cls_logits.weight")
    if cls is None:
        dfcommon.die(f"{a.src}: not a torchvision RetinaNet: no "
                     "head.classification_head.cls_logits.weight "
                     f"(the file has {len(sd)} tensors, e.g. {sorted(sd)[:3]})")
    nc = int(cls.shape[0]) // 9
    if config.get("num_classes") not in (None, nc):
        dfcommon.die(f"{a.src}: num_classes {config['num_classes']} in the configuration, "
                     f"but cls_logits has {cls.shape[0]} channels (9 anchors x {nc})")
    config["num_classes"] = nc
    config.setdefault("label_dict", {"Tree": 0} if nc == 1 else None)
    if config["label_dict"] is None:
        dfcommon.die(f"{a.src}: {nc} classes and no label_dict (give one with --config)")

    want = dfcommon.expected_keys(nc)
    out = {}
    for k, shape in want.items():
        if k not in sd:
            if k.endswith("num_batches_tracked"):
                continue  # FrozenBatchNorm2d models have none
            dfcommon.die(f"{a.src}: not DeepForest's RetinaNet (torchvision "
                         f"retinanet_resnet50_fpn): missing tensor {k}")
        if tuple(sd[k].shape) != shape:
            dfcommon.die(f"{a.src}: tensor {k} has shape {tuple(sd[k].shape)}, "
                         f"expected {shape}")
        t = sd[k]
        out[k] = t.float() if t.is_floating_point() else t
    dropped = sorted(set(sd) - set(want))
    if dropped:
        print(f"convert.py: {a.src}: dropped {len(dropped)} tensors that are not the "
              f"RetinaNet's: {', '.join(dropped[:5])}{' ...' if len(dropped) > 5 else ''}",
              file=sys.stderr)
    dfcommon.save_hf(out, config, a.output)


if __name__ == "__main__":
    main()
