"""e2e_metrics: what an operator scrapes agrees with what a real drain did.

A drain of good images and one corrupt object with [metrics] textfile and
[log] format = json: the Prometheus textfile parses (HELP/TYPE/series), its
counters equal the rows in PostgreSQL (images by result, trees), every ok
image was timed in every stage, the SQS and S3 request counters moved, and
the final CloudWatch EMF line in the log carries the same counts."""
import json
import os
import re
import sys

from e2e_lib import check, log, main, s3_event

SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_prometheus(text):
    """{(name, labels): value}; checks every series has its TYPE line first."""
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line.strip():
            continue
        m = SERIES.match(line)
        check(m is not None, "not a Prometheus series line: %r", line)
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        check(name in typed or base in typed, "%s has no TYPE line before it", name)
        out[(name, labels)] = value
    return out


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, _ = env.queue("in", visibility=30)
    env.create_db()
    keys = env.queue_crops(in_bucket, in_queue, "m/img-%02d.png", 5)
    bad = env.put(in_bucket, "m/bad.png", b"not a png at all")
    env.send(in_queue, [s3_event(in_bucket, "m/bad.png", 16, bad)])
    prom = os.path.join(env.tmp, "canopy.prom")
    cfg = env.config(in_queue, out_bucket, "", "out/", idle_exit=3,
                     extra={"metrics": {"textfile": prom}, "log": {"format": "json"}})
    rc, out, err = env.run(["drain", "-c", cfg], "drain", timeout=300, expect_rc=3)
    m = parse_prometheus(open(prom).read())
    rows = env.query("SELECT status, count(*) FROM images GROUP BY status")
    by = dict(rows)
    trees = env.query("SELECT count(*) FROM trees")[0][0]
    check(m.get(("canopy_images_total", '{result="ok"}')) == by.get("ok") == len(keys),
          "images ok: metrics %s, rows %s", m.get(("canopy_images_total", '{result="ok"}')), by)
    check(m.get(("canopy_images_total", '{result="failed"}')) == by.get("failed") == 1,
          "images failed: metrics %s, rows %s",
          m.get(("canopy_images_total", '{result="failed"}')), by)
    check(m.get(("canopy_trees_total", "")) == trees, "trees: metrics %s, rows %d",
          m.get(("canopy_trees_total", "")), trees)
    for stage in ("fetch", "decode", "device", "encode", "upload"):
        n = m.get(("canopy_stage_seconds_count", '{stage="%s"}' % stage))
        check(n == len(keys), "stage %s timed %s times for %d ok images", stage, n, len(keys))
        inf = m.get(("canopy_stage_seconds_bucket", '{stage="%s",le="+Inf"}' % stage))
        check(inf == n, "stage %s: +Inf bucket %s, count %s", stage, inf, n)
    check(m.get(("canopy_sqs_requests_total", '{op="receive_message"}'), 0) >= 1 and
          m.get(("canopy_sqs_requests_total", '{op="delete_message_batch"}'), 0) >= 1,
          "SQS request counters did not move")
    check(m.get(("canopy_s3_requests_total", ""), 0) >= 2 * len(keys),
          "S3 requests %s for %d images", m.get(("canopy_s3_requests_total", "")), len(keys))
    check(m.get(("canopy_db_commit_seconds_count", ""), 0) >= 1, "no commit timed")
    check(m.get(("canopy_bytes_in_total", ""), 0) > 0 and
          m.get(("canopy_bytes_out_total", ""), 0) > 0, "bytes counters did not move")
    # Device memory in use: every engine's buffers (weights, activations),
    # more than the image buffer alone; and no metric the registry lacks.
    dev, img = m.get(("canopy_device_bytes", ""), 0), m.get(("canopy_device_image_bytes", ""), 0)
    check(dev > img > 0, "device bytes %s, image buffer %s", dev, img)
    check("unknown metric" not in err, "a metric outside the registry: %s",
          [l for l in err.splitlines() if "unknown metric" in l][:2])
    emf = [json.loads(l) for l in err.splitlines() if l.startswith('{"_aws"')]
    check(emf, "no CloudWatch EMF line in the log")
    last = emf[-1]
    names = {d["Name"] for d in last["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    check({"ImagesOk", "ImagesFailed", "Trees"} <= names, "EMF metrics %s", sorted(names))
    check(last["ImagesOk"] == len(keys) and last["ImagesFailed"] == 1 and last["Trees"] == trees,
          "EMF values %s", {k: last.get(k) for k in ("ImagesOk", "ImagesFailed", "Trees")})
    check(last["mode"] == "drain" and last["_aws"]["CloudWatchMetrics"][0]["Namespace"] ==
          "canopy", "EMF namespace or dimension")
    log("metrics agree with the rows: %d ok, 1 failed, %d trees", len(keys), trees)


if __name__ == "__main__":
    sys.exit(main("metrics", body))
