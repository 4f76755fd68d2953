"""e2e_submit: `canopy submit` is the producer side of the earlier system.

Valid PNGs are uploaded under [input] bucket/prefix with x-amz-meta-scan-id /
address-id and one legacy JSON message each is enqueued; a line
`<image_id> s3://bucket/key` per file. A broken file is refused with an error
naming it (exit 3) and nothing of it is uploaded or enqueued. Draining the
queue then gives rows with the submitted image ids, scan and address ids and
tree types, and with [log] format = json every log line is a JSON object."""
import json
import os
import re
import sys

from e2e_lib import (TestFailure, check, check_exactly_once, check_queue_empty, log, main,
                     make_crops)

LINE = re.compile(r"^(\S+) s3://([^/]+)/(.+)$")


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, dlq = env.queue("in", visibility=10)
    env.create_db()
    files = []
    for i, (w, h, data) in enumerate(make_crops(env.source_dir, 4)):
        path = os.path.join(env.tmp, "parcel %d.png" % i)
        with open(path, "wb") as f:
            f.write(data)
        files.append(path)
    broken = os.path.join(env.tmp, "broken.png")
    with open(broken, "wb") as f:
        f.write(open(files[0], "rb").read()[:200])
    cfg = env.config(in_queue, out_bucket, "", "out/", idle_exit=2, detector=False,
                     extra={"input": {"bucket": in_bucket, "prefix": "uploads/"}})

    rc, out, err = env.run(["submit", "-c", cfg, "--scan-id", "scan-42", "--address-id",
                            "12 Elm St", "--tree-types", "pine,oak", files[0], files[1], broken,
                            files[2], files[3]], "submit", timeout=120, expect_rc=3)
    check("broken.png" in err, "the error does not name the broken file:\n%s", err[-2000:])
    ids = {}
    for line in out.splitlines():
        m = LINE.match(line.strip())
        if m:
            check(m.group(2) == in_bucket, "submitted to bucket %s", m.group(2))
            ids[m.group(3)] = m.group(1)
    want = {"uploads/" + os.path.basename(f) for f in files}
    check(set(ids) == want, "submit printed %s, expected %s", sorted(ids), sorted(want))
    check(len(set(ids.values())) == len(ids), "image ids are not distinct: %s", ids)
    check(set(env.list_keys(in_bucket)) == want, "objects in the input bucket: %s",
          env.list_keys(in_bucket))
    for key in want:
        md = env.s3.head_object(Bucket=in_bucket, Key=key)["Metadata"]
        check(md.get("scan-id") == "scan-42" and md.get("address-id") == "12 Elm St",
              "%s: metadata %s", key, md)
    vis, inflight, delayed = env.queue_counts(in_queue)
    check(vis + delayed == len(files), "%d messages enqueued for %d files", vis + delayed,
          len(files))
    log("submitted: %s", ids)

    # For log collectors: [log] format = json gives one JSON object per line.
    rc, out, err = env.run(["drain", "-c", cfg, "--set", "log.format=json"], "drain",
                           timeout=240, expect_rc=0)
    logged = []
    for line in err.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            raise TestFailure("a log line is not JSON: %r" % line[:300])
        check(isinstance(rec, dict) and {"ts", "level", "msg"} <= set(rec),
              "log record without ts/level/msg: %r", line[:300])
        logged.append(rec["msg"])
    for key in want:
        check(any(key in m for m in logged), "no log record names %s", key)
    check_exactly_once(env, sorted(want), in_bucket)
    for row in env.images():
        check(row["image_id"] == ids[row["key"]], "%s: image_id %s, submit printed %s",
              row["key"], row["image_id"], ids[row["key"]])
        check(row["scan_id"] == "scan-42" and row["address_id"] == "12 Elm St" and
              row["tree_types"] == ["pine", "oak"], "%s: ids %s %s %s", row["key"],
              row["scan_id"], row["address_id"], row["tree_types"])
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)


if __name__ == "__main__":
    sys.exit(main("submit", body))
