"""Pure-numpy reference of the canopy detector: forward pass, peak decode, evaluation.

This is the independent implementation the C engine (`canopy eval`) is held
to. It reads a .cnw back (export.read_cnw verifies magic, version, CRC and
shapes), runs the network exactly as models/FORMAT.md describes, decodes
peaks with the 3x3 rule, suppresses overlapping crowns (greedy NMS, as
src/detect/eval/nms.c) and matches predictions to annotations.

NMS (the C side implements the same, in float32 with the same operations):
crowns in the order score descending, then box y0, x0, y1, x1 ascending;
each is kept unless a kept crown's box (centre +- radius) overlaps its box
by IoU > nms_iou. nms_iou: --nms-iou, else the architecture's "nms_iou",
else 0.3 (NMS_IOU_DEFAULT, = DET_NMS_IOU_DEFAULT in include/canopy/detect.h);
1 turns NMS off.

Evaluation rules (the C side implements the same):
- annotation box: the CSV's xmin..xmax, ymin..ymax are inclusive pixel
  indices, so the box is [xmin, xmax+1) x [ymin, ymax+1) in continuous pixel
  coordinates (origin top-left corner); every label counts as a tree.
- prediction box: [x - r, x + r] x [y - r, y + r] (centre and radius from
  the decode).
- IoU = intersection area / union area (float64).
- matching: predictions sorted by score descending (ties: row-major cell
  order); each takes the still-unmatched annotation with the highest IoU
  (ties: the earlier CSV row), and is a true positive if that IoU >= 0.4.
- precision = TP / predictions (1 when there are none), recall = TP /
  annotations (1 when there are none), F1 = 2 P R / (P + R) (0 when both
  are 0), count error = predictions - annotations.
  "overall" sums TP, predictions and annotations over the images.

Command line:
    python evaluate.py MODEL.cnw --images DIR --annotations DIR
        [--only NAME.png ...] [--threshold T] [--nms-iou X] [--json]
"""

import argparse
import csv
import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import read_cnw  # noqa: E402

IOU_THRESHOLD = 0.4
DEFAULT_THRESHOLD = 0.3
NMS_IOU_DEFAULT = 0.3


