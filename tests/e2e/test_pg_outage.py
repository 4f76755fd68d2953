"""e2e_pg_outage: PostgreSQL stopped during a run (scripts/stack.sh pg-stop,
pg-start a few seconds later).

While the server is down the drainer is frozen (SIGSTOP) and the invariant
is checked: every image has a committed row or its message is still in the
queue (committed + queued >= images), i.e. no message was deleted without
its commit. Then the drainer continues (SIGCONT); if it gave up during the
outage, it is run again. In the end every image is in `images` exactly once
and the queue is empty. Runs alone (RUN_SERIAL): it stops the shared server.
"""
import signal
import sys
import time

from e2e_lib import (check, check_exactly_once, check_queue_empty, log, main, wait_until)

VISIBILITY = 6
OUTAGE_S = 4


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, dlq = env.queue("in", visibility=VISIBILITY, max_receive=50)
    env.create_db()
    # Larger crops (the detector's time grows with the pixels): the run must
    # still be busy when the server goes down, on faster machines too.
    keys = env.queue_crops(in_bucket, in_queue, "pg/img-%03d.png", 40,
                           sizes=((256, 256), (224, 288), (288, 224)))
    # idle_exit well above the outage: the same run can finish after the restart.
    cfg = env.config(in_queue, out_bucket, "", "out/", batch_size=4, visibility=VISIBILITY,
                     idle_exit=VISIBILITY + 6)

    p = env.start(["drain", "-c", cfg], "drain")
    wait_until(lambda: p.poll() is not None or sum(env.ok_keys().values()) > 0, 120,
               "the first commit", interval=0.05)
    check(p.poll() is None, "the drainer exited (%s) before the outage", p.returncode)
    restarted = False
    try:
        env.stack("pg-stop")
        log("PostgreSQL stopped")
        time.sleep(OUTAGE_S)  # the outage itself: the drainer must ride it out
        alive = p.poll() is None
        if alive:
            p.send_signal(signal.SIGSTOP)
        vis, inflight, delayed = env.queue_counts(in_queue)
        env.stack("pg-start")
        restarted = True
        log("PostgreSQL started again")
        done = sum(env.ok_keys().values())
        log("during the outage: %d committed, queue %d visible + %d in flight + %d delayed; "
            "drainer %s", done, vis, inflight, delayed, "alive" if alive else
            "exited %s" % p.returncode)
        check(done + vis + inflight + delayed >= len(keys),
              "messages deleted without their commit: %d committed + %d queued < %d images",
              done, vis + inflight + delayed, len(keys))
        check(done < len(keys), "all images were committed before the outage began")
    finally:
        if not restarted:
            env.stack("pg-start")
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)

    rc, out, err = env.wait(p, 400)
    if rc != 0:
        # Giving up on a long outage is allowed; losing work is not.
        log("the drainer exited %d around the outage; running it again", rc)
        env.run(["drain", "-c", cfg], "rerun", timeout=400, expect_rc=0)
    check_exactly_once(env, keys, in_bucket)
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)


if __name__ == "__main__":
    sys.exit(main("pg_outage", body))
