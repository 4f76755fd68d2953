#!/usr/bin/env python3
"""Converts a DeepForest RetinaNet checkpoint to the Hugging Face layout that
`canopy model import` reads (model.safetensors + config.json).

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
        sd_in, config = obj["state_dict"], config_from_ckpt(obj)
    elif isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        sd_in, config = obj, {}
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
