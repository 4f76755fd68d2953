"""e2e_outbox: notifications go through the transactional outbox (issue 20,
item 6).

- A drain whose output queue does not exist (every SendMessageBatch fails):
  every image is committed and its input message deleted all the same (no
  retry, nothing in the dead-letter queue), its notification waits in
  notification_outbox with the failure counted.
- The queue is back; the next drain, with nothing to receive, sends every
  pending notification at start: each image's exactly once, the outbox
  empties, and no image is processed again (images rows keep their
  processed_at and run, outputs their LastModified, no new trees rows).
- A third drain sends nothing more.
- The notifications agree with the rows, as e2e_drain's do."""
import json

from e2e_lib import check, check_exactly_once, check_queue_empty, log, main

COUNT = 14
OUT_PREFIX = "out/"


def outputs(env, bucket):
    """{key: (ETag, LastModified)} of the output bucket."""
    seen = {}
    for page in env.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            seen[o["Key"]] = (o["ETag"], o["LastModified"])
    return seen


def body(env):
    bucket, out_bucket = env.bucket("in"), env.bucket("out")
    env.create_db()
    in_queue, dlq = env.queue("in", visibility=20, max_receive=2)
    out_queue, _ = env.queue("out", dlq=False)
    keys = env.queue_crops(bucket, in_queue, "tiles/t-%03d.png", COUNT)
    # The output queue goes away: every send fails (QueueDoesNotExist).
    env.sqs.delete_queue(QueueUrl=out_queue)
    cfg = env.config(in_queue, out_bucket, out_queue, OUT_PREFIX, batch_size=4, idle_exit=2,
                     visibility=20)
    rc, out, err = env.run(["drain", "-c", cfg], "no-queue", expect_rc=0)
    check_exactly_once(env, keys, bucket)
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)
    # Each flush stops at a batch of which nothing was sent: the oldest rows
    # were tried (after each commit and at the end), the rest wait.
    pending = env.query("SELECT count(*), max(attempts), bool_or(last_error LIKE "
                        "'%%QueueDoesNotExist%%') FROM notification_outbox WHERE queue_url = %s",
                        (out_queue,))[0]
    check(pending[0] == COUNT and pending[1] >= 2 and pending[2],
          "outbox after the failed sends: %s, expected %d rows, the oldest tried after each "
          "commit with the service's error", pending, COUNT)
    check("kept in the outbox" in err, "no warning about the notifications kept")
    rows_before = env.query("SELECT key, processed_at, run_id, tree_count FROM images "
                            "ORDER BY key")
    trees_before = env.query("SELECT count(*) FROM trees")[0][0]
    outs_before = outputs(env, out_bucket)
    check(len(outs_before) >= 3 * COUNT, "%d outputs", len(outs_before))

    # The queue is back (moto gives the same name the same URL).
    url = env.sqs.create_queue(QueueName=out_queue.rsplit("/", 1)[1])["QueueUrl"]
    check(url == out_queue, "recreated queue URL %s, was %s", url, out_queue)
    env.run(["drain", "-c", cfg], "sweep", expect_rc=0)
    check(env.query("SELECT count(*) FROM notification_outbox")[0][0] == 0,
          "the outbox still holds notifications after the sweep")
    bodies = env.receive_all(out_queue, expect=COUNT)
    got = sorted(json.loads(b)["key"] for b in bodies)
    check(got == sorted(keys), "notifications for %s, expected each of %d keys once",
          got, COUNT)
    rows = {r[0]: r for r in env.query(
        "SELECT key, etag, image_id, tree_count, trees_key, mask_key FROM images")}
    for b in bodies:
        n = json.loads(b)
        r = rows[n["key"]]
        check((n["etag"].strip('"'), n["image_id"], n["tree_count"], n["trees_key"],
               n["mask_key"]) == (r[1].strip('"'),) + r[2:],
              "notification %s disagrees with its row %s", n, r)
    # Nothing processed again.
    check(env.query("SELECT key, processed_at, run_id, tree_count FROM images ORDER BY key")
          == rows_before, "images rows changed by the sweep")
    check(env.query("SELECT count(*) FROM trees")[0][0] == trees_before, "trees rows changed")
    check(outputs(env, out_bucket) == outs_before, "outputs rewritten by the sweep")
    runs = env.query("SELECT images_ok, images_failed FROM runs ORDER BY id")
    check(runs[-1] == (0, 0), "the sweeping run processed images: %s", runs[-1])

    # Nothing left to send: a third drain sends nothing.
    env.run(["drain", "-c", cfg], "again", expect_rc=0)
    again = env.receive_all(out_queue)
    check(not again, "%d notifications sent again", len(again))
    log("%d notifications sent once, after the queue came back", COUNT)


if __name__ == "__main__":
    raise SystemExit(main("outbox", body))
