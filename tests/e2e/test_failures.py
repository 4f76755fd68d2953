"""e2e_failures: corrupt, truncated, empty, non-PNG, oversized (pixels, and
bytes) and missing objects (and an unparsable message) mixed into one chunk with good images:
a failed row with the reason for each bad object, the good ones processed,
exit code 3, and the queue empty (permanent failures are acknowledged)."""
import re
import struct
import sys
import zlib

from e2e_lib import (check, check_outputs, check_queue_empty, crop_png, legacy_message, log,
                     main, make_crops, png_chunk, PNG_SIG, s3_event)


def corrupt_png(good):
    """A PNG whose IHDR is valid but whose IDAT holds garbage (with a correct
    CRC, so the failure comes from the zlib stream, not the chunk check)."""
    ihdr = good[8:8 + 25]
    junk = bytes((i * 97 + 13) & 0xFF for i in range(4000))
    return PNG_SIG + ihdr + png_chunk(b"IDAT", b"\x78\x9c" + junk) + png_chunk(b"IEND", b"")


def short_rows_png(w, h):
    """A valid-looking PNG whose IDAT holds fewer rows than IHDR promises."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(w * 3) for _ in range(h // 3))
    return (PNG_SIG + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) +
            png_chunk(b"IEND", b""))


# Bad objects: name -> (bytes maker, pattern the error must match).
REASONS = {
    "empty": r"empty|zero|0 bytes|no data",
    "truncated": r"truncat|short|end of (file|data|stream)|eof|incomplete|premature",
    "short-rows": r"truncat|short|end of|eof|incomplete|premature|not enough|too few|missing",
    "corrupt": r"corrupt|invalid|zlib|inflate|decompress|bad|crc|damaged|error",
    "not-png": r"not a png|png signature|signature|not png",
    "oversized": r"max_pixels|pixels|too (large|big)|limit|exceed",
    "missing": r"nosuchkey|not found|404|missing|does not exist|no such",
    "too-many-bytes": r"max_object_bytes|bytes|too (large|big)|size|limit|exceed",
}


def padded_png(good, extra):
    """A small image (few pixels) in a large file: a big ancillary text chunk
    after IHDR makes the object exceed [input] max_object_bytes."""
    text = b"Comment\x00" + b"x" * extra
    return good[:33] + png_chunk(b"tEXt", text) + good[33:]


def body(env):
    in_bucket, out_bucket = env.bucket("in"), env.bucket("out")
    in_queue, dlq = env.queue("in", visibility=10)
    env.create_db()
    good = make_crops(env.source_dir, 14)  # at most 160x96 = 15360 pixels
    big = crop_png(env.source_dir, "OSBS_029", 100, 100, 200, 150)  # 30000 pixels
    sample = good[0][2]
    bad = {
        "empty": b"",
        "truncated": sample[:len(sample) // 2],
        "short-rows": short_rows_png(120, 90),
        "corrupt": corrupt_png(sample),
        "not-png": b"GIF89a this is not a PNG at all\x00\x01\x02" * 20,
        "oversized": big,
        "too-many-bytes": padded_png(sample, 300000),
    }
    # Neutral key names, so that an error text quoting the key proves nothing.
    names = list(bad) + ["missing"]
    bkeys = {n: "mixed/obj-%02d.png" % (50 + i) for i, n in enumerate(names)}
    messages, good_keys, sizes = [], [], {}
    for i, (w, h, data) in enumerate(good):
        key = "mixed/good-%02d.png" % i
        etag = env.put(in_bucket, key, data)
        good_keys.append(key)
        sizes[key] = (w, h)
        messages.append(s3_event(in_bucket, key, len(data), etag))
        if i % 3 == 1:
            name = list(bad)[i // 3] if i // 3 < len(bad) else None
            if name:
                bkey = bkeys[name]
                betag = env.put(in_bucket, bkey, bad[name])
                messages.append(s3_event(in_bucket, bkey, len(bad[name]), betag))
    for name in bad:
        bkey = bkeys[name]
        if not any(bkey in m for m in messages):
            betag = env.put(in_bucket, bkey, bad[name])
            messages.append(legacy_message(in_bucket, bkey, "id-" + name, "scan-x"))
    messages.insert(3, legacy_message(in_bucket, bkeys["missing"], "id-missing", "scan-x"))
    messages.insert(9, "{this is not json")
    bad_keys = [bkeys[n] for n in names]
    env.send(in_queue, messages)
    log("%d messages: %d good images, %d bad objects, 1 unparsable message", len(messages),
        len(good_keys), len(bad_keys))

    # One chunk holds everything; 20000 pixels is above the good crops only.
    # 200000 bytes is above the padded object only (the crops are < 60 KB).
    check(max(len(d) for _, _, d in good) < 200000 and len(big) < 200000, "inputs too big")
    cfg = env.config(in_queue, out_bucket, "", "out/", batch_size=32, idle_exit=3, detector=False,
                     extra={"limits": {"max_pixels": 20000},
                            "input": {"max_object_bytes": 200000}})
    rc, out, err = env.run(["drain", "-c", cfg], "drain", timeout=240, expect_rc=3)

    rows = env.images()
    by_key = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r)
    for key in good_keys:
        rs = by_key.get(key, [])
        check(len(rs) == 1 and rs[0]["status"] == "ok", "%s: rows %s", key,
              [(r["status"], r["error"]) for r in rs])
        check_outputs(env, rs[0], out_bucket, "out/", *sizes[key], full=False)
    errors = []
    for key in bad_keys:
        rs = by_key.get(key, [])
        check(len(rs) == 1, "%s: %d rows, expected one failed row", key, len(rs))
        r = rs[0]
        errors.append("%s (%s): %s" % (key, names[bad_keys.index(key)], r["error"]))
        check(r["status"] == "failed", "%s: status %s", key, r["status"])
        check(r["error"] and r["bucket"] == in_bucket, "%s: no error text", key)
        name = names[bad_keys.index(key)]
        reason = r["error"].replace(key, "").replace(in_bucket, "")
        check(re.search(REASONS[name], reason, re.I), "%s (%s): error %r does not give the reason",
              key, name, r["error"])
        for col in ("mask_key", "overlay_key", "trees_key", "tree_count"):
            check(r[col] is None, "%s: failed row has %s = %r", key, col, r[col])
    log("failure reasons:\n  %s", "\n  ".join(errors))
    check(not any(env.list_keys(out_bucket, "out/" + k[:-4]) for k in bad_keys), "outputs written for a bad object")
    failed = [r for r in rows if r["status"] == "failed"]
    check(len(failed) >= len(bad_keys), "%d failed rows, expected at least %d", len(failed),
          len(bad_keys))
    check_queue_empty(env, in_queue)
    check_queue_empty(env, dlq)


if __name__ == "__main__":
    sys.exit(main("failures", body))
