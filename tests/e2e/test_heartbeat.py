"""e2e_heartbeat: chunks that stay in flight longer than the visibility
timeout are not redelivered: the heartbeat extends their visibility. The
input queue's redrive policy has maxReceiveCount = 1, so a single redelivery
moves a message to the dead-letter queue.

The chunk is held in flight by the database, not by the speed of the
machine: the test takes an EXCLUSIVE lock on the images table, waits until
the drain's write of a chunk is blocked on it with the chunk's messages in
flight, and keeps it blocked for several visibility timeouts. Meanwhile the
chunk's messages must stay hidden and nothing may reach the dead-letter
queue; afterwards every image is processed and notified exactly once."""
import json
import sys
import time

from e2e_lib import (check, check_exactly_once, check_queue_empty, log, main, wait_until)

VISIBILITY = 2  # the heartbeat extends every max(1, visibility / 3) s
BATCH = 8
HOLD = 4 * VISIBILITY  # seconds the write stays blocked once seen blocked


def lock_waiters(env):
    return env.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND wait_event_type = 'Lock'")[0][0]


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, dlq = env.queue("in", visibility=VISIBILITY, max_receive=1)
    out_queue, _ = env.queue("out", dlq=False)
    conninfo = env.create_db()
    keys = env.queue_crops(in_bucket, in_queue, "hb/img-%03d.png", 3 * BATCH,
                           sizes=((128, 128),))
    cfg = env.config(in_queue, out_bucket, out_queue, "out/", batch_size=BATCH,
                     visibility=VISIBILITY, idle_exit=2)
    env.run(["db", "migrate", "-c", cfg], "migrate", timeout=60, expect_rc=0)

    locker = env.psycopg2.connect(conninfo)  # not autocommit: the lock lasts until commit
    with locker.cursor() as cur:
        cur.execute("LOCK TABLE images IN EXCLUSIVE MODE")  # reads pass, writes wait
    try:
        p = env.start(["drain", "-c", cfg, "--set", "log.level=debug"], "drain")
        wait_until(lambda: p.poll() is not None
                   or (lock_waiters(env) > 0 and env.queue_counts(in_queue)[1] >= BATCH),
                   240, "the drain's write blocked on the lock with a chunk in flight")
        check(p.poll() is None, "the drain exited (%s) before its write was blocked", p.returncode)
        blocked = time.monotonic()
        log("the drain's write is blocked with %d messages in flight; holding it %d s",
            env.queue_counts(in_queue)[1], HOLD)
        while time.monotonic() - blocked < HOLD:
            time.sleep(0.5)
            check(env.queue_total(dlq) == 0, "a message reached the dead-letter queue %.1f s "
                  "into the blocked write: its visibility was not extended",
                  time.monotonic() - blocked)
        check(lock_waiters(env) > 0, "the drain's write was no longer blocked at the end")
        in_flight = env.queue_counts(in_queue)[1]
        check(in_flight >= BATCH, "after %d s blocked (%d visibility timeouts) only %d messages "
              "are in flight: the blocked chunk's messages became visible again", HOLD,
              HOLD // VISIBILITY, in_flight)
    finally:
        locker.commit()
        locker.close()
    rc, out, err = env.wait(p, 240)
    check(rc == 0, "canopy drain exited %d\n--- stderr\n%s", rc, err[-4000:])
    extended = [l for l in err.splitlines() if "heartbeat: extending" in l]
    check(len(extended) >= HOLD // VISIBILITY, "%d heartbeat extensions in a write blocked "
          "%d s: the visibility was not extended", len(extended), HOLD)
    check_queue_empty(env, dlq)
    check_queue_empty(env, in_queue)
    check_exactly_once(env, keys, in_bucket)
    notes = [json.loads(b)["key"] for b in env.receive_all(out_queue, expect=len(keys))]
    check(sorted(notes) == sorted(keys), "%d notifications for %d images: an image was processed "
          "twice or not at all", len(notes), len(keys))
    log("%d images; a chunk blocked %d s with a %d s visibility timeout, %d extensions, "
        "none redelivered", len(keys), HOLD, VISIBILITY, len(extended))


if __name__ == "__main__":
    sys.exit(main("heartbeat", body))
