"""Train the canopy crown detector on annotated NEON images and export a .cnw.

    python train.py --extra extra --sample image --steps 6000 \
        --train OSBS_029.png SOAP_061.png YELL_541000_west.png YELL_541000_east.png \
                YELL_528000_top.png --holdout YELL_528000_bottom.png \
        --out ../../models/crown-1.1.cnw --version crown-1.1

(extra/ from extra_yell.py; README.md lists the command of every committed model.)

Seeded and reproducible on the same machine and thread count (numpy
Generator for all augmentation, torch.manual_seed, deterministic
algorithms, --threads 1 by default). The score threshold is tuned on the
training images only (best overall F1 on them) and stored in the .cnw as the
extra tensor meta.score_threshold. --holdout images are evaluated at the end
for reporting and never influence training or the threshold.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402
import evaluate as ev  # noqa: E402
from export import write_cnw, read_cnw, required_tensors  # noqa: E402
from model import CrownNet, crown_arch, receptive_field  # noqa: E402

THRESHOLDS = [round(0.05 * k, 2) for k in range(2, 19)]  # 0.10 .. 0.90


def focal_loss(logits, heat):
    """CenterNet focal loss (alpha 2, beta 4), summed and divided by the number of centres."""
    pos = (heat >= 1.0).float()
    neg = 1.0 - pos
    logp = torch.nn.functional.logsigmoid(logits)
    log1mp = torch.nn.functional.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_loss = (logp * (1 - p) ** 2 * pos).sum()
    neg_loss = (log1mp * p ** 2 * (1 - heat) ** 4 * neg).sum()
    npos = pos.sum().clamp(min=1.0)
    return -(pos_loss + neg_loss) / npos


def make_batch(aug, rng, batch, mean, std, sigma_scale):
    xs, hs, rs, ms = [], [], [], []
    for _ in range(batch):
        rgb, boxes = aug.sample(rng)
        heat, reg, mask = data.make_targets(boxes, aug.crop, sigma_scale=sigma_scale)
        xs.append(data.normalize_rgb(rgb, mean, std))
        hs.append(heat)
        rs.append(reg)
        ms.append(mask)
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(hs)),
            torch.from_numpy(np.stack(rs)), torch.from_numpy(np.stack(ms)))


def torch_outputs(net, arch, images):
    """Raw 4 x h x w outputs of the full (untiled) images."""
    outs = {}
    net.eval()
    with torch.no_grad():
        for name, img, _ in images:
            x = ev.preprocess(img, arch["input"]["mean"], arch["input"]["std"])
            outs[name] = net(torch.from_numpy(x)[None])[0].numpy()
    net.train()
    return outs


def eval_images(arch, images_raw, outs, thr):
    # data.load_images holds continuous boxes; evaluate wants the CSV's inclusive indices
    imgs = [(n, img, [(b[0], b[1], b[2] - 1, b[3] - 1) for b in boxes.tolist()])
            for n, img, boxes in images_raw]
    # Without NMS, as crown-1.0 and crown-1.1 were tuned (their documented
    # commands still rebuild them byte for byte); inference then applies NMS
    # (evaluate.NMS_IOU_DEFAULT), which tools/train/README.md measures.
    return ev.evaluate(arch, None, imgs, thr, outputs=outs, nms_iou=1.0)


def tune_threshold(arch, images_raw, outs):
    best = None
    for thr in THRESHOLDS:
        _, overall = eval_images(arch, images_raw, outs, thr)
        if best is None or overall["f1"] > best[1] + 1e-12:
            best = (thr, overall["f1"])
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--neon", default=os.environ.get("CANOPY_NEON_DIR", "../../tests/data/neon"))
    ap.add_argument("--extra", action="append", default=[],
                    help="another directory of annotated images (extra_yell.py's output); repeatable")
    ap.add_argument("--train", nargs="+", required=True, help="training image basenames")
    ap.add_argument("--holdout", nargs="*", default=[], help="images only reported at the end")
    ap.add_argument("--out", required=True, help="output .cnw")
    ap.add_argument("--version", default="crown-dev", help="model_version stored with results")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--sigma-scale", type=float, default=0.5)
    ap.add_argument("--width", type=int, default=32, help="channels of the quarter-resolution layers")
    ap.add_argument("--grey", type=float, default=0.2, help="probability of a grey crop")
    ap.add_argument("--mix", type=float, default=0.0, help="std of random colour mixing (0: off)")
    ap.add_argument("--sample", choices=["image", "area", "site"], default="image",
                    help="pick training images uniformly, by pixels, or each site equally "
                         "(the name's prefix before '_') and by pixels within it")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=100)
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(a.seed)

    dirs = [a.neon] + a.extra
    train_imgs = data.load_images(dirs, a.train)
    hold_imgs = data.load_images(dirs, a.holdout) if a.holdout else []
    mean, std = data.input_stats(train_imgs)
    arch = crown_arch(a.version, mean, std, a.width)
    net = CrownNet(arch)
    nparams = sum(p.numel() for p in net.parameters())
    print("train %s holdout %s | params %d | receptive field %d px | mean %s std %s"
          % (a.train, a.holdout, nparams, receptive_field(arch["layers"]),
             np.round(mean, 4).tolist(), np.round(std, 4).tolist()), flush=True)

    aug = data.Augmenter(train_imgs, crop=a.crop, grey=a.grey, mix=a.mix,
                         sample=a.sample)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=a.wd)
    warm = max(1, a.steps // 20)

    def lr_at(step):
        if step < warm:
            return a.lr * (step + 1) / warm
        t = (step - warm) / max(1, a.steps - warm)
        return a.lr * 0.5 * (1 + np.cos(np.pi * t))

    t0 = time.time()
    run = np.zeros(3)
    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, heat, reg, mask = make_batch(aug, rng, a.batch, mean, std, a.sigma_scale)
        out = net(x)
        lh = focal_loss(out[:, 0], heat)
        npos = mask.sum().clamp(min=1.0)
        lr_ = (torch.abs(out[:, 1] - reg[:, 0]) * mask).sum() / npos
        lo = ((torch.abs(out[:, 2] - reg[:, 1]) + torch.abs(out[:, 3] - reg[:, 2])) * mask).sum() / npos
        loss = lh + lr_ + lo
        opt.zero_grad()
        loss.backward()
        opt.step()
        run += [lh.item(), lr_.item(), lo.item()]
        if (step + 1) % a.log_every == 0:
            run /= a.log_every
            print("step %5d  heat %.4f  logr %.4f  off %.4f  lr %.2e  %.0fs"
                  % (step + 1, run[0], run[1], run[2], lr_at(step), time.time() - t0), flush=True)
            run[:] = 0
    train_time = time.time() - t0

    outs = torch_outputs(net, arch, train_imgs)
    thr, f1 = tune_threshold(arch, train_imgs, outs)
    print("threshold %.2f (train F1 %.3f); trained in %.0fs" % (thr, f1, train_time), flush=True)

    state = net.export_state()
    tensors = [(n, state[n].numpy().astype(np.float32)) for n, _ in required_tensors(arch)]
    tensors.append(("meta.score_threshold", np.array([thr], dtype=np.float32)))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    write_cnw(a.out, arch, tensors)
    arch2, t2 = read_cnw(a.out)  # round trip
    for n, t in tensors:
        assert np.array_equal(t2[n], t), n
    # the exported (batch-norm folded) weights in the numpy reference = torch eval mode
    n0, img0, _ = train_imgs[0]
    ref = ev.forward(arch2, t2, ev.preprocess(img0, mean, std))
    diff = float(np.max(np.abs(ref - outs[n0])))
    print("numpy reference vs torch on %s: max |diff| %.2e" % (n0, diff))
    assert diff < 1e-2, diff
    print("wrote %s" % a.out)

    rows, overall = eval_images(arch, train_imgs, outs, thr)
    print("training images (torch forward):")
    print(ev.format_table(rows, overall, thr, 1.0))
    if hold_imgs:
        houts = torch_outputs(net, arch, hold_imgs)
        rows, overall = eval_images(arch, hold_imgs, houts, thr)
        print("held-out images (torch forward):")
        print(ev.format_table(rows, overall, thr, 1.0))
    print(json.dumps({"args": vars(a), "threshold": thr, "train_seconds": round(train_time)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
