"""e2e_heartbeat: chunks that take longer than the visibility timeout are
not redelivered while they are in flight: the heartbeat extends their
visibility. The input queue's redrive policy has maxReceiveCount = 1, so a
single redelivery moves a message to the dead-letter queue: after the drain
the dead-letter queue must be empty, every image processed exactly once and
notified exactly once. The chunks are made slow enough (eight 384 x 384 crops
through the detector on the test device) that each stays in flight longer
than the visibility timeout: the test fails if no extension was sent."""
import json
import sys
import time

from e2e_lib import (check, check_exactly_once, check_queue_empty, log, main, s3_event)

VISIBILITY = 2  # the heartbeat extends every max(1, visibility / 3) s


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, dlq = env.queue("in", visibility=VISIBILITY, max_receive=1)
    out_queue, _ = env.queue("out", dlq=False)
    env.create_db()
    keys = env.queue_crops(in_bucket, in_queue, "hb/img-%03d.png", 24,
                           sizes=((384, 384),))
    # The models on the OpenCL engine (slow on a CPU device): the run must
    # outlast several visibility timeouts for the heartbeat to be needed; the
    # oneDNN backend that auto picks on a CPU finishes in a few seconds.
    cfg = env.config(in_queue, out_bucket, out_queue, "out/", batch_size=8, visibility=VISIBILITY,
                     idle_exit=2, extra={"device": {"backend": "opencl"}})
    t0 = time.monotonic()
    rc, out, err = env.run(["drain", "-c", cfg, "--set", "log.level=debug"], "drain",
                           timeout=300, expect_rc=0)
    took = time.monotonic() - t0
    check(took >= 3 * VISIBILITY, "the drain took %.1f s only: the heartbeat was not needed, "
          "the test did not test", took)
    extended = [l for l in err.splitlines() if "heartbeat: extending" in l]
    check(extended, "no heartbeat extension was sent in a %.1f s drain", took)
    check_queue_empty(env, dlq)
    check_queue_empty(env, in_queue)
    check_exactly_once(env, keys, in_bucket)
    notes = [json.loads(b)["key"] for b in env.receive_all(out_queue, expect=len(keys))]
    check(sorted(notes) == sorted(keys), "%d notifications for %d images: an image was processed "
          "twice or not at all", len(notes), len(keys))
    log("%d images in %.1f s with a %d s visibility timeout, %d extensions, none redelivered",
        len(keys), took, VISIBILITY, len(extended))


if __name__ == "__main__":
    sys.exit(main("heartbeat", body))
