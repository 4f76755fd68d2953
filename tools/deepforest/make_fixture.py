#!/usr/bin/env python3
"""Builds a DeepForest-shaped RetinaNet with seeded random weights, for the
parity tests of canopy's RetinaNet against torchvision.

    make_fixture.py --seed N --out DIR [--min-size S] [--max-size M]
                    [--score-thresh T] [--nms-thresh U]
                    [--detections-per-img D] [--topk-candidates K]
                    [--layout hf,ckpt,pt]

Writes, under DIR:
  hf/model.safetensors, hf/config.json   the Hugging Face layout DeepForest
                                         publishes (RetinaNetHub)
  deepforest.ckpt                        a PyTorch Lightning checkpoint as
                                         deepforest.main saves it: state_dict
                                         with the "model." prefix,
                                         hyper_parameters.config, label_dict
  state_dict.pt                          the bare state_dict (no prefix)
  sizes.json                             {"min_size": S, "max_size": M}: what a
                                         .ckpt/.pt does not carry (DeepForest's
                                         config has no such keys), for
                                         convert.py --config

The weights: every convolution random normal (He), every batch norm with
random weight / bias, and running statistics set from the activations of a
seeded synthetic image (then perturbed), so that folding the batch norms is
exercised and activations keep a unit-ish scale through the 50 layers. The
FPN and head convolutions are rescaled to unit output; the classification
logits get a spread and a bias so that a NEON image gives tens to a couple of
hundred boxes; the box regression small deltas. Deterministic from the seed
on one machine (the calibration runs convolutions, so another CPU may differ
in the last bits: build the fixture where you compare, do not store it).
"""

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dfcommon  # noqa: E402


def synthetic_image(g, h=400, w=400, crowns=160):
    """An RGB image in [0, 1], 3 x h x w, with roughly the statistics of a NEON
    orthophoto (per-channel std about 0.2, neighbour differences about 0.07):
    bright Gaussian crowns with a shadow on a smooth background, plus noise."""
    coarse = torch.rand(1, 3, h // 50, w // 50, generator=g)
    img = 0.3 + 0.3 * F.interpolate(coarse, size=(h, w), mode="bilinear",
                                    align_corners=False)[0]
    yy = torch.arange(h, dtype=torch.float32).view(h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, w)
    for _ in range(crowns):
        cy, cx = float(torch.rand(1, generator=g)) * h, float(torch.rand(1, generator=g)) * w
        sig = 3.0 + 12.0 * float(torch.rand(1, generator=g))
        color = 0.2 + 0.5 * torch.rand(3, 1, 1, generator=g)
        crown = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sig * sig))
        shadow = torch.exp(-((yy - cy - sig) ** 2 + (xx - cx - sig) ** 2) / (2 * sig * sig))
        img = img + color * crown - 0.25 * shadow
    img = img + 0.12 * (torch.rand(3, h, w, generator=g) - 0.5)
    return img.clamp(0, 1)


def randomize(model, g):
    """Random weights everywhere (He normal convolutions, random BN affine)."""
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) *
                               math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
        elif isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            scale = 0.5 if name.endswith("bn3") else 1.0  # residual branches
            with torch.no_grad():
                m.weight.copy_((0.6 + 0.8 * torch.rand(n, generator=g)) * scale)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.num_batches_tracked.fill_(int(torch.randint(1, 100000, (1,),
                                                              generator=g)))


def calibrate(model, g, image):
    """One forward pass on `image` in eval mode: each batch norm takes running
    statistics near those of its input (mean + 0.2 std noise, variance x
    0.6-1.6), each FPN / head convolution is rescaled to unit output std (on
    its first call: the heads run on P3 first)."""
    hooks = []
    done = set()

    def bn_pre(m, inp):
        x = inp[0]
        mu = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3)) + 1e-3
        n = mu.numel()
        m.running_mean.copy_(mu + 0.2 * var.sqrt() * torch.randn(n, generator=g))
        m.running_var.copy_(var * (0.6 + torch.rand(n, generator=g)))

    def conv_post(m, inp, out):
        if m in done:
            return None
        done.add(m)
        s = float(out.std()) + 1e-6
        m.weight.div_(s)
        if m.bias is not None:
            m.bias.div_(s)
        return out / s

    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(bn_pre))
        elif isinstance(m, torch.nn.Conv2d) and not name.startswith("backbone.body"):
            hooks.append(m.register_forward_hook(conv_post))
    model.eval()
    with torch.no_grad():
        model([image])
    for h in hooks:
        h.remove()


