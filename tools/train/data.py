"""NEON crown data: loading, input statistics, augmentation and CenterNet targets.

All randomness comes from the numpy Generator passed in, so a run is
reproducible from its seed.
"""

import os

import numpy as np
from PIL import Image

import evaluate as ev

STRIDE = 4


def load_images(dirs, names):
    """[(name, HxWx3 uint8, Nx4 float64 boxes [x0, y0, x1, y1) continuous)], in the given order.

    dirs: directories of PNGs with their CSV annotations (the layout of
    tests/data/neon), searched in order for each name."""
    found = {}
    for d in dirs:
        for name, boxes in ev.load_annotations(d).items():
            if name not in found and os.path.exists(os.path.join(d, name)):
                found[name] = (d, boxes)
    out = []
    for n in names:
        if n not in found:
            raise SystemExit("%s: no such annotated image in %s" % (n, ", ".join(dirs)))
        d, anns = found[n]
        img = ev.load_image(os.path.join(d, n))
        boxes = np.array([ev.gt_box(b) for b in anns], dtype=np.float64).reshape(-1, 4)
        out.append((n, img, boxes))
    return out


def input_stats(images):
    """Pixel-weighted mean and std of r, g, b, exg over the images (float32 values)."""
    s = np.zeros(4)
    s2 = np.zeros(4)
    n = 0
    for _, img, _ in images:
        x = ev.preprocess(img, [0, 0, 0, 0], [1, 1, 1, 1]).astype(np.float64)
        s += x.sum(axis=(1, 2))
        s2 += (x * x).sum(axis=(1, 2))
        n += x.shape[1] * x.shape[2]
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 1e-12))
    return [float(np.float32(v)) for v in mean], [float(np.float32(v)) for v in std]


