"""e2e_types: tree types from a classifier as the second stage of `drain`.

A small CropModel (torchvision's ResNet-18 layout with narrow layers, seeded
random weights, written here in DeepForest's Hugging Face layout without
torch) is imported with `canopy model import` and selected with
[classifier] model. NEON crops are drained, one message asking for
tree_types ["dead"], one for "dead,snag", one for none. Then:
  - every row of `trees` has a type of the model's labels and a type_score
    in (0, 1];
  - images.type_counts counts the rows' types, images.classifier_version is
    the model's, and tree_count counts the types the message asked for (all
    trees without tree_types);
  - each output notification carries type_counts, tree_count and every
    tree's type and type_score, equal to the database's;
  - trees.json in the output bucket agrees."""
import json
import math
import os
import random
import struct
import sys

from e2e_lib import (check, check_exactly_once, legacy_message, log, main, make_crops)

LABELS = {"alive": 0, "dead": 1, "snag": 2}
WIDTHS = (4, 8, 16, 32)
PROBE = 1e-3  # the probe's scale: logits small enough not to saturate


def tiny_cropmodel(out, fc=None, seed=21):
    """model.safetensors + config.json of a ResNet-18-shaped CropModel; fc:
    (direction scale per class, bias per class) along one seeded direction
    of the features (default: a probe, (1, 0, 0) and no bias)."""
    rnd = random.Random(seed)
    tensors = {}

    def conv(name, cout, cin, k):
        scale = (2.0 / (cin * k * k)) ** 0.5
        tensors[name + ".weight"] = ([cout, cin, k, k],
                                     [rnd.gauss(0, scale) for _ in range(cout * cin * k * k)])

    def bn(name, c):
        tensors[name + ".weight"] = ([c], [0.6 + 0.8 * rnd.random() for _ in range(c)])
        tensors[name + ".bias"] = ([c], [rnd.gauss(0, 0.2) for _ in range(c)])
        tensors[name + ".running_mean"] = ([c], [rnd.gauss(0, 0.3) for _ in range(c)])
        tensors[name + ".running_var"] = ([c], [0.5 + rnd.random() for _ in range(c)])

    conv("model.conv1", WIDTHS[0], 3, 7)
    bn("model.bn1", WIDTHS[0])
    cin = WIDTHS[0]
    for layer, w in enumerate(WIDTHS, 1):
        for i in range(2):
            pre = "model.layer%d.%d" % (layer, i)
            conv(pre + ".conv1", w, cin, 3)
            bn(pre + ".bn1", w)
            conv(pre + ".conv2", w, w, 3)
            bn(pre + ".bn2", w)
            if i == 0 and (layer > 1 or cin != w):
                conv(pre + ".downsample.0", w, cin, 1)
                bn(pre + ".downsample.1", w)
            cin = w
    scales, bias = fc or ((1.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    w = [rnd.gauss(0, 1.0) for _ in range(cin)]
    tensors["model.fc.weight"] = ([3, cin], [s * v for s in scales for v in w])
    tensors["model.fc.bias"] = ([3], list(bias))
    header, blob = {}, b""
    for name in sorted(tensors):
        shape, values = tensors[name]
        data = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + blob)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"cropmodel": {"architecture": "resnet18", "label_dict": LABELS,
                                 "resize": [224, 224], "resize_interpolation": "bilinear",
                                 "normalize": None, "expand": 4}}, f)


def import_model(env, name, fc):
    src = os.path.join(env.tmp, name)
    tiny_cropmodel(src, fc)
    cnw = os.path.join(env.tmp, name + ".cnw")
    rc, out, err = env.run(["model", "import", src, "--output", cnw], "import", timeout=120,
                           expect_rc=0)
    check("classifier" in out, "import did not say it wrote a classifier: %s", out)
    return cnw


def probe_logit(t):
    """The probe's logit a (logits a, 0, 0) from its type and score."""
    p = t["type_score"]
    if t["type"] == "alive":  # p = e^a / (e^a + 2)
        return math.log(2 * p / (1 - p)) if p < 1 else 50.0
    return math.log((1 - 2 * p) / p) if p < 0.5 else -50.0  # p = 1 / (e^a + 2)


