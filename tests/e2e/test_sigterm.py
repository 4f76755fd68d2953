"""e2e_sigterm: SIGTERM in the middle of a drain (a spot-instance
interruption): the drainer stops receiving, finishes and acknowledges the
chunks in flight and exits 0 well before the queue is drained; every image
is then either committed or still queued, and a rerun completes the work
with every image exactly once. A drainer idle in a 20 s long poll on the
empty queue stops within seconds of SIGTERM, not at the poll's end."""
import signal
import sys
import time

from e2e_lib import check, check_exactly_once, check_queue_empty, log, main

VISIBILITY = 5


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, dlq = env.queue("in", visibility=VISIBILITY)
    env.create_db()
    keys = env.queue_crops(in_bucket, in_queue, "term/img-%03d.png", 60)
    cfg = env.config(in_queue, out_bucket, "", "out/", batch_size=4, visibility=VISIBILITY,
                     idle_exit=VISIBILITY + 4)

    p = env.start_busy(["drain", "-c", cfg], "drain-term", out_bucket)
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    rc, out, err = env.wait(p, 120)
    log("exit %d %.1f s after SIGTERM", rc, time.monotonic() - t)
    check(rc == 0, "exit code %d after SIGTERM, expected 0\n%s", rc, err[-2000:])
    done = sum(env.ok_keys().values())
    vis, inflight, delayed = env.queue_counts(in_queue)
    log("after SIGTERM: %d committed, queue %d visible + %d in flight", done, vis, inflight)
    check(done > 0, "the chunks in flight were not finished")
    check(done < len(keys), "the drainer did not stop early: all %d images done", done)
    check(done + vis + inflight + delayed >= len(keys),
          "messages deleted without their commit: %d committed + %d queued < %d",
          done, vis + inflight + delayed, len(keys))

    env.run(["drain", "-c", cfg], "rerun", timeout=300, expect_rc=0)
    check_exactly_once(env, keys, in_bucket)
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)

    idle_cfg = env.config(in_queue, out_bucket, "", "out/", wait=20, detector=False,
                          name="idle.ini")
    p = env.start(["drain", "--follow", "-c", idle_cfg], "drain-idle")
    time.sleep(3)
    check(p.poll() is None, "the idle drainer exited (%s) before the signal", p.returncode)
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    rc, out, err = env.wait(p, 60)
    took = time.monotonic() - t
    log("idle drainer: exit %d %.1f s after SIGTERM (long poll 20 s)", rc, took)
    check(rc == 0, "idle drainer: exit code %d after SIGTERM\n%s", rc, err[-2000:])
    check(took < 10, "idle drainer took %.1f s after SIGTERM to stop (its long poll is 20 s)",
          took)
    check("ReceiveMessage" not in err, "the cancelled poll was logged as an error:\n%s",
          err[-2000:])


if __name__ == "__main__":
    sys.exit(main("sigterm", body))
