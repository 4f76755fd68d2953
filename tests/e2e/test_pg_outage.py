"""e2e_pg_outage: PostgreSQL stopped during a run (scripts/stack.sh pg-stop,
pg-start later), under a queue whose redrive policy has maxReceiveCount 5.

Part 1, an outage the drainer rides out: after a first commit the server
stops and a chunk of images arrives; the outage lasts longer than the sum
of the backoffs of a message's five receives ([batch] retry_backoff_seconds
= 1: 1 + 2 + 4 + 8 s, plus up to 2 s of jitter each), so a worker that kept
receiving during it would send those good images to the dead-letter queue
(it did, before the health gate). The health gate must stop intake and keep the chunk in
hand: the drainer stays alive, says intake stopped, no message reaches the
dead-letter queue, and after the restart the same run finishes with exit 0,
every image in `images` exactly once and the queue empty.

Part 2, an outage it gives up on: [batch] outage_exit_seconds = 6 with the
server down: the drainer exits 6 (CNP_EXIT_OUTAGE), deletes nothing, and the
messages it held are back in the queue (not the dead-letter queue); a
second run after the restart finishes them.

Runs alone (RUN_SERIAL): it stops the shared server.
"""
import sys
import time

from e2e_lib import (check, check_exactly_once, check_queue_empty, log, main, wait_until)

VISIBILITY = 6
MAX_RECEIVE = 5
BACKOFF_BASE = 1
# Longer than the four backoffs before a fifth receive (1 + 2 + 4 + 8 s plus
# up to 8 s of jitter) plus five rounds of processing and failed commits (the
# store's own reconnection gives up after about 3 s, and the chunk splits as
# its messages come back at different times): without the gate its images
# reached the dead-letter queue here after 60-100 s.
OUTAGE_S = 150  # the figure


def ride_out(env, in_bucket, out_bucket, in_queue, dlq):
    before = env.queue_crops(in_bucket, in_queue, "pg/pre-%03d.png", 4, sizes=((96, 96),))
    # idle_exit well below the outage: the run must not take a stopped
    # intake for an empty queue.
    cfg = env.config(in_queue, out_bucket, "", "out/", batch_size=10, visibility=VISIBILITY,
                     idle_exit=VISIBILITY + 6,
                     extra={"batch": {"retry_backoff_seconds": BACKOFF_BASE,
                                      "outage_probe_seconds": 4,
                                      "outage_exit_seconds": 600}})
    p = env.start(["drain", "-c", cfg], "drain")
    wait_until(lambda: p.poll() is not None or sum(env.ok_keys().values()) >= len(before), 120,
               "the first images' commit", interval=0.05)
    check(p.poll() is None, "the drainer exited (%s) before the outage", p.returncode)
    restarted = False
    try:
        env.stack("pg-stop")
        # One chunk's worth arrives while the server is down.
        keys = env.queue_crops(in_bucket, in_queue, "pg/img-%03d.png", 10,
                               sizes=((96, 96), (64, 128), (128, 64)))
        log("PostgreSQL stopped for %d s", OUTAGE_S)
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            check(p.poll() is None, "the drainer exited %s during the outage", p.returncode)
            check(env.queue_total(dlq) == 0, "a good image reached the dead-letter queue "
                  "during the outage")
            time.sleep(2)
        vis, inflight, delayed = env.queue_counts(in_queue)
        log("end of the outage: queue %d visible + %d in flight + %d delayed", vis, inflight,
            delayed)
        env.stack("pg-start")
        restarted = True
        log("PostgreSQL started again")
    finally:
        if not restarted:
            env.stack("pg-start")
    rc, out, err = env.wait(p, 400)
    check(rc == 0, "the drainer exited %d after riding out the outage\n%s", rc, err[-3000:])
    check("intake stopped" in err, "the drainer did not stop intake:\n%s", err[-3000:])
    check("intake resumes" in err, "the drainer did not say intake resumed")
    check_exactly_once(env, before + keys, in_bucket)
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)
    return before + keys


def give_up(env, in_bucket, out_bucket, in_queue, dlq, done):
    cfg = env.config(in_queue, out_bucket, "", "out/", batch_size=4, visibility=VISIBILITY,
                     idle_exit=120,
                     extra={"batch": {"retry_backoff_seconds": BACKOFF_BASE,
                                      "outage_probe_seconds": 2,
                                      "outage_exit_seconds": 6}})
    # Connected before the outage; the images arrive while the server is down.
    p = env.start(["drain", "-c", cfg], "giveup")
    wait_until(lambda: p.poll() is not None or "model" in open(
        env.tmp + "/giveup.err").read(), 120, "the drainer's start", interval=0.1)
    time.sleep(5)  # past its run's row in the database: now waiting for messages
    check(p.poll() is None, "the drainer exited (%s) at start", p.returncode)
    restarted = False
    try:
        env.stack("pg-stop")
        keys = env.queue_crops(in_bucket, in_queue, "gu/img-%03d.png", 4,
                               sizes=((96, 96),))
        rc, out, err = env.wait(p, 240)
        check(rc == 6, "exit %d after the outage outlasted outage_exit_seconds, expected 6\n%s",
              rc, err[-3000:])
        check("outage_exit_seconds" in err, "the exit does not name outage_exit_seconds")
        check(env.queue_total(dlq) == 0, "given-up messages went to the dead-letter queue")
        check(env.queue_total(in_queue) == len(keys), "messages in the queue: %d, expected %d",
              env.queue_total(in_queue), len(keys))
        env.stack("pg-start")
        restarted = True
    finally:
        if not restarted:
            env.stack("pg-start")
    cfg2 = env.config(in_queue, out_bucket, "", "out/", batch_size=4, visibility=VISIBILITY,
                      idle_exit=VISIBILITY + 4, name="rerun.ini")
    env.run(["drain", "-c", cfg2], "rerun", timeout=400, expect_rc=0)
    check_exactly_once(env, done + keys, in_bucket)
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, dlq = env.queue("in", visibility=VISIBILITY, max_receive=MAX_RECEIVE)
    env.create_db()
    done = ride_out(env, in_bucket, out_bucket, in_queue, dlq)
    give_up(env, in_bucket, out_bucket, in_queue, dlq, done)


if __name__ == "__main__":
    sys.exit(main("pg_outage", body))
