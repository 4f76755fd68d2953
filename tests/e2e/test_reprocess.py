"""e2e_reprocess: `canopy reprocess s3://bucket/prefix`.

- --dry-run lists one `process s3://b/k` line per .png under the prefix (not
  the other objects, not the objects outside the prefix) and processes
  nothing (no row, no output);
- a reprocess killed after its first commit resumes: a dry run then shows
  `skip` exactly for the committed objects and `process` for the rest, and a
  rerun processes only those (the committed rows keep their processed_at);
- a re-uploaded object (new etag) is processed again, the others skipped;
- --force reprocesses everything (new processed_at, still one row per
  object version)."""
import re
import signal
import sys

from e2e_lib import (check, check_exactly_once, log, main, make_crops, wait_until)

LINE = re.compile(r"^(process|skip)\s+s3://([^/]+)/(.+)$")


def dry_run(env, cfg, url, tag):
    """{key: 'process' | 'skip'} from a dry run's output."""
    rc, out, err = env.run(["reprocess", url, "-c", cfg, "--dry-run"], tag, timeout=120,
                           expect_rc=0)
    plan = {}
    for line in out.splitlines():
        m = LINE.match(line.strip())
        if m:
            check(m.group(3) not in plan, "%s listed twice", m.group(3))
            plan[m.group(3)] = m.group(1)
    return plan


def body(env):
    bucket, out_bucket = env.bucket("in"), env.bucket("out")
    env.create_db()
    keys = []
    for i, (w, h, data) in enumerate(make_crops(env.source_dir, 40)):
        key = "survey/2026/%s/tile-%03d.png" % ("north" if i % 2 else "south", i)
        env.put(bucket, key, data)
        keys.append(key)
    env.put(bucket, "survey/2026/README.txt", b"not an image")
    env.put(bucket, "survey/2026/north/notes.json", b"{}")
    env.put(bucket, "other/tile-000.png", make_crops(env.source_dir, 1)[0][2])
    url = "s3://%s/survey/" % bucket
    cfg = env.config("", out_bucket, "", "out/", batch_size=4, idle_exit=2)

    plan = dry_run(env, cfg, url, "dry-1")
    check(set(plan) == set(keys), "dry run lists %d objects, expected the %d PNGs; extra %s",
          len(plan), len(keys), sorted(set(plan) - set(keys))[:5])
    check(set(plan.values()) == {"process"}, "dry run on an empty database skips something")
    check(not env.images(), "the dry run wrote rows")
    check(not env.list_keys(out_bucket), "the dry run wrote outputs")

    # Interrupted: kill -9 after the first committed chunk.
    p = env.start(["reprocess", url, "-c", cfg], "killed")
    wait_until(lambda: p.poll() is not None or env.ok_keys(), 120, "the first commit",
               interval=0.05)
    check(p.poll() is None, "reprocess finished (%s) before it could be interrupted",
          p.returncode)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = set(env.ok_keys())
    log("interrupted after %d of %d images", len(done), len(keys))
    check(0 < len(done) < len(keys), "nothing left to resume")

    plan = dry_run(env, cfg, url, "dry-2")
    check(set(plan) == set(keys), "second dry run lists %d objects", len(plan))
    skipped = {k for k, v in plan.items() if v == "skip"}
    check(skipped == done, "dry run skips %d objects, %d were committed; differing: %s",
          len(skipped), len(done), sorted(skipped ^ done)[:5])

    before = {r["key"]: r["processed_at"] for r in env.images()}
    env.run(["reprocess", url, "-c", cfg], "resume", timeout=300, expect_rc=0)
    check_exactly_once(env, keys, bucket)
    for r in env.images():
        if r["key"] in before:
            check(r["processed_at"] == before[r["key"]], "%s was processed again on resume",
                  r["key"])
    for k in keys[:5]:
        env.s3.head_object(Bucket=out_bucket, Key="out/" + k[:-4] + ".trees.json")
    plan = dry_run(env, cfg, url, "dry-3")
    check(set(plan.values()) == {"skip"} and len(plan) == len(keys),
          "after the resume the dry run still processes %s",
          sorted(k for k, v in plan.items() if v != "skip")[:5])

    # A new version of one object is processed; the rest skipped.
    changed = keys[3]
    env.put(bucket, changed, make_crops(env.source_dir, 50)[49][2])
    plan = dry_run(env, cfg, url, "dry-4")
    check([k for k, v in plan.items() if v == "process"] == [changed],
          "after re-uploading %s the dry run processes %s", changed,
          [k for k, v in plan.items() if v == "process"])

    before = {r["key"]: r["processed_at"] for r in env.images()}
    env.run(["reprocess", url, "-c", cfg, "--force"], "force", timeout=300, expect_rc=0)
    rows = env.images()
    check(len(rows) == len(keys) + 1, "%d rows after --force, expected %d (one per object "
          "version)", len(rows), len(keys) + 1)
    latest = {}
    for r in rows:
        latest[r["key"]] = max(latest.get(r["key"], r["processed_at"]), r["processed_at"])
    stale = [k for k in keys if latest[k] <= before.get(k, latest[k]) and k != changed]
    check(not stale, "--force did not reprocess %s", stale[:5])


if __name__ == "__main__":
    sys.exit(main("reprocess", body))