def tune_heads(model, g, image, score_thresh, target_fraction):
    """cls_logits: unit spread, bias so that about target_fraction of the
    anchors of `image` score above score_thresh; bbox_reg: deltas of std 0.1."""
    cls = model.head.classification_head.cls_logits
    reg = model.head.regression_head.bbox_reg
    logits = []
    hook = cls.register_forward_hook(lambda m, i, o: logits.append(o.detach().flatten()))
    with torch.no_grad():
        model([image])
    hook.remove()
    spread = 1.0
    with torch.no_grad():
        allv = torch.cat(logits) * spread
        cls.weight.mul_(spread)
        cls.bias.mul_(spread)
        # Bias shift: the (1 - target_fraction) quantile lands on the threshold.
        t = math.log(score_thresh / (1 - score_thresh))
        q = float(torch.quantile(allv[: 1 << 24], 1 - target_fraction))
        cls.bias.add_(t - q)
        reg.weight.mul_(0.1)
        reg.bias.mul_(0.1)
        reg.bias.add_(torch.randn(reg.bias.shape, generator=g) * 0.02)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--min-size", type=int, default=256)
    ap.add_argument("--max-size", type=int, default=512)
    ap.add_argument("--score-thresh", type=float, default=0.1)
    ap.add_argument("--nms-thresh", type=float, default=0.05)
    ap.add_argument("--detections-per-img", type=int, default=300)
    ap.add_argument("--topk-candidates", type=int, default=1000)
    ap.add_argument("--target-fraction", type=float, default=0.01,
                    help="share of the anchors above score_thresh on the calibration image")
    ap.add_argument("--layout", default="hf,ckpt,pt")
    a = ap.parse_args()
    layouts = [x for x in a.layout.split(",") if x]
    for x in layouts:
        if x not in ("hf", "ckpt", "pt"):
            dfcommon.die(f"--layout: unknown layout {x!r} (hf, ckpt, pt)")

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    g = torch.Generator().manual_seed(a.seed)
    torch.manual_seed(a.seed)  # construction's own init (overwritten anyway)
    config = {
        "num_classes": 1,
        "nms_thresh": a.nms_thresh,
        "score_thresh": a.score_thresh,
        "label_dict": {"Tree": 0},
        "detections_per_img": a.detections_per_img,
        "topk_candidates": a.topk_candidates,
        "min_size": a.min_size,
        "max_size": a.max_size,
    }
    model = dfcommon.build_model(config)
    randomize(model, g)
    image = synthetic_image(g)
    calibrate(model, g, image)
    tune_heads(model, g, image, a.score_thresh, a.target_fraction)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    os.makedirs(a.out, exist_ok=True)
    if "hf" in layouts:
        dfcommon.save_hf(sd, config, os.path.join(a.out, "hf"))
    if "ckpt" in layouts:
        df_config = {  # deepforest.main's config as on_save_checkpoint stores it
            "architecture": "retinanet",
            "num_classes": 1,
            "nms_thresh": a.nms_thresh,
            "score_thresh": a.score_thresh,
            "detections_per_img": a.detections_per_img,
            "topk_candidates": a.topk_candidates,
            "label_dict": {"Tree": 0},
            "model": {"name": None, "revision": "main"},
            "patch_size": 400,
            "patch_overlap": 0.05,
            "batch_size": 1,
        }
        ckpt = {
            "epoch": 0,
            "global_step": 0,
            "pytorch-lightning_version": "2.5.0",
            "state_dict": {"model." + k: v for k, v in sd.items()},
            "hyper_parameters": {"config": df_config},
            "label_dict": {"Tree": 0},
            "numeric_to_label_dict": {0: "Tree"},
            "optimizer_states": [],
            "lr_schedulers": [],
        }
        torch.save(ckpt, os.path.join(a.out, "deepforest.ckpt"))
    if "pt" in layouts:
        torch.save(sd, os.path.join(a.out, "state_dict.pt"))
    with open(os.path.join(a.out, "sizes.json"), "w") as f:
        json.dump({"min_size": a.min_size, "max_size": a.max_size}, f)


if __name__ == "__main__":
    main()
