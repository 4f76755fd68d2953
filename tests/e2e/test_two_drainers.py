"""e2e_two_drainers: two drainers on one queue at once: every image
processed, exactly once in `images`, the queue empty, both exit 0."""
import json
import sys

from e2e_lib import (check, check_exactly_once, check_queue_empty, legacy_message, log, main,
                     make_crops, s3_event)


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, dlq = env.queue("in", visibility=20)
    out_queue, _ = env.queue("out", dlq=False)
    env.create_db()
    keys, messages = [], []
    for i, (w, h, data) in enumerate(make_crops(env.source_dir, 64)):
        key = "two/%02d/img.png" % i
        etag = env.put(in_bucket, key, data)
        keys.append(key)
        messages.append(s3_event(in_bucket, key, len(data), etag) if i % 2 else
                        legacy_message(in_bucket, key, "img-%d" % i, "scan-%d" % (i % 4)))
    env.send(in_queue, messages)
    cfg = env.config(in_queue, out_bucket, out_queue, "out/", batch_size=4, visibility=20,
                     idle_exit=4)

    a = env.start(["drain", "-c", cfg], "drain-a")
    b = env.start(["drain", "-c", cfg], "drain-b")
    for p in (a, b):
        rc, out, err = env.wait(p, 400)
        check(rc == 0, "%s exited %d\n%s", p.tag, rc, err[-3000:])
    check_exactly_once(env, keys, in_bucket)
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)
    runs = env.query("SELECT run_id, count(*) FROM images GROUP BY run_id ORDER BY run_id")
    log("images per run: %s", runs)
    # At least once: a redelivered message may be notified twice, none may lack one.
    notes = env.receive_all(out_queue, expect=len(keys))
    notified = {json.loads(n)["key"] for n in notes}
    check(notified == set(keys), "%d notifications name %d of %d images", len(notes),
          len(notified & set(keys)), len(keys))


if __name__ == "__main__":
    sys.exit(main("two_drainers", body))
