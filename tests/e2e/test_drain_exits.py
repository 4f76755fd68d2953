"""e2e_drain_exits: how drain ends when work cannot be finished.

- SQS refusing connections: drain gives up after [batch]
  unreachable_exit_seconds without one successful ReceiveMessage and exits 1
  (it used to log a failed receive every ~2 s forever).
- Transient failures whose backoff ends after the idle window (the output
  bucket is missing, so every upload fails): drain exits 4, says how many
  messages are still waiting out a backoff, and leaves them in the queue (it
  used to exit 0). With [log] format = json the summary is one JSON object.
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


def pending(env):
    in_bucket = env.bucket("in-pend")
    in_queue, _ = env.queue("pend", visibility=10)
    missing = "e2e-no-such-bucket-%s" % env.suffix
    keys = env.queue_crops(in_bucket, in_queue, "p/img-%02d.png", 3)
    cfg = env.config(in_queue, missing, "", "out/", idle_exit=3, detector=False,
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
    check(not [r for r in env.images() if r["status"] == "ok"], "ok rows without outputs")
    log("backoff beyond the idle window: exit 4, %d messages kept", total)


def recovers(env):
    in_bucket = env.bucket("in-rec")
    in_queue, _ = env.queue("rec", visibility=10)
    out_bucket = "e2e-late-bucket-%s" % env.suffix
    keys = env.queue_crops(in_bucket, in_queue, "r/img-%02d.png", 3)
    cfg = env.config(in_queue, out_bucket, "", "out/", idle_exit=15, detector=False,
                     name="rec.ini")
    p = env.start(["drain", "-c", cfg], "recovers")
    time.sleep(2.5)
    env.s3.create_bucket(Bucket=out_bucket)
    env.buckets.append(out_bucket)
    rc, out, err = env.wait(p, 120)
    check(rc == 0, "drain exited %d after the bucket appeared, expected 0\n%s\n%s", rc,
          out[-2000:], err[-3000:])
    check("left for redelivery" in err, "nothing was retried: the test did not test")
    check_exactly_once(env, keys, in_bucket)
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


def body(env):
    env.create_db()
    unreachable(env)
    pending(env)
    recovers(env)
    held_back(env)


if __name__ == "__main__":
    raise SystemExit(main("drain_exits", body))
