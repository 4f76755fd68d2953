"""e2e_drain: 200 images enqueued (S3 events, legacy JSON, one SNS-wrapped
event, one s3:TestEvent), drained; then the same messages delivered again.

Checks: every output object exists with the source's metadata, masks and
overlays decode to the input's size, trees.json agrees with the trees rows;
images rows are right (status ok, tree_count = trees rows, ids from the
message or else from the object's metadata, the message's image_id and
tree_types); the input queue and its dead-letter queue are empty; 200
notifications wait on the output queue and agree with the rows. Redelivery
of the same messages adds no row and leaves every image's trees unchanged.
"""
import json
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

from e2e_lib import (NEON_NAMES, check, check_exactly_once, check_outputs, check_queue_empty,
                     legacy_message, log, main, make_crops, neon_png, png_size, s3_event,
                     s3_test_event, sns_wrap)

OUT_PREFIX = "results/v1/"


def build_inputs(env, bucket):
    """Uploads 200 images and returns (messages, expected {key: dict})."""
    crops = make_crops(env.source_dir, 197)
    images = [(w, h, data) for w, h, data in crops]
    for name in NEON_NAMES:
        data = neon_png(env.source_dir, name)
        w, h = png_size(data)
        images.append((w, h, data))
    keys = []
    for i in range(len(images)):
        if i == 5:
            keys.append("in/scan 7/tile+%03d (copy).png" % i)  # URL-encoding in events
        elif i == 7:
            keys.append("in/région/%03d.png" % i)              # UTF-8 key
        elif i == 10:
            keys.append("in/a/same.png")                       # same file name, two folders
        elif i == 11:
            keys.append("in/b/same.png")
        elif i >= 197:
            keys.append("in/neon/%s.png" % NEON_NAMES[i - 197])
        else:
            keys.append("in/batch%d/img-%03d.png" % (i // 50, i))
    messages, expected = [], {}
    for i, ((w, h, data), key) in enumerate(zip(images, keys)):
        kind = i % 6
        meta = {}
        exp = {"width": w, "height": h, "scan_id": None, "address_id": None,
               "image_id": None, "tree_types": None}
        if kind in (1, 3, 4):
            meta = {"scan-id": "meta-scan-%d" % (i % 9), "address-id": "meta-addr-%d" % i}
        etag = env.put(bucket, key, data, meta)
        exp["etag"] = etag
        if kind in (0, 3, 4):
            image_id = str(uuid.uuid4())
            exp["image_id"] = image_id
            if kind == 3:
                # The message lacks the ids: the object's metadata fills them.
                body = legacy_message(bucket, key, image_id)
                exp["scan_id"], exp["address_id"] = meta["scan-id"], meta["address-id"]
            else:
                # The message's ids win over the metadata's.
                tt = ["pinus palustris", "quercus"] if i % 2 == 0 else ["abies"]
                body = legacy_message(bucket, key, image_id, "scan-%d" % (i % 7), "addr-%d" % i, tt)
                exp["scan_id"], exp["address_id"], exp["tree_types"] = "scan-%d" % (i % 7), \
                    "addr-%d" % i, tt
        else:
            body = s3_event(bucket, key, len(data), etag)
            if kind == 1:
                exp["scan_id"], exp["address_id"] = meta["scan-id"], meta["address-id"]
            if i == 1:
                body = sns_wrap(body)
        messages.append(body)
        expected[key] = exp
    messages.insert(100, s3_test_event(bucket))
    return messages, expected


def check_rows(env, expected, in_bucket, out_bucket):
    rows = env.images()
    check(len(rows) == len(expected), "%d images rows, expected %d", len(rows), len(expected))
    check_exactly_once(env, list(expected), in_bucket)
    trees = env.all_trees()
    jobs = []
    for n, row in enumerate(rows):
        exp = expected[row["key"]]
        check(row["status"] == "ok" and row["error"] is None, "%s: status %s error %s",
              row["key"], row["status"], row["error"])
        check(row["etag"].strip('"') == exp["etag"], "%s: etag %s, uploaded %s", row["key"],
              row["etag"], exp["etag"])
        for col in ("scan_id", "address_id", "tree_types"):
            check(row[col] == exp[col], "%s: %s is %r, expected %r", row["key"], col, row[col],
                  exp[col])
        if exp["image_id"]:
            check(row["image_id"] == exp["image_id"], "%s: image_id %r, message %r",
                  row["key"], row["image_id"], exp["image_id"])
        check(row["model_version"], "%s: no model_version", row["key"])
        check(row["canopy_cover"] is not None and 0 <= row["canopy_cover"] <= 1,
              "%s: canopy_cover %r", row["key"], row["canopy_cover"])
        # Full decode of every overlay costs seconds in Python: every 8th
        # image, the odd keys and the NEON originals get it, the rest a size check.
        full = n % 8 == 0 or not row["key"].startswith("in/batch")
        jobs.append((row, exp["width"], exp["height"], full, trees.get(row["id"], [])))
    # The outputs: 600 GETs, concurrently.
    with ThreadPoolExecutor(8) as pool:
        for f in [pool.submit(check_outputs, env, row, out_bucket, OUT_PREFIX, w, h, full, t)
                  for row, w, h, full, t in jobs]:
            f.result()
    ntrees = sum(len(t) for t in trees.values())
    check(ntrees == sum(r["tree_count"] for r in rows), "trees rows do not add up")
    log("%d images rows and their outputs ok, %d trees", len(rows), ntrees)
    return rows


def check_notifications(env, out_queue, rows, out_bucket):
    bodies = env.receive_all(out_queue, expect=len(rows))
    boxes = {}
    for ref, x, y, r, s, x0, y0, x1, y1 in env.query(
            "SELECT image_ref, x, y, radius, score, box_xmin, box_ymin, box_xmax, box_ymax "
            "FROM trees ORDER BY image_ref, idx"):
        boxes.setdefault(ref, []).append((x, y, r, s, x0, y0, x1, y1))
    check(len(bodies) == len(rows), "%d notifications, expected %d", len(bodies), len(rows))
    by_key = {r["key"]: r for r in rows}
    seen = set()
    for body in bodies:
        n = json.loads(body)
        row = by_key.get(n.get("key"))
        check(row is not None, "notification for an unknown key: %s", body[:300])
        check(n["key"] not in seen, "two notifications for %s", n["key"])
        seen.add(n["key"])
        for field in ("bucket", "model_version", "tree_count", "mask_key", "overlay_key",
                      "trees_key"):
            check(n.get(field) == row[field], "notification %s: %s %r, row %r", n["key"], field,
                  n.get(field), row[field])
        check(n.get("etag", "").strip('"') == row["etag"].strip('"'), "notification etag")
        check(abs(n.get("canopy_cover", -1) - row["canopy_cover"]) < 1e-3, "notification cover")
        check(n.get("output_bucket") == out_bucket, "notification output_bucket %r",
              n.get("output_bucket"))
        if row["image_id"]:
            check(n.get("image_id") == row["image_id"], "notification image_id %r, row %r",
                  n.get("image_id"), row["image_id"])
        # Every tree with its box, as the trees rows have them.
        want = boxes.get(row["id"], [])
        got = n.get("trees")
        check(isinstance(got, list) and len(got) == len(want) == row["tree_count"],
              "notification %s: %s trees, %d rows", n["key"],
              len(got) if isinstance(got, list) else got, len(want))
        for t, w in zip(got or [], want):
            have = (t["x"], t["y"], t["radius"], t["score"], t["xmin"], t["ymin"], t["xmax"],
                    t["ymax"])
            check(all(abs(a - b) < 0.02 for a, b in zip(have, w)),
                  "notification %s: tree %s, row %s", n["key"], have, w)
    log("%d notifications agree with the rows", len(bodies))


def snapshot(env):
    """{key: (id, tree_count, trees)} of every images row."""
    trees = env.all_trees()
    return {r["key"]: (r["id"], r["tree_count"], trees.get(r["id"], [])) for r in env.images()}


def same_tree(a, b):
    """Equal up to float rounding: a redelivered image is processed again, and
    the device's float sums need not be bit-identical from run to run."""
    return all(abs(u - v) <= 1e-3 * max(1.0, abs(u)) for u, v in zip(a, b))


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, dlq = env.queue("in", visibility=30)
    out_queue, _ = env.queue("out", dlq=False)
    env.create_db()
    messages, expected = build_inputs(env, in_bucket)
    env.send(in_queue, messages)
    log("%d messages enqueued for %d images", len(messages), len(expected))
    cfg = env.config(in_queue, out_bucket, out_queue, OUT_PREFIX, batch_size=16, visibility=30,
                     idle_exit=3)

    env.run(["drain", "-c", cfg], "drain", timeout=400, expect_rc=0)
    rows = check_rows(env, expected, in_bucket, out_bucket)
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)
    check_notifications(env, out_queue, rows, out_bucket)

    # The same messages again (a third of them, every kind included).
    before = snapshot(env)
    again = messages[::3] + [messages[1]]
    env.send(in_queue, again)
    log("%d messages delivered again", len(again))
    env.run(["drain", "-c", cfg], "redeliver", timeout=300, expect_rc=0)
    after = snapshot(env)
    check(len(after) == len(before), "images rows %d after redelivery, %d before",
          len(after), len(before))
    for key, snap in before.items():
        now = after.get(key, (None, None, []))
        check(now[:2] == snap[:2], "%s: (id, tree_count) %s after redelivery, %s before", key,
              now[:2], snap[:2])
        diff = [(a, b) for a, b in zip(snap[2], now[2]) if not same_tree(a, b)]
        check(not diff, "%s: %d trees changed on redelivery, e.g. %s -> %s", key, len(diff),
              *(diff[0] if diff else (None, None)))
    check_exactly_once(env, list(expected), in_bucket)
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)


if __name__ == "__main__":
    sys.exit(main("drain", body))
