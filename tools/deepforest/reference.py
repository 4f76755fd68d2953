#!/usr/bin/env python3
"""Reference predictions of a DeepForest RetinaNet (Hugging Face layout) with
torchvision, for canopy's parity tests.

    reference.py --model DIR --out JSON [--threads N] IMAGE...
    reference.py --model DIR --out JSON --tile [--patch-size 400]
                 [--patch-overlap 0.05] [--iou 0.15] IMAGE...

Untiled: DeepForest's predict_image. The image is read as RGB, float32 / 255,
and goes through the model as torchvision's RetinaNet runs it (eval(),
torch.no_grad(), float32); the boxes are torchvision's, not rounded.

--tile: DeepForest's predict_tile (dataloader_strategy "single"), reimplemented
here from DeepForest at commit 1bad4419b3e6f7b4981a367e85acc2dda29cfc7b
(2026-06-29, "point model training support (#1396)"):
src/deepforest/main.py predict_tile, datasets/prediction.py SingleImage
(load_and_preprocess_image), preprocess.py compute_windows ->
slidingwindow.generate (slidingwindow 0.0.14, generateForSize), predict.py
mosaic / translate_predictions / reduce_boxes. The rules are written out in
tools/deepforest/README.md ("Tiling").

For every box the output says whether it is a near-tie: a box whose presence
or absence could flip under float differences far below the comparison's
tolerance (README.md, "Near-ties"). Boxes that were dropped but are near-ties
are listed too ("dropped"), so that a comparison does not count a canopy box
matching one as an extra.

Output JSON: {"mode": "image"|"tile", "config": {...}, "eps": {...},
"images": [{"image", "name", "width", "height", ["windows"],
"boxes": [{"xmin","ymin","xmax","ymax","score","label","near_tie":[why...]}],
"dropped": [{... same, "why": [...]}]}]}; boxes in descending score order,
as DeepForest returns them, at full float32 precision.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import box_iou, nms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dfcommon  # noqa: E402

DEEPFOREST_COMMIT = "1bad4419b3e6f7b4981a367e85acc2dda29cfc7b"

EPS = {
    "score": 1e-4,  # |score - score_thresh|, |score - cut score|, score order
    "iou": 1e-3,    # |IoU - nms threshold|
    "coord": 1e-2,  # tiled: distance of a shifted coordinate to an integer
}


# ---------------------------------------------------------------- untiled --

def _entry(box, score, label, key, why):
    return {"xmin": float(box[0]), "ymin": float(box[1]), "xmax": float(box[2]),
            "ymax": float(box[3]), "score": float(score), "label": int(label), key: why}


def predict_one(model, img):
    """torchvision RetinaNet.forward (eval) on one 3 x H x W float32 image in
    [0, 1], step by step, with near-tie diagnostics.

    Returns (boxes, scores, labels, near_tie lists per box, dropped list), all
    in the coordinates of `img`."""
    orig = (img.shape[-2], img.shape[-1])
    images, _ = model.transform([img])
    feats = list(model.backbone(images.tensors).values())
    head = model.head(feats)
    anchors = model.anchor_generator(images, feats)
    hw = [x.size(2) * x.size(3) for x in feats]
    a = head["cls_logits"].size(1) // sum(hw)
    per_level = [n * a for n in hw]
    split_head = {k: list(head[k].split(per_level, dim=1)) for k in head}
    split_anchors = [list(x.split(per_level)) for x in anchors]
    det = model.postprocess_detections(split_head, split_anchors, images.image_sizes)
    det = model.transform.postprocess(det, images.image_sizes, [orig])[0]

    # The same selection again, keeping what decides it.
    st, nt = model.score_thresh, model.nms_thresh
    k_top, d_max = model.topk_candidates, model.detections_per_img
    isz = images.image_sizes[0]
    cand_b, cand_s, cand_l, cand_why = [], [], [], []
    dropped = []  # (box in transformed coords, score, label, why)
    for reg, logit, anc in zip(split_head["bbox_regression"], split_head["cls_logits"],
                               split_anchors[0]):
        reg, logit = reg[0], logit[0]
        nc = logit.shape[-1]
        s_all = torch.sigmoid(logit).flatten()

        def decode(idx):
            b = model.box_coder.decode_single(reg[idx // nc], anc[idx // nc])
            return torchvision.ops.boxes.clip_boxes_to_image(b, isz)

        below = torch.where((s_all <= st) & (s_all > st - EPS["score"]))[0]
        if len(below):
            for b, s, i in zip(decode(below), s_all[below], below):
                dropped.append((b, s, int(i % nc), ["score_thresh"]))
        keep = torch.where(s_all > st)[0]
        s = s_all[keep]
        order = torch.argsort(s, descending=True, stable=True)
        keep, s = keep[order], s[order]
        why = [[] for _ in range(len(keep))]
        for i in range(len(keep)):
            if s[i] - st <= EPS["score"]:
                why[i].append("score_thresh")
        if len(keep) > k_top:
            # Rank within 1 of the cut, score within eps of the other side's.
            cut, first_out = float(s[k_top - 1]), float(s[k_top])
            for i in (k_top - 2, k_top - 1):
                if i >= 0 and float(s[i]) - first_out <= EPS["score"]:
                    why[i].append("topk_candidates")
            extra = keep[k_top:]
            es = s[k_top:]
            sel = torch.where(cut - es <= EPS["score"])[0][:2]
            if len(sel):
                for b, sc, i in zip(decode(extra[sel]), es[sel], extra[sel]):
                    dropped.append((b, sc, int(i % nc), ["topk_candidates"]))
            keep, s, why = keep[:k_top], s[:k_top], why[:k_top]
        if len(keep):
            cand_b.append(decode(keep))
            cand_s.append(s)
            cand_l.append(keep % nc)
            cand_why.extend(why)
    if cand_b:
        cb, cs, cl = torch.cat(cand_b), torch.cat(cand_s), torch.cat(cand_l)
    else:
        cb, cs, cl = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    kept_idx = torchvision.ops.batched_nms(cb, cs, cl, nt)
    kept_set = set(int(i) for i in kept_idx)
    final = kept_idx[:d_max]

    # NMS near-ties: greedy NMS is decided by the kept boxes only.
    iou = box_iou(cb, cb) if len(cb) else torch.zeros(0, 0)
    kept_list = [int(i) for i in kept_idx]
    rank = {i: r for r, i in enumerate(kept_list)}
    for i in range(len(cb)):
        higher = [j for j in kept_list if j != i and int(cl[j]) == int(cl[i]) and
                  (rank[j] < rank[i] if i in kept_set else float(cs[j]) >= float(cs[i]))]
        if not higher:
            continue
        ious = iou[i, higher]
        m = float(ious.max())
        if i in kept_set:
            if m >= nt - EPS["iou"]:
                cand_why[i].append("nms_iou")
        else:
            why = []
            if m <= nt + EPS["iou"]:
                why.append("nms_iou")
            sup = [higher[t] for t in range(len(higher)) if float(ious[t]) > nt]
            if any(float(cs[j]) - float(cs[i]) <= EPS["score"] for j in sup):
                why.append("nms_score_order")
                for j in sup:
                    if float(cs[j]) - float(cs[i]) <= EPS["score"]:
                        cand_why[j].append("nms_score_order")
            if why:
                dropped.append((cb[i], cs[i], int(cl[i]), why))
    # A box another near-tie would suppress if it were there.
    for b, s, lab, why in list(dropped):
        for i in kept_list:
            if int(cl[i]) == lab and float(s) >= float(cs[i]) - EPS["score"]:
                if float(box_iou(b.view(1, 4), cb[i].view(1, 4))[0, 0]) > nt - EPS["iou"]:
                    if "suppressed_by_near_tie" not in cand_why[i]:
                        cand_why[i].append("suppressed_by_near_tie")
    # detections_per_img cut.
    if len(kept_list) > d_max:
        cut = float(cs[kept_list[d_max - 1]])
        for r, i in enumerate(kept_list):
            if abs(r - (d_max - 1)) <= 1 and abs(float(cs[i]) - cut) <= EPS["score"]:
                if r < d_max:
                    cand_why[i].append("detections_per_img")
                else:
                    dropped.append((cb[i], cs[i], int(cl[i]), ["detections_per_img"]))

    fb = cb[final] if len(final) else torch.zeros(0, 4)
    # Check: the same boxes as torchvision's own postprocess.
    mine = resize_boxes(fb, isz, orig)
    if not (torch.equal(mine, det["boxes"]) and torch.equal(cs[final], det["scores"])):
        raise RuntimeError("reference.py: the diagnostic pass disagrees with torchvision's "
                           "postprocess_detections (torchvision version?)")
    whys = [cand_why[int(i)] for i in final]
    drop_out = []
    for b, s, lab, why in dropped:
        ob = resize_boxes(b.view(1, 4), isz, orig)[0]
        drop_out.append((ob, float(s), lab, why))
    return det["boxes"], det["scores"], det["labels"], whys, drop_out


def read_image(path):
    """predict_image: RGB, float32, / 255, channels first."""
    a = np.array(Image.open(path).convert("RGB")).astype("float32")
    return torch.tensor(a).permute(2, 0, 1) / 255


def predict_image(model, path):
    img = read_image(path)
    boxes, scores, labels, whys, dropped = predict_one(model, img)
    return {
        "image": path, "name": os.path.basename(path),
        "width": int(img.shape[2]), "height": int(img.shape[1]),
        "boxes": [_entry(b, s, l, "near_tie", w) for b, s, l, w in
                  zip(boxes, scores, labels, whys)],
        "dropped": [_entry(b, s, l, "why", w) for b, s, l, w in dropped],
    }


# ------------------------------------------------------------------ tiled --

def read_image_tile(path):
    """SingleImage.load_and_preprocess_image: float32, / 255.0 only when the
    image has a value above 1 or below 0, channels first."""
    a = np.array(Image.open(path).convert("RGB")).astype("float32")
    if a.max() > 1 or a.min() < 0:
        a = a / 255.0
    return torch.from_numpy(np.rollaxis(a, 2, 0).copy())


def _near_int(v):
    return abs(v - round(v)) <= EPS["coord"]


def predict_tile(model, path, patch_size, patch_overlap, iou_threshold):
    img = read_image_tile(path)
    h, w = int(img.shape[1]), int(img.shape[2])
    windows = dfcommon.compute_windows(w, h, patch_size, patch_overlap)
    rows = []  # (int box, score, label, why, present): present False = dropped near-tie
    for (x, y, ww, wh) in windows:
        crop = img[:, y:y + wh, x:x + ww]
        boxes, scores, labels, whys, dropped = predict_one(model, crop)
        for b, s, l, why, present in (
                [(b, s, l, wy, True) for b, s, l, wy in zip(boxes, scores, labels, whys)] +
                [(b, s, l, wy, False) for b, s, l, wy in dropped]):
            # translate_predictions: shapely translate (float64) then
            # bounds.astype(int), i.e. truncation toward zero.
            f = [float(b[0]) + x, float(b[1]) + y, float(b[2]) + x, float(b[3]) + y]
            ib = [int(v) for v in f]
            why = list(why)
            # A coordinate clipped to the window's edge is exact in any
            # implementation; one near an integer by chance may truncate to
            # its neighbour (compare those within 1 px).
            lo, hi = (x, y, x, y), (x + ww, y + wh, x + ww, y + wh)
            if any(_near_int(v) for v, l0, h0 in zip(f, lo, hi) if v != l0 and v != h0):
                why.append("truncation")
            rows.append((ib, float(s), int(l), why, present))
    present = [r for r in rows if r[4]]
    out_boxes, out_drop = [], []
    if len(present) <= 1:
        keep = list(range(len(present)))
    else:
        bt = torch.tensor([r[0] for r in present], dtype=torch.float32)
        st = torch.tensor([r[1] for r in present], dtype=torch.float32)
        keep = [int(i) for i in nms(bt, st, iou_threshold)]
    keep_set = set(keep)
    uncertain = [r for r in rows if not r[4]] + \
        [r for r in present if [w for w in r[3] if w != "truncation"]]
    allb = torch.tensor([r[0] for r in present], dtype=torch.float32).view(-1, 4)
    iou = box_iou(allb, allb) if len(present) else torch.zeros(0, 0)
    rank = {i: n for n, i in enumerate(keep)}
    for i, r in enumerate(present):
        higher = [j for j in keep if j != i and
                  (rank[j] < rank[i] if i in keep_set else present[j][1] >= r[1])]
        m = float(iou[i, higher].max()) if higher else 0.0
        why = list(r[3])
        if i in keep_set:
            if higher and m >= iou_threshold - EPS["iou"]:
                why.append("mosaic_iou")
            for u in uncertain:
                if u is r or u[1] < r[1] - EPS["score"]:
                    continue
                ui = float(box_iou(torch.tensor([u[0]], dtype=torch.float32),
                                   torch.tensor([r[0]], dtype=torch.float32))[0, 0])
                if ui > iou_threshold - EPS["iou"] and "suppressed_by_near_tie" not in why:
                    why.append("suppressed_by_near_tie")
        else:
            sup = [j for j in higher if float(iou[i, j]) > iou_threshold]
            if m <= iou_threshold + EPS["iou"]:
                why.append("mosaic_iou")
            if any(present[j][1] - r[1] <= EPS["score"] for j in sup):
                why.append("mosaic_score_order")
            if any(present[j] in uncertain for j in sup):
                why.append("suppressor_near_tie")
            if [w for w in why if w != "truncation"]:
                out_drop.append(_entry(r[0], r[1], r[2], "why", why))
            continue
        out_boxes.append((rank[i], _entry(r[0], r[1], r[2], "near_tie", why)))
    out_boxes.sort(key=lambda t: t[0])
    for r in rows:
        if not r[4]:
            out_drop.append(_entry(r[0], r[1], r[2], "why", r[3]))
    return {
        "image": path, "name": os.path.basename(path), "width": w, "height": h,
        "windows": [list(x) for x in windows],
        "boxes": [e for _, e in out_boxes],
        "dropped": out_drop,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="Hugging Face layout directory")
    ap.add_argument("--out", required=True, help="output JSON file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tile", action="store_true", help="DeepForest's predict_tile")
    ap.add_argument("--patch-size", type=int, default=400)
    ap.add_argument("--patch-overlap", type=float, default=0.05)
    ap.add_argument("--iou", type=float, default=0.15,
                    help="predict_tile's iou_threshold (cross-window NMS)")
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, config = dfcommon.load_model(a.model)
    results = []
    with torch.no_grad():
        for p in a.images:
            if not os.path.isfile(p):
                dfcommon.die(f"{p}: no such image")
            if a.tile:
                results.append(predict_tile(model, p, a.patch_size, a.patch_overlap, a.iou))
            else:
                results.append(predict_image(model, p))
    doc = {
        "tool": "tools/deepforest/reference.py",
        "deepforest_commit": DEEPFOREST_COMMIT,
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "model": a.model, "config": config, "mode": "tile" if a.tile else "image",
        "eps": EPS,
        "images": results,
    }
    if a.tile:
        doc["tile"] = {"patch_size": a.patch_size, "patch_overlap": a.patch_overlap,
                       "iou": a.iou, "nms": "class-agnostic"}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