def load_image(path):
    """PNG -> HxWx3 uint8 (alpha, if any, dropped)."""
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def preprocess(img, mean, std):
    """HxWx3 uint8 -> 4xHxW float32 normalized r, g, b, exg (FORMAT.md)."""
    rgb = img.astype(np.float32) / np.float32(255.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    exg = np.float32(2.0) * g - r - b
    x = np.stack([r, g, b, exg], axis=0)
    m = np.asarray(mean, dtype=np.float32).reshape(4, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(4, 1, 1)
    return ((x - m) / s).astype(np.float32)


def conv2d(x, w, b, dilation, dtype=np.float32):
    """'same' convolution (cross-correlation, as PyTorch), stride 1.

    x: CxHxW, w: OxCxKxK, b: O. Zero padding dilation*(K-1)/2 on each side.
    """
    c, h, wd = x.shape
    o, ci, k, k2 = w.shape
    assert ci == c and k == k2 and k % 2 == 1
    p = dilation * (k - 1) // 2
    xp = np.zeros((c, h + 2 * p, wd + 2 * p), dtype=dtype)
    xp[:, p:p + h, p:p + wd] = x
    out = np.zeros((o, h * wd), dtype=dtype)
    w = w.astype(dtype)
    for ky in range(k):
        for kx in range(k):
            sl = xp[:, ky * dilation:ky * dilation + h, kx * dilation:kx * dilation + wd]
            out += w[:, :, ky, kx] @ sl.reshape(c, h * wd)
    out += b.astype(dtype).reshape(o, 1)
    return out.reshape(o, h, wd)


def maxpool2(x):
    """2x2 max pool, stride 2, odd trailing row/column dropped."""
    c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    x = x[:, :2 * h2, :2 * w2].reshape(c, h2, 2, w2, 2)
    return x.max(axis=(2, 4))


def forward(arch, tensors, x, dtype=np.float32):
    """Run the network on a 4xHxW normalized input; returns 4 x H/S x W/S raw outputs."""
    x = x.astype(dtype)
    for layer in arch["layers"]:
        if layer["type"] == "conv":
            x = conv2d(x, tensors[layer["name"] + ".weight"],
                       tensors[layer["name"] + ".bias"], layer["dilation"], dtype)
            if layer["act"] == "relu":
                x = np.maximum(x, 0)
        elif layer["type"] == "maxpool":
            x = maxpool2(x)
        else:
            raise ValueError("unknown layer type %r" % layer["type"])
    return x


def sigmoid32(h):
    h = np.asarray(h, dtype=np.float32)
    return (np.float32(1.0) / (np.float32(1.0) + np.exp(-h))).astype(np.float32)


def peak_mask(score):
    """3x3 peak rule of FORMAT.md: > every earlier neighbour (row-major), >= every later one."""
    hh, ww = score.shape
    p = np.full((hh + 2, ww + 2), -np.inf, dtype=np.float64)
    p[1:-1, 1:-1] = score
    mask = np.ones(score.shape, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == 0 and dj == 0:
                continue
            nb = p[1 + di:1 + di + hh, 1 + dj:1 + dj + ww]
            earlier = di < 0 or (di == 0 and dj < 0)
            mask &= (score > nb) if earlier else (score >= nb)
    return mask


def decode(out, stride, threshold):
    """Raw 4xhxw output -> list of trees (dicts), score descending, ties row-major."""
    score = sigmoid32(out[0])
    mask = peak_mask(score) & (score >= np.float32(threshold))
    ii, jj = np.nonzero(mask)  # row-major order
    trees = []
    for i, j in zip(ii.tolist(), jj.tolist()):
        dx = float(out[2, i, j])
        dy = float(out[3, i, j])
        trees.append({
            "x": (j + 0.5 + dx) * stride,
            "y": (i + 0.5 + dy) * stride,
            "radius": float(np.exp(np.float32(out[1, i, j]))),
            "score": float(score[i, j]),
            "cell": [i, j],
        })
    # stable sort keeps row-major order among equal scores
    trees.sort(key=lambda t: -t["score"])
    return trees


def nms_overlaps(a, b, iou):
    """IoU(a, b) > iou, in float32 with one rounding per operation in the order
    of det_nms_overlaps (src/detect/eval/nms.c) and the kernel's nms_overlaps."""
    f = np.float32
    iw = f(min(a[2], b[2])) - f(max(a[0], b[0]))
    ih = f(min(a[3], b[3])) - f(max(a[1], b[1]))
    if not (iw > 0 and ih > 0):
        return False
    inter = f(iw * ih)
    area_a = f(f(a[2] - a[0]) * f(a[3] - a[1]))
    area_b = f(f(b[2] - b[0]) * f(b[3] - b[1]))
    uni = f(f(area_a + area_b) - inter)
    return bool(inter > f(f(iou) * uni))


def crown_box32(t):
    """A crown's box in float32, as the C decode stores x, y, r."""
    f = np.float32
    x, y, r = f(t["x"]), f(t["y"]), f(t["radius"])
    return (f(x - r), f(y - r), f(x + r), f(y + r))


def nms(trees, iou):
    """Greedy NMS of crowns (dicts), returned score-descending."""
    if iou >= 1.0 or len(trees) < 2:
        return list(trees)
    boxes = [crown_box32(t) for t in trees]
    order = sorted(range(len(trees)), key=lambda i: (-np.float32(trees[i]["score"]),
                                                     boxes[i][1], boxes[i][0],
                                                     boxes[i][3], boxes[i][2], i))
    kept = []
    for i in order:
        if not any(nms_overlaps(boxes[k], boxes[i], iou) for k in kept):
            kept.append(i)
    return [trees[i] for i in kept]


def model_nms_iou(arch):
    return float(arch.get("nms_iou", NMS_IOU_DEFAULT))


def detect(arch, tensors, img, threshold, dtype=np.float32):
    x = preprocess(img, arch["input"]["mean"], arch["input"]["std"])
    out = forward(arch, tensors, x, dtype)
    return decode(out, arch["stride"], threshold), out


def load_annotations(ann_dir):
    """{image basename: [(xmin, ymin, xmax, ymax) inclusive pixel indices, ...]} in CSV order."""
    anns = {}
    for path in sorted(glob.glob(os.path.join(ann_dir, "*.csv"))):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                name = os.path.basename(row["image_path"])
                anns.setdefault(name, []).append(
                    (int(float(row["xmin"])), int(float(row["ymin"])),
                     int(float(row["xmax"])), int(float(row["ymax"]))))
    return anns


def gt_box(b):
    xmin, ymin, xmax, ymax = b
    return (float(xmin), float(ymin), float(xmax) + 1.0, float(ymax) + 1.0)


def pred_box(t):
    return (t["x"] - t["radius"], t["y"] - t["radius"],
            t["x"] + t["radius"], t["y"] + t["radius"])


def iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def match(trees, boxes, iou_threshold=IOU_THRESHOLD):
    """Greedy one-to-one matching; trees must be score-descending. Returns TP count."""
    gts = [gt_box(b) for b in boxes]
    used = [False] * len(gts)
    tp = 0
    for t in trees:
        pb = pred_box(t)
        best, best_iou = -1, -1.0
        for k, g in enumerate(gts):
            if used[k]:
                continue
            v = iou(pb, g)
            if v > best_iou:
                best, best_iou = k, v
        if best >= 0 and best_iou >= iou_threshold:
            used[best] = True
            tp += 1
    return tp


def scores(tp, n_pred, n_gt):
    # empty prediction (annotation) list: precision (recall) 1.0, as in src/detect/eval/eval.c
    p = tp / n_pred if n_pred else 1.0
    r = tp / n_gt if n_gt else 1.0
    f1 = 2.0 * p * r / (p + r) if (p + r) > 0 else 0.0
    return {"tp": tp, "predictions": n_pred, "annotations": n_gt,
            "precision": p, "recall": r, "f1": f1, "count_error": n_pred - n_gt}


def evaluate(arch, tensors, images, threshold, outputs=None, nms_iou=None):
    """images: list of (name, uint8 image, boxes). Returns (per-image rows, overall).
    nms_iou None: the model's (model_nms_iou); >= 1: no NMS."""
    if nms_iou is None:
        nms_iou = model_nms_iou(arch)
    rows = []
    tot = [0, 0, 0]
    for name, img, boxes in images:
        out = outputs[name] if outputs is not None else None
        if out is None:
            trees, _ = detect(arch, tensors, img, threshold)
        else:
            trees = decode(out, arch["stride"], threshold)
        trees = nms(trees, nms_iou)
        tp = match(trees, boxes)
        row = scores(tp, len(trees), len(boxes))
        row["image"] = name
        rows.append(row)
        tot[0] += tp
        tot[1] += len(trees)
        tot[2] += len(boxes)
    overall = scores(*tot)
    overall["image"] = "overall"
    return rows, overall


def format_table(rows, overall, threshold, nms_iou):
    lines = ["| image | annotations | predictions | TP | precision | recall | F1 | count error |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows + [overall]:
        lines.append("| %s | %d | %d | %d | %.3f | %.3f | %.3f | %+d |"
                     % (r["image"], r["annotations"], r["predictions"], r["tp"],
                        r["precision"], r["recall"], r["f1"], r["count_error"]))
    lines.append("(score threshold %.2f, NMS IoU %.2f, match IoU >= %.1f)"
                 % (threshold, nms_iou, IOU_THRESHOLD))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help=".cnw weights file")
    ap.add_argument("--images", required=True, help="directory of PNGs")
    ap.add_argument("--annotations", required=True, help="directory of CSVs")
    ap.add_argument("--only", nargs="*", help="image basenames to evaluate (default: all annotated)")
    ap.add_argument("--threshold", type=float, help="score threshold (default: the model's "
                    "meta.score_threshold tensor if present, else %.2f)" % DEFAULT_THRESHOLD)
    ap.add_argument("--nms-iou", type=float, help="NMS IoU (default: the architecture's "
                    "nms_iou if present, else %.2f; 1 turns NMS off)" % NMS_IOU_DEFAULT)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    arch, tensors = read_cnw(a.model)
    thr = a.threshold
    if thr is None:
        meta = tensors.get("meta.score_threshold")
        thr = float(meta.reshape(-1)[0]) if meta is not None else DEFAULT_THRESHOLD
    anns = load_annotations(a.annotations)
    names = a.only if a.only else sorted(anns)
    images = [(n, load_image(os.path.join(a.images, n)), anns.get(n, [])) for n in names]
    nms_iou = a.nms_iou if a.nms_iou is not None else model_nms_iou(arch)
    rows, overall = evaluate(arch, tensors, images, thr, nms_iou=nms_iou)
    if a.json:
        print(json.dumps({"model": arch["version"], "threshold": thr, "nms_iou": nms_iou,
                          "iou": IOU_THRESHOLD, "images": rows, "overall": overall}, indent=1))
    else:
        print("model %s (%s)" % (a.model, arch["version"]))
        print(format_table(rows, overall, thr, nms_iou))
    return 0


if __name__ == "__main__":
    sys.exit(main())
