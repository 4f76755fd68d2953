"""e2e_drain_exits: how drain ends when work cannot be finished.

- SQS refusing connections: drain gives up after [batch]
  unreachable_exit_seconds without one successful ReceiveMessage and exits 1
  (it used to log a failed receive every ~2 s forever).
- What cannot recover by itself fails at once, before the model and the
  device are opened, with the service's code and message: an input queue
  URL naming no queue (QueueDoesNotExist), a wrong secret key
  (SignatureDoesNotMatch), a missing output bucket (NoSuchBucket). Exit 1
  within seconds (it used to retry ReceiveMessage for [batch]
  unreachable_exit_seconds, 300 s by default).
- Transient failures whose backoff ends after the idle window (the input
  objects are archived: GetObject answers 403 InvalidObjectState): drain
  exits 4, says how many messages are still waiting out a backoff, and
  leaves them in the queue (it used to exit 0). With [log] format = json
  the summary is one JSON object. (A missing output queue is no such
  failure any more: notifications wait in the outbox, see e2e_outbox.) (A missing output bucket is no longer such a failure: it is
  refused at start, and mid-run it is an outage, see e2e_pg_outage.)
- Transient failures that clear up while drain waits: the messages come back
  within the idle window, are processed, and drain exits 0.
- Held back is not idle: while the chunk in flight waits on a locked table
  for longer than the idle window, drain must not count that wait as an
  empty queue (it used to finish with most of the messages still queued).
"""
import json
import socket
import time

from e2e_lib import check, check_exactly_once, log, main


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def unreachable(env):
    in_queue, _ = env.queue("dead", visibility=10)
    out_bucket = env.bucket("out-dead")
    cfg = env.config(in_queue, out_bucket, "", "out/", idle_exit=3, detector=False,
                     extra={"batch": {"unreachable_exit_seconds": 3},
                            "aws": {"max_attempts": 1}}, name="dead.ini")
    t0 = time.monotonic()
    rc, out, err = env.run(["drain", "-c", cfg, "--set",
                            "aws.endpoint_url=http://127.0.0.1:%d" % closed_port()],
                           "unreachable", timeout=90)
    took = time.monotonic() - t0
    check(rc == 1, "drain with SQS refusing connections exited %d, expected 1\n%s", rc,
          err[-2000:])
    check("unreachable for" in err and "unreachable_exit_seconds" in err,
          "the reason is not given:\n%s", err[-2000:])
    check(took < 60, "drain took %.0f s to give up", took)
    log("SQS refusing connections: exit 1 after %.1f s", took)


def fail_fast(env):
    in_queue, _ = env.queue("ff", visibility=10)
    out_bucket = env.bucket("out-ff")
    cfg = env.config(in_queue, out_bucket, "", "out/", idle_exit=3, detector=False,
                     name="ff.ini")
    base = in_queue.rsplit("/", 1)[0]
    cases = [
        ("no queue", ["--set", "input.queue_url=%s/e2e-no-such-queue-%s" % (base, env.suffix)],
         None, ("QueueDoesNotExist", "NonExistentQueue")),
        ("wrong secret", [], {"AWS_SECRET_ACCESS_KEY": "wrong-secret-key"},
         ("SignatureDoesNotMatch", "InvalidClientTokenId")),
        ("no bucket", ["--set", "output.bucket=e2e-no-such-bucket-%s" % env.suffix], None,
         ("NoSuchBucket",)),
    ]
    for what, args, extra_env, codes in cases:
        t0 = time.monotonic()
        rc, out, err = env.run(["drain", "-c", cfg] + args, "ff-" + what.replace(" ", "-"),
                               timeout=90, env=extra_env)
        took = time.monotonic() - t0
        check(rc == 1, "%s: drain exited %d, expected 1\n%s", what, rc, err[-2000:])
        check(any(c in err for c in codes), "%s: the service's code (%s) is not given:\n%s",
              what, "/".join(codes), err[-2000:])
        check(took < 20, "%s: drain took %.0f s to give up", what, took)
        check("wrong-secret-key" not in out + err, "the secret was printed")
        log("%s: exit 1 after %.1f s", what, took)
    check(env.queue_total(in_queue) == 0, "messages appeared in the queue")


def storage_class(env, bucket, keys, cls):
    """Stores the objects again, same bytes (same ETag), in storage class
    cls: GLACIER makes GetObject answer 403 InvalidObjectState, a transient
    failure for canopy (not an image's fault)."""
    for key in keys:
        data = env.s3.get_object(Bucket=bucket, Key=key)["Body"].read() \
            if cls == "GLACIER" else env.archived.pop(key)
        if cls == "GLACIER":
            env.archived[key] = data
        env.s3.put_object(Bucket=bucket, Key=key, Body=data, StorageClass=cls)


def pending(env):
    in_bucket = env.bucket("in-pend")
    out_bucket = env.bucket("out-pend")
    in_queue, _ = env.queue("pend", visibility=10)
    keys = env.queue_crops(in_bucket, in_queue, "p/img-%02d.png", 3)
    storage_class(env, in_bucket, keys, "GLACIER")
    cfg = env.config(in_queue, out_bucket, "", "out/", idle_exit=3, detector=False,
                     name="pend.ini")
    rc, out, err = env.run(["drain", "-c", cfg, "--set", "log.format=json"], "pending",
                           timeout=120)
    check(rc == 4, "drain exited %d with messages waiting out a backoff, expected 4\n%s\n%s", rc,
          out[-2000:], err[-2000:])
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        summary = json.loads(last)
    except ValueError:
        summary = None
    check(isinstance(summary, dict) and summary.get("event") == "summary",
          "the last stdout line is not a JSON summary: %r", last)
    check(summary["exit_code"] == 4 and summary["pending"] == len(keys) and
          summary["ok"] == 0, "summary %s", summary)
    total = env.queue_total(in_queue)
    check(total == len(keys), "%d messages in the queue, expected the %d left for redelivery",
          total, len(keys))
    check(not env.ok_keys(), "archived images were committed")
    log("backoff beyond the idle window: exit 4, %d messages kept", total)