def normalize_rgb(rgb, mean, std):
    """HxWx3 float32 in [0,1] -> 4xHxW normalized (same arithmetic as evaluate.preprocess)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    x = np.stack([r, g, b, np.float32(2.0) * g - r - b], axis=0)
    m = np.asarray(mean, dtype=np.float32).reshape(4, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(4, 1, 1)
    return ((x - m) / s).astype(np.float32)


def site_of(name):
    """NEON site code of an image name: the part before the first '_' (OSBS_029.png -> OSBS)."""
    return os.path.basename(name).split("_")[0]


def sample_weights(images, sample):
    """Probabilities of picking each training image, or None for uniform:
    "image" uniform; "area" in proportion to pixels (a large tile is not
    under-sampled); "site" each site equally, by area within a site (a site
    with a large tile does not crowd out the others)."""
    if sample == "image":
        return None
    area = np.array([img.shape[0] * img.shape[1] for _, img, _ in images], dtype=np.float64)
    if sample == "site":
        sites = [site_of(n) for n, _, _ in images]
        for s in set(sites):
            idx = [i for i, t in enumerate(sites) if t == s]
            area[idx] = area[idx] / area[idx].sum()
    elif sample != "area":
        raise ValueError("sample must be image, area or site")
    return area / area.sum()


class Augmenter:
    """Random crop with scale change, flips, 90-degree rotations, colour/brightness jitter."""

    def __init__(self, images, crop=256, scale=(0.8, 1.25), colour=0.15, brightness=0.2,
                 contrast=0.2, grey=0.2, mix=0.0, sample="image"):
        self.images = images
        self.p = sample_weights(images, sample)
        self.crop = crop
        self.scale = scale
        self.colour = colour
        self.brightness = brightness
        self.contrast = contrast
        self.grey = grey
        self.mix = mix

    def sample(self, rng):
        """One augmented (rgb crop x crop x 3 float32 in [0,1], boxes Nx4 in crop coords)."""
        k = rng.choice(len(self.images), p=self.p) if self.p is not None \
            else rng.integers(len(self.images))
        name, img, boxes = self.images[k]
        h, w = img.shape[:2]
        c = self.crop
        s = float(np.exp(rng.uniform(np.log(self.scale[0]), np.log(self.scale[1]))))
        src = c / s  # source window side in image pixels
        # keep the window inside the image when it fits; otherwise centre it (padding)
        x0 = rng.uniform(0, w - src) if w > src else (w - src) / 2
        y0 = rng.uniform(0, h - src) if h > src else (h - src) / 2
        # affine crop+resize via PIL: output pixel (u, v) <- input (x0 + u/s, y0 + v/s)
        pil = Image.fromarray(img)
        out = pil.transform((c, c), Image.AFFINE, (1 / s, 0, x0, 0, 1 / s, y0),
                            resample=Image.BILINEAR, fillcolor=(0, 0, 0))
        rgb = np.asarray(out, dtype=np.float32) / np.float32(255.0)
        # padded area (only when the window leaves the image): fill with the crop's mean colour
        valid = np.zeros((c, c), dtype=bool)
        u0 = int(np.ceil(max(0.0, -x0) * s))
        u1 = int(np.floor(min(c, (w - x0) * s)))
        v0 = int(np.ceil(max(0.0, -y0) * s))
        v1 = int(np.floor(min(c, (h - y0) * s)))
        valid[v0:v1, u0:u1] = True
        if not valid.all():
            rgb[~valid] = rgb[valid].mean(axis=0)
        b = boxes.copy()
        b[:, [0, 2]] = (b[:, [0, 2]] - x0) * s
        b[:, [1, 3]] = (b[:, [1, 3]] - y0) * s
        # flips and rotations (boxes are [x0, y0, x1, y1) in continuous coordinates)
        if rng.random() < 0.5:  # horizontal flip
            rgb = rgb[:, ::-1]
            b[:, [0, 2]] = c - b[:, [2, 0]]
        if rng.random() < 0.5:  # vertical flip
            rgb = rgb[::-1]
            b[:, [1, 3]] = c - b[:, [3, 1]]
        if rng.random() < 0.5:  # transpose (with the flips: all 8 rotations/reflections)
            rgb = rgb.transpose(1, 0, 2)
            b = b[:, [1, 0, 3, 2]]
        rgb = np.ascontiguousarray(rgb)
        # colour and brightness jitter
        gain = (1.0 + rng.uniform(-self.brightness, self.brightness)) * \
            (1.0 + rng.uniform(-self.colour, self.colour, size=3))
        mu = rgb.mean()
        con = 1.0 + rng.uniform(-self.contrast, self.contrast)
        rgb = ((rgb - mu) * con + mu) * gain.astype(np.float32)
        rgb = rgb + rng.uniform(-0.03, 0.03, size=3).astype(np.float32)
        rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
        if self.mix > 0:  # random colour mixing near identity (hue shifts); off by default
            m = np.eye(3) + rng.normal(0.0, self.mix, (3, 3))
            rgb = np.clip(rgb @ m.T.astype(np.float32), 0.0, 1.0).astype(np.float32)
        if rng.random() < self.grey:  # sometimes colourless: crowns by shape and texture
            rgb = np.repeat(rgb.mean(axis=2, keepdims=True), 3, axis=2)
        return rgb, b


def make_targets(boxes, size, sigma_scale=0.5, min_sigma=0.7):
    """CenterNet targets on the stride-4 grid of a size x size crop.

    heat: gaussian peaks (1.0 at each crown's centre cell); reg: [log r, dx, dy];
    mask: 1 at centre cells. Crowns whose centre lies outside the crop are
    dropped (their gaussian tail too: the network is not told either way
    about them beyond the border).
    """
    g = size // STRIDE
    heat = np.zeros((g, g), dtype=np.float32)
    reg = np.zeros((3, g, g), dtype=np.float32)
    mask = np.zeros((g, g), dtype=np.float32)
    ii, jj = np.mgrid[0:g, 0:g]
    # larger crowns first so smaller ones win a shared centre cell
    order = np.argsort(-((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])))
    for k in order:
        x0, y0, x1, y1 = boxes[k]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if not (0 <= cx < size and 0 <= cy < size):
            continue
        r = ((x1 - x0) / 2 + (y1 - y0) / 2) / 2
        j = int(np.floor(cx / STRIDE))
        i = int(np.floor(cy / STRIDE))
        sig = max(min_sigma, sigma_scale * r / STRIDE)
        gk = np.exp(-((ii - i) ** 2 + (jj - j) ** 2) / (2 * sig * sig)).astype(np.float32)
        np.maximum(heat, gk, out=heat)
        reg[0, i, j] = np.log(max(r, 1.0))
        reg[1, i, j] = cx / STRIDE - 0.5 - j
        reg[2, i, j] = cy / STRIDE - 0.5 - i
        mask[i, j] = 1.0
    return heat, reg, mask