def calibrated(env, crops):
    """A classifier whose types split the trees: the probe's logit of every
    tree (canopy run on the crops), then logits (a - m, m - a, 0) around
    their median m: alive above it, dead below."""
    probe = import_model(env, "probe", ((PROBE, 0.0, 0.0), (0.0, 0.0, 0.0)))
    files = []
    for i, (_, _, data) in enumerate(crops):
        files.append(os.path.join(env.tmp, "crop%d.png" % i))
        with open(files[-1], "wb") as f:
            f.write(data)
    out = os.path.join(env.tmp, "probe-out")
    args = ["run", "--classifier", probe, "--output", out, "--model", env.model_path(),
            "--set", "detector.tile=256"]
    for f in files:
        args += ["--input", f]
    env.run(args, "probe", timeout=240, expect_rc=0)
    logits = []
    for f in files:
        with open(os.path.join(out, os.path.basename(f)[:-4] + ".trees.json")) as fh:
            logits += [probe_logit(t) / PROBE for t in json.load(fh)["trees"]]
    check(len(logits) >= 10, "the probe typed %d trees", len(logits))
    m = sorted(logits)[len(logits) // 2]
    log("probe: %d trees, logits %.3f .. %.3f, median %.3f", len(logits), min(logits),
        max(logits), m)
    return import_model(env, "types", ((1.0, -1.0, 0.0), (-m, m, 0.0)))


def body(env):
    crops = make_crops(env.source_dir, 3, sizes=((256, 256), (200, 300), (300, 200)))
    cnw = calibrated(env, crops)

    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, _ = env.queue("in", visibility=60)
    out_queue, _ = env.queue("out", dlq=False)
    env.create_db()
    asks = [["dead"], ["dead,snag"], None]
    keys, bodies = [], []
    for i, (w, h, data) in enumerate(crops):
        key = "scans/types-%d.png" % i
        env.put(in_bucket, key, data)
        keys.append(key)
        bodies.append(legacy_message(in_bucket, key, "img-%d" % i, scan_id="scan-21",
                                     tree_types=asks[i]))
    env.send(in_queue, bodies)
    cfg = env.config(in_queue, out_bucket, out_queue, "out/", idle_exit=3,
                     extra={"classifier": {"model": cnw}})
    env.run(["drain", "-c", cfg], "drain", timeout=400, expect_rc=0)
    check_exactly_once(env, keys, in_bucket)

    version = env.query("SELECT DISTINCT classifier_version FROM images")
    check(len(version) == 1 and version[0][0] and version[0][0].startswith("cropmodel-resnet18-"),
          "classifier_version: %s", version)
    notes = {}
    for b in env.receive_all(out_queue, expect=len(keys), timeout=30):
        n = json.loads(b)
        notes[n["key"]] = n
    check(set(notes) == set(keys), "notifications for %s, expected %s", sorted(notes), keys)
    total_types = set()
    for i, key in enumerate(keys):
        (ref, tree_count, counts), = env.query(
            "SELECT id, tree_count, type_counts FROM images WHERE key = %s", (key,))
        rows = env.query("SELECT type, type_score FROM trees WHERE image_ref = %s ORDER BY idx",
                         (ref,))
        check(len(rows) > 0, "%s: no trees", key)
        for t, s in rows:
            check(t in LABELS and 0 < s <= 1, "%s: a tree of type %r, score %r", key, t, s)
        want = {}
        for t, _ in rows:
            want[t] = want.get(t, 0) + 1
        total_types |= set(want)
        check(counts == want, "%s: type_counts %s, the rows count %s", key, counts, want)
        asked = set(",".join(asks[i]).split(",")) if asks[i] else set(LABELS)
        expect = sum(v for t, v in want.items() if t in asked)
        check(tree_count == expect, "%s: tree_count %s, %d trees of %s", key, tree_count, expect,
              sorted(asked))
        n = notes[key]
        check(n.get("tree_count") == expect and n.get("type_counts") == want,
              "%s: notification tree_count %s type_counts %s, database %s %s", key,
              n.get("tree_count"), n.get("type_counts"), expect, want)
        nt = n.get("trees") or []
        check(len(nt) == len(rows) and
              all(a["type"] == b[0] and abs(a["type_score"] - b[1]) < 1e-5
                  for a, b in zip(nt, rows)),
              "%s: the notification's trees disagree with the rows", key)
        tj = json.loads(env.s3.get_object(Bucket=out_bucket, Key=n["trees_key"])["Body"].read())
        check(tj.get("type_counts") == want and tj.get("tree_count") == expect and
              [t["type"] for t in tj["trees"]] == [r[0] for r in rows],
              "%s: trees.json disagrees: %s %s", key, tj.get("type_counts"), tj.get("tree_count"))
        log("%s: %d trees, %s, tree_count %d for %s", key, len(rows), want, expect, asks[i])
    check(len(total_types) >= 2, "every tree got one type: %s", total_types)


if __name__ == "__main__":
    sys.exit(main("types", body))
