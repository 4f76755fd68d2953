"""e2e_kill: `kill -9` of the drainer in the middle of a chunk, then a rerun
after the visibility timeout: every image exactly once in `images`, nothing
left in the queue (nor in its dead-letter queue)."""
import signal
import sys

from e2e_lib import check, check_exactly_once, check_queue_empty, log, main

VISIBILITY = 5


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, dlq = env.queue("in", visibility=VISIBILITY, max_receive=5)
    env.create_db()
    keys = env.queue_crops(in_bucket, in_queue, "kill/img-%03d.png", 48)
    # Small chunks, detector on: the kill lands while chunks are in flight.
    cfg = env.config(in_queue, out_bucket, "", "out/", batch_size=4, visibility=VISIBILITY,
                     idle_exit=VISIBILITY + 4)

    p = env.start_busy(["drain", "-c", cfg], "drain-killed", out_bucket)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = sum(env.ok_keys().values())
    vis, inflight, _ = env.queue_counts(in_queue)
    log("killed: %d images committed, queue: %d visible, %d in flight", done, vis, inflight)
    check(done < len(keys), "everything was committed before the kill")
    check(vis + inflight + done >= len(keys),
          "a message was deleted without its commit: %d committed + %d queued < %d",
          done, vis + inflight, len(keys))

    # The rerun waits for the killed drainer's messages to become visible
    # again (idle_exit_seconds > visibility timeout) and drains them.
    env.run(["drain", "-c", cfg], "rerun", timeout=300, expect_rc=0)
    check_exactly_once(env, keys, in_bucket)
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)
    failed = env.query("SELECT count(*) FROM images WHERE status <> 'ok'")[0][0]
    check(failed == 0, "%d failed rows", failed)


if __name__ == "__main__":
    sys.exit(main("kill", body))