def recovers(env, committed):
    in_bucket = env.bucket("in-rec")
    out_bucket = env.bucket("out-rec")
    in_queue, _ = env.queue("rec", visibility=10)
    keys = env.queue_crops(in_bucket, in_queue, "r/img-%02d.png", 3)
    storage_class(env, in_bucket, keys, "GLACIER")
    cfg = env.config(in_queue, out_bucket, "", "out/", idle_exit=15, detector=False,
                     name="rec.ini")
    p = env.start(["drain", "-c", cfg], "recovers")
    time.sleep(2.5)
    storage_class(env, in_bucket, keys, "STANDARD")
    rc, out, err = env.wait(p, 120)
    check(rc == 0, "drain exited %d after the objects were restored, expected 0\n%s\n%s", rc,
          out[-2000:], err[-3000:])
    check("left for redelivery" in err, "nothing was retried: the test did not test")
    check_exactly_once(env, committed + keys)
    check(env.queue_total(in_queue) == 0, "messages left in the queue")


def held_back(env):
    in_bucket = env.bucket("in-held")
    in_queue, _ = env.queue("held", visibility=30)
    keys = env.queue_crops(in_bucket, in_queue, "h/img-%02d.png", 6)
    cfg = env.config(in_queue, env.bucket("out-held"), "", "out/", batch_size=2, idle_exit=1,
                     detector=False, extra={"batch": {"max_chunks_in_flight": 1}},
                     name="held.ini")
    # The first chunk's commit waits on this lock for 4 s, four times the idle
    # window, while two thirds of the messages are still in the queue.
    lock = env.psycopg2.connect(env.conninfo())
    with lock.cursor() as cur:
        cur.execute("LOCK TABLE images IN ACCESS EXCLUSIVE MODE")
    p = env.start(["drain", "-c", cfg], "held")
    time.sleep(4)
    lock.rollback()
    lock.close()
    rc, out, err = env.wait(p, 120)
    check(rc == 0, "drain exited %d, expected 0\n%s\n%s", rc, out[-2000:], err[-3000:])
    left = env.queue_total(in_queue)
    check(left == 0, "drain finished with %d of %d messages still in the queue:\n%s", left,
          len(keys), err[-3000:])
    counts = env.ok_keys()
    check(all(counts.get(k, 0) == 1 for k in keys), "ok rows per image: %s",
          {k: counts.get(k, 0) for k in keys})
    log("held back by a locked table for 4 s with idle_exit_seconds 1: all %d images done",
        len(keys))


def bucket_outage(env):
    """The output bucket disappears mid-run: the drainer keeps the chunk in
    hand, retries its uploads with backoff, and when the bucket is back
    finishes with exit 0, every image once, nothing in the dead-letter
    queue although its maxReceiveCount is 1."""
    in_bucket = env.bucket("in-bo")
    out_bucket = env.bucket("out-bo")
    in_queue, dlq = env.queue("bo", visibility=4, max_receive=1)
    first = env.queue_crops(in_bucket, in_queue, "b/pre-%02d.png", 2)
    cfg = env.config(in_queue, out_bucket, "", "out/", idle_exit=8, detector=False,
                     visibility=4, name="bo.ini",
                     extra={"batch": {"outage_probe_seconds": 2, "retry_backoff_seconds": 1}})
    p = env.start(["drain", "-c", cfg], "bucket-outage")
    from e2e_lib import wait_until
    wait_until(lambda: p.poll() is not None or all(k in env.ok_keys() for k in first), 120,
               "the first commit", interval=0.1)
    check(p.poll() is None, "the drainer exited %s before the outage", p.returncode)
    for key in env.list_keys(out_bucket):
        env.s3.delete_object(Bucket=out_bucket, Key=key)
    env.s3.delete_bucket(Bucket=out_bucket)
    env.buckets.remove(out_bucket)
    keys = env.queue_crops(in_bucket, in_queue, "b/img-%02d.png", 3)
    time.sleep(12)  # three visibility timeouts: without the heartbeat they would be gone
    check(p.poll() is None, "the drainer exited %s during the bucket outage", p.returncode)
    check(env.queue_total(dlq) == 0, "an image reached the dead-letter queue during the outage")
    env.s3.create_bucket(Bucket=out_bucket)
    env.buckets.append(out_bucket)
    rc, out, err = env.wait(p, 120)
    check(rc == 0, "drain exited %d after the bucket came back\n%s", rc, err[-3000:])
    check("the output bucket is down" in err and "intake resumes" in err,
          "the outage was not ridden out:\n%s", err[-3000:])
    check(env.queue_total(dlq) == 0, "an image reached the dead-letter queue")
    check(env.queue_total(in_queue) == 0, "messages left in the queue")
    outs = env.list_keys(out_bucket)
    for k in keys:
        stem = k.rsplit(".", 1)[0]
        check("out/%s.trees.json" % stem in outs, "no outputs for %s after the outage", k)
    return first + keys


def body(env):
    env.create_db()
    env.archived = {}
    unreachable(env)
    fail_fast(env)
    pending(env)
    committed = bucket_outage(env)
    recovers(env, committed)
    held_back(env)


if __name__ == "__main__":
    raise SystemExit(main("drain_exits", body))
