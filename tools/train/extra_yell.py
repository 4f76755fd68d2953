"""More annotated Yellowstone (YELL) imagery for evaluation: the two YELL tiles
that DeepForest ships in its PyPI wheel (MIT licence; NEON imagery, CC0).

    python extra_yell.py --out DIR [--wheel deepforest-2.1.0-py3-none-any.whl]

Without --wheel, `pip download deepforest==2.1.0 --no-deps` fetches the wheel
(20 MB; PyPI only). Writes, in the layout of tests/data/neon (PNG + CSV
with image_path,xmin,ymin,xmax,ymax,label; maxima inclusive):

- YELL_528000_crop2.png: DeepForest's 2019_YELL_2_528000_4978000_image_crop2
  (2299 x 2472, 574 crowns), a tile no canopy model was trained on;
- YELL_528000_top.png / YELL_528000_bottom.png: its upper and lower halves
  (rows 0-1235 and 1236-2471; a box goes to the half holding its centre,
  clipped to it), so that a model can train on one and be measured on the
  other;
- YELL_541000_east.png: the part of 2019_YELL_2_541000_4977000_image_crop
  east of x = 700, i.e. the rest of the tile whose western 700 px are
  tests/data/neon/YELL_541000_west.png. A box is kept when its centre
  lies in the eastern part, clipped to it.

For a model trained on tests/data/neon these are unseen pixels from a
site it was trained on: they measure generalisation within a site, not
across sites (that is what the leave-one-image-out table measures).
"""

import argparse
import csv
import glob
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile

from PIL import Image

WHEEL_SPEC = "deepforest==2.1.0"
TILE2 = "2019_YELL_2_528000_4978000_image_crop2"
TILE1 = "2019_YELL_2_541000_4977000_image_crop"
WEST_WIDTH = 700


def voc_boxes(xml_bytes, source):
    """[(xmin, ymin, xmax, ymax, label)] of a Pascal VOC annotation."""
    root = ET.fromstring(xml_bytes)
    out = []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        if b is None:
            raise ValueError("%s: object without bndbox" % source)
        vals = [int(round(float(b.find(k).text))) for k in ("xmin", "ymin", "xmax", "ymax")]
        out.append((*vals, obj.findtext("name", "Tree")))
    return out


def write_csv(path, image_name, boxes):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "xmin", "ymin", "xmax", "ymax", "label"])
        for b in boxes:
            w.writerow([image_name, *b])


def fetch_wheel(dest):
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "-d", dest, WHEEL_SPEC], check=True)
    wheels = glob.glob(os.path.join(dest, "deepforest-*.whl"))
    if not wheels:
        raise SystemExit("pip download %s left no wheel in %s" % (WHEEL_SPEC, dest))
    return wheels[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for the PNGs and CSVs")
    ap.add_argument("--wheel", help="a downloaded deepforest wheel (default: pip download)")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = a.wheel or fetch_wheel(tmp)
        with zipfile.ZipFile(wheel) as z:
            def member(name):
                return z.read("deepforest/data/" + name)

            # the unseen tile, whole
            img2 = os.path.join(a.out, "YELL_528000_crop2.png")
            with open(img2, "wb") as f:
                f.write(member(TILE2 + ".png"))
            boxes2 = voc_boxes(member(TILE2 + ".xml"), TILE2 + ".xml")
            write_csv(os.path.join(a.out, "YELL_528000_crop2.csv"), "YELL_528000_crop2.png",
                      boxes2)
            with Image.open(img2) as im:
                im = im.convert("RGB")
                w2, h2 = im.size
                cut = h2 // 2
                for name, (y0, y1) in (("YELL_528000_top", (0, cut)),
                                       ("YELL_528000_bottom", (cut, h2))):
                    im.crop((0, y0, w2, y1)).save(os.path.join(a.out, name + ".png"))
                    half = [(x0, max(b0, y0) - y0, x1, min(b1, y1 - 1) - y0, label)
                            for x0, b0, x1, b1, label in boxes2
                            if y0 <= (b0 + b1 + 1) / 2 < y1]
                    write_csv(os.path.join(a.out, name + ".csv"), name + ".png", half)

            # the eastern rest of the tile whose west is in tests/data/neon
            with tempfile.NamedTemporaryFile(suffix=".png") as t:
                t.write(member(TILE1 + ".png"))
                t.flush()
                with Image.open(t.name) as im:
                    im = im.convert("RGB")
                    w, h = im.size
                    east = im.crop((WEST_WIDTH, 0, w, h))
            east.save(os.path.join(a.out, "YELL_541000_east.png"), optimize=True)
            boxes1 = []
            for x0, y0, x1, y1, label in voc_boxes(member(TILE1 + ".xml"), TILE1 + ".xml"):
                if (x0 + x1 + 1) / 2 < WEST_WIDTH:
                    continue
                boxes1.append((max(x0, WEST_WIDTH) - WEST_WIDTH, y0,
                               min(x1, w - 1) - WEST_WIDTH, y1, label))
            write_csv(os.path.join(a.out, "YELL_541000_east.csv"), "YELL_541000_east.png",
                      boxes1)
    print("%s: YELL_528000_crop2.png (%d crowns), YELL_541000_east.png %dx%d (%d crowns)"
          % (a.out, len(boxes2), w - WEST_WIDTH, h, len(boxes1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
