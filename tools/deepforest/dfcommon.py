"""Shared helpers of the DeepForest tools: the model DeepForest builds, the
Hugging Face layout it publishes, and the checks on a state_dict.

DeepForest (weecology/DeepForest, src/deepforest/models/retinanet.py,
RetinaNetHub) builds torchvision's RetinaNet around the backbone of
retinanet_resnet50_fpn (ResNet-50 + FPN, P3-P7 with LastLevelP6P7(256, 256))
with the default anchor generator and head (v1: no GroupNorm), and publishes
it through huggingface_hub's PyTorchModelHubMixin: model.safetensors (the
state_dict, no prefix) and config.json, the dict of RetinaNetHub.update_config:
num_classes, nms_thresh, score_thresh, label_dict, plus the extra keyword
arguments it was built with (detections_per_img, topk_candidates, and any
RetinaNet argument such as min_size / max_size), written with
json.dumps(sort_keys=True, indent=2).
"""

import json
import math
import os
import sys

import torch
import torchvision
from torchvision.models.detection.retinanet import RetinaNet

# The RetinaNet constructor's defaults (torchvision 0.20), which DeepForest's
# model gets for every key its config.json does not name.
RETINANET_DEFAULTS = {
    "min_size": 800,
    "max_size": 1333,
    "score_thresh": 0.05,
    "nms_thresh": 0.5,
    "detections_per_img": 300,
    "topk_candidates": 1000,
}
# RetinaNetHub's own defaults.
HUB_DEFAULTS = {"num_classes": 1, "nms_thresh": 0.05, "score_thresh": 0.5}

# config.json keys that are not RetinaNet constructor arguments.
NON_MODEL_KEYS = {"num_classes", "label_dict", "backbone_weights"}

# Tensors every RetinaNet of this architecture has (a sample: the checks name
# the first missing one). The full list is the model's own state_dict.
REQUIRED_SAMPLE = [
    "backbone.body.conv1.weight",
    "backbone.body.layer4.2.conv3.weight",
    "backbone.fpn.extra_blocks.p6.weight",
    "backbone.fpn.extra_blocks.p7.weight",
    "head.classification_head.cls_logits.weight",
    "head.regression_head.bbox_reg.weight",
]


def die(msg):
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    sys.exit(1)


def model_kwargs(config):
    """The RetinaNet keyword arguments of a config.json dict."""
    return {k: v for k, v in config.items() if k not in NON_MODEL_KEYS}


def build_model(config):
    """DeepForest's RetinaNetHub without huggingface_hub: the same modules,
    from a config.json dict. nn.BatchNorm2d as RetinaNetHub gets them
    (backbone_weights=None); eval() makes them use their running statistics
    exactly as FrozenBatchNorm2d would, up to rounding (see reference.py)."""
    backbone = torchvision.models.detection.retinanet_resnet50_fpn(
        weights=None, weights_backbone=None
    ).backbone
    cfg = dict(HUB_DEFAULTS)
    cfg.update(config)
    return RetinaNet(
        backbone=backbone,
        num_classes=int(cfg["num_classes"]),
        **model_kwargs(cfg),
    )


def expected_keys(num_classes=1):
    """Names and shapes of the state_dict of a RetinaNet with num_classes."""
    torch.manual_seed(0)
    m = build_model({"num_classes": num_classes})
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def save_hf(state_dict, config, outdir):
    """Writes outdir/model.safetensors and outdir/config.json as
    PyTorchModelHubMixin.save_pretrained does."""
    from safetensors.torch import save_file

    os.makedirs(outdir, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    save_file(sd, os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(outdir, "config.json"), "w") as f:
        f.write(json.dumps(config, sort_keys=True, indent=2))


def load_hf(modeldir):
    """(state_dict, config) of a Hugging Face layout directory."""
    from safetensors.torch import load_file

    st = os.path.join(modeldir, "model.safetensors")
    cj = os.path.join(modeldir, "config.json")
    for p in (st, cj):
        if not os.path.isfile(p):
            die(f"{modeldir}: no {os.path.basename(p)} (expected the Hugging Face layout: "
                "model.safetensors + config.json; convert a .ckpt/.pt with "
                "tools/deepforest/convert.py)")
    with open(cj) as f:
        config = json.load(f)
    return load_file(st), config


def load_model(modeldir, check=True):
    """The model of a Hugging Face layout directory, eval(), float32."""
    sd, config = load_hf(modeldir)
    model = build_model(config)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # BatchNorm2d's num_batches_tracked counters are not used in eval().
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if check and (missing or unexpected):
        die(f"{modeldir}/model.safetensors: not this RetinaNet: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    model.eval()
    return model.float(), config


def compute_windows(width, height, patch_size, patch_overlap):
    """slidingwindow.generateForSize (0.0.14) as DeepForest's compute_windows
    calls it: (x, y, w, h) in x-major order."""
    if patch_overlap > 1:
        raise ValueError(f"Patch overlap {patch_overlap} must be between 0 - 1")
    wx, wy = min(patch_size, width), min(patch_size, height)
    ox, oy = int(math.floor(wx * patch_overlap)), int(math.floor(wy * patch_overlap))
    sx, sy = wx - ox, wy - oy
    lx, ly = width - wx, height - wy
    xs, ys = list(range(0, lx + 1, sx)), list(range(0, ly + 1, sy))
    if not xs or xs[-1] != lx:
        xs.append(lx)
    if not ys or ys[-1] != ly:
        ys.append(ly)
    return [(x, y, wx, wy) for x in xs for y in ys]
