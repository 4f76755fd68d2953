#!/usr/bin/env python3
"""PyTorch side of bench/retina.sh: the same RetinaNet (a Hugging Face layout
directory: model.safetensors + config.json, DeepForest's publication) in
torchvision, on the same images as bench_retina, timed the same way.

  retina_torch.py --model DIR [--device cpu|cuda] [--threads N] [--repeats N]
                  [--tiled PNG --patch-size N --patch-overlap F --patch-iou F]
                  [--large-min-size N --large-max-size N] [--tf32 on|off] --json FILE IMAGE.png...

Whole images: model([image]) per image (torchvision's transform included),
one warm-up run per image, median of --repeats. Tiled: DeepForest's
predict_tile (slidingwindow windows, model([crop]) per window, boxes
translated and truncated, torchvision nms over all), median of --repeats
without warm-up. Large: one model([image]) at another min_size / max_size.
model.eval() and torch.no_grad() throughout; on the CPU
torch.set_num_threads(--threads). Peak memory: torch.cuda.max_memory_allocated
on CUDA, the process's peak resident set on the CPU (weights included).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tools", "deepforest"))
import dfcommon  # noqa: E402


def die(msg):
    print(f"retina_torch.py: {msg}", file=sys.stderr)
    sys.exit(1)


def load_model(modeldir, device):
    """The model of the Hugging Face layout, as tools/deepforest builds it for
    the parity tests (DeepForest's RetinaNetHub without huggingface_hub)."""
    return dfcommon.load_model(modeldir)[0].to(device)


def read_image(path, device):
    """predict_image's input: RGB float32 / 255, channels first."""
    import numpy as np
    import torch
    from PIL import Image

    a = np.array(Image.open(path).convert("RGB")).astype("float32")
    return torch.from_numpy(a).permute(2, 0, 1).contiguous().div(255).to(device)


def sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def predict_tile(model, img, patch_size, overlap, iou):
    import torch
    from torchvision.ops import nms

    h, w = int(img.shape[1]), int(img.shape[2])
    boxes, scores = [], []
    for (x, y, ww, wh) in dfcommon.compute_windows(w, h, patch_size, overlap):
        r = model([img[:, y:y + wh, x:x + ww]])[0]
        b = r["boxes"] + torch.tensor([x, y, x, y], dtype=r["boxes"].dtype, device=img.device)
        boxes.append(b.trunc())
        scores.append(r["scores"])
    b, s = torch.cat(boxes), torch.cat(scores)
    return int(nms(b, s, iou).numel()) if b.numel() else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiled")
    ap.add_argument("--patch-size", type=int, default=400)
    ap.add_argument("--patch-overlap", type=float, default=0.05)
    ap.add_argument("--patch-iou", type=float, default=0.15)
    ap.add_argument("--large-min-size", type=int, default=0)
    ap.add_argument("--large-max-size", type=int, default=0)
    ap.add_argument("--json", required=True)
    ap.add_argument("--tiled-only", action="store_true",
                    help="only the tiled image's patches (bench/retina.sh --full)")
    ap.add_argument("--tf32", choices=["default", "on", "off"], default="default",
                    help="CUDA: TF32 for matmuls and cuDNN convolutions (off: plain FP32; "
                    "default: PyTorch's own, TF32 convolutions, FP32 matmuls)")
    ap.add_argument("images", nargs="*")
    a = ap.parse_args()

    import torch
    import torchvision

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        die(f"--device {a.device}: no CUDA device")
    if a.tf32 != "default":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = a.tf32 == "on"
    torch.set_num_threads(a.threads)
    model = load_model(a.model, a.device)
    out = {
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "device": torch.cuda.get_device_name(0) if a.device.startswith("cuda")
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "repeats": a.repeats,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    print(f"retina_torch: torch {torch.__version__}, {a.device}, {torch.get_num_threads()} "
          f"threads, {a.repeats} repeats")
    with torch.no_grad():
        rows, total_s, total_mpix = [], 0.0, 0.0
        for path in ([] if a.tiled_only else a.images):
            img = read_image(path, a.device)
            timed(lambda: model([img]), a.device)  # warm-up
            ts, n = [], 0
            for _ in range(a.repeats):
                t, r = timed(lambda: model([img]), a.device)
                ts.append(t)
                n = int(r[0]["boxes"].shape[0])
            s = statistics.median(ts)
            mpix = img.shape[1] * img.shape[2] / 1e6
            rows.append({"name": os.path.basename(path), "width": int(img.shape[2]),
                         "height": int(img.shape[1]), "seconds": s, "mpix_per_s": mpix / s,
                         "boxes": n})
            total_s += s
            total_mpix += mpix
            print(f"  {os.path.basename(path):24s} {s:8.3f} s/image {mpix / s:8.3f} MPix/s "
                  f"{n:5d} boxes")
        if rows:
            out["whole"] = {"images": rows, "images_per_s": len(rows) / total_s,
                            "mpix_per_s": total_mpix / total_s}
        if a.tiled:
            img = read_image(a.tiled, a.device)
            ts, n = [], 0
            for _ in range(a.repeats):
                t, n = timed(lambda: predict_tile(model, img, a.patch_size, a.patch_overlap,
                                                  a.patch_iou), a.device)
                ts.append(t)
            s = statistics.median(ts)
            mpix = img.shape[1] * img.shape[2] / 1e6
            np_ = len(dfcommon.compute_windows(int(img.shape[2]), int(img.shape[1]), a.patch_size,
                              a.patch_overlap))
            out["tiled"] = {"name": os.path.basename(a.tiled), "width": int(img.shape[2]),
                            "height": int(img.shape[1]), "patches": np_, "seconds": s,
                            "images_per_s": 1 / s, "mpix_per_s": mpix / s, "boxes": n}
            print(f"  tiled {os.path.basename(a.tiled)} ({np_} patches): {s:.3f} s/image, "
                  f"{mpix / s:.3f} MPix/s, {n} boxes")
        if a.large_min_size > 0:
            model.transform.min_size = (a.large_min_size,)
            model.transform.max_size = a.large_max_size
            img = read_image(a.images[0], a.device)
            t, r = timed(lambda: model([img]), a.device)
            mpix = img.shape[1] * img.shape[2] / 1e6
            out["large"] = {"name": os.path.basename(a.images[0]), "min_size": a.large_min_size,
                            "max_size": a.large_max_size, "seconds": t, "mpix_per_s": mpix / t,
                            "boxes": int(r[0]["boxes"].shape[0])}
            print(f"  min_size {a.large_min_size}: {t:.3f} s/image (one run)")
    if a.device.startswith("cuda"):
        out["peak_device_bytes"] = torch.cuda.max_memory_allocated()
    else:
        out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
