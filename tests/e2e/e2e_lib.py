"""Shared helpers of the end-to-end tests (tests/e2e/test_*.py).

Each test talks to the local stack (scripts/stack.sh: moto for S3/SQS with
signature checking, PostgreSQL 15) over real connections, creates its own
buckets, queues and database under a random suffix, writes a configuration
file into a temporary directory and runs the real `canopy` binary.

Without the stack's environment (CANOPY_TEST_STACK) a test exits 77 (skipped)
unless CANOPY_TEST_REQUIRE_STACK=1, in which case it fails.

Images are small crops of the NEON orthophotos in tests/data/neon, decoded
and re-encoded here with zlib + struct (no imaging library needed), so the
test venv needs only boto3 and psycopg2.
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import uuid
import zlib

SKIP = 77

# --------------------------------------------------------------------------
# PNG encoding and decoding (zlib + struct)
# --------------------------------------------------------------------------

PNG_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_chunk(kind, data):
    """One PNG chunk: length, type, data, CRC over type and data."""
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_encode(width, height, pixels, color_type=2, bit_depth=8, level=6):
    """Encodes raw rows (no filter bytes) as a PNG; every row filter 0."""
    stride = (width * _CHANNELS[color_type] * bit_depth + 7) // 8
    assert len(pixels) == stride * height, "pixel buffer does not match the size"
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        raw += pixels[y * stride:(y + 1) * stride]
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (PNG_SIG + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(bytes(raw), level)) + png_chunk(b"IEND", b""))


def _unfilter(raw, width, height, bpp, stride):
    out = bytearray(stride * height)
    prev = bytearray(stride)
    pos = 0
    for y in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                if pa <= pb and pa <= pc:
                    pred = a
                elif pb <= pc:
                    pred = b
                else:
                    pred = c
                line[i] = (line[i] + pred) & 0xFF
        elif ftype != 0:
            raise ValueError("bad PNG filter type %d in row %d" % (ftype, y))
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return bytes(out)


def png_decode(data):
    """Decodes a non-interlaced PNG, checking every CRC and the data length.

    Returns dict(width, height, bit_depth, color_type, pixels) where pixels
    holds the unfiltered rows. Raises ValueError on anything malformed."""
    if data[:8] != PNG_SIG:
        raise ValueError("not a PNG (signature)")
    pos, ihdr, idat = 8, None, bytearray()
    seen_end = False
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated chunk header")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise ValueError("truncated chunk %r" % kind)
        crc, = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if crc != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise ValueError("CRC mismatch in chunk %r" % kind)
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            seen_end = True
            break
        pos += 12 + length
    if ihdr is None or not seen_end:
        raise ValueError("missing IHDR or IEND")
    width, height, bit_depth, color_type, _, _, interlace = ihdr
    if interlace:
        raise ValueError("interlaced PNGs are not supported by this helper")
    channels = _CHANNELS[color_type]
    stride = (width * channels * bit_depth + 7) // 8
    bpp = max(1, channels * bit_depth // 8)
    raw = zlib.decompress(bytes(idat))
    if len(raw) != height * (stride + 1):
        raise ValueError("image data is %d bytes, expected %d" % (len(raw), height * (stride + 1)))
    return {"width": width, "height": height, "bit_depth": bit_depth,
            "color_type": color_type, "pixels": _unfilter(raw, width, height, bpp, stride)}


def png_size(data):
    """(width, height) from the IHDR of PNG bytes."""
    if data[:8] != PNG_SIG or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------
# Test images: crops of the NEON orthophotos
# --------------------------------------------------------------------------

NEON_NAMES = ("OSBS_029", "SOAP_061", "YELL_541000_west")
_neon_cache = {}


def neon_dir(source_dir):
    """CANOPY_NEON_DIR, else tests/data/neon in the source tree (as in
    tests/CMakeLists.txt)."""
    return os.environ.get("CANOPY_NEON_DIR") or os.path.join(
        os.path.abspath(source_dir), "tests", "data", "neon")


def neon_rgb(source_dir, name):
    """(width, height, RGB bytes) of a NEON image, decoded once per machine.

    Decoding in pure Python takes seconds, so the result is cached in
    CANOPY_E2E_CACHE (default: a directory under the system temp dir)."""
    if name in _neon_cache:
        return _neon_cache[name]
    path = os.path.join(neon_dir(source_dir), name + ".png")
    data = open(path, "rb").read()
    cache_dir = os.environ.get("CANOPY_E2E_CACHE",
                               os.path.join(tempfile.gettempdir(), "canopy-e2e-cache-%d" % os.getuid()))
    os.makedirs(cache_dir, exist_ok=True)
    cache = os.path.join(cache_dir, "%s-%08x.rgb" % (name, zlib.crc32(data) & 0xFFFFFFFF))
    width, height = png_size(data)
    if os.path.exists(cache) and os.path.getsize(cache) == width * height * 3:
        rgb = open(cache, "rb").read()
    else:
        img = png_decode(data)
        if img["bit_depth"] != 8 or img["color_type"] not in (2, 6):
            raise ValueError("%s: expected 8-bit RGB or RGBA" % path)
        rgb = img["pixels"]
        if img["color_type"] == 6:
            rgb = b"".join(rgb[i:i + 3] for i in range(0, len(rgb), 4))
        tmp = "%s.%d.tmp" % (cache, os.getpid())
        with open(tmp, "wb") as f:
            f.write(rgb)
        os.replace(tmp, cache)
    _neon_cache[name] = (width, height, rgb)
    return _neon_cache[name]


def neon_png(source_dir, name):
    """The original NEON PNG file's bytes."""
    return open(os.path.join(neon_dir(source_dir), name + ".png"), "rb").read()


def crop_png(source_dir, name, x, y, w, h):
    """PNG bytes of the w x h crop at (x, y) of a NEON image."""
    width, height, rgb = neon_rgb(source_dir, name)
    assert x + w <= width and y + h <= height, "crop outside the image"
    rows = b"".join(rgb[((y + r) * width + x) * 3:((y + r) * width + x + w) * 3] for r in range(h))
    return png_encode(w, h, rows, level=1)


def make_crops(source_dir, count, sizes=((96, 96), (64, 128), (128, 64), (112, 80))):
    """`count` distinct crops at varying offsets and sizes of the two 400x400
    NEON images: a list of (w, h, png bytes)."""
    out = []
    i = 0
    while len(out) < count:
        name = NEON_NAMES[i % 2]
        w, h = sizes[i % len(sizes)]
        width, height, _ = neon_rgb(source_dir, name)
        k = i // 2
        x = (k * 37) % (width - w + 1)
        y = ((k * 53) // 3 + (k // 7) * 11) % (height - h + 1)
        out.append((w, h, crop_png(source_dir, name, x, y, w, h)))
        i += 1
    return out


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------

def s3_event(bucket, key, size=None, etag=None, event="ObjectCreated:Put"):
    """An S3 event notification body for one object (key URL-encoded like AWS)."""
    obj = {"key": urllib.parse.quote_plus(key, safe="/"), "sequencer": "0055AED6DCD90281E5"}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag.strip('"')
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T08:00:00.000Z", "eventName": event,
        "userIdentity": {"principalId": "AWS:TEST"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "TEST", "x-amz-id-2": "TEST"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "canopy-e2e",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "TEST"},
                          "arn": "arn:aws:s3:::" + bucket},
               "object": obj}}]})


def sns_wrap(body):
    """An SNS notification envelope around a message body (raw delivery off)."""
    return json.dumps({
        "Type": "Notification", "MessageId": str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:canopy-uploads",
        "Subject": "Amazon S3 Notification", "Message": body,
        "Timestamp": "2026-11-22T08:00:00.000Z", "SignatureVersion": "1",
        "Signature": "EXAMPLE", "SigningCertURL": "https://example.invalid/cert.pem",
        "UnsubscribeURL": "https://example.invalid/unsubscribe"})


def s3_test_event(bucket):
    return json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent",
                       "Time": "2026-11-22T08:00:00.000Z", "Bucket": bucket,
                       "RequestId": "TEST", "HostId": "TEST"})


def legacy_message(bucket, key, image_id, scan_id=None, address_id=None, tree_types=None):
    """The earlier system's message."""
    msg = {"image_id": image_id, "bucket": bucket, "key": key}
    if scan_id is not None:
        msg["scan_id"] = scan_id
    if address_id is not None:
        msg["address_id"] = address_id
    if tree_types is not None:
        msg["tree_types"] = tree_types
    return json.dumps(msg)


# --------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------

class TestFailure(Exception):
    pass


def check(cond, msg, *args):
    if not cond:
        raise TestFailure(msg % args if args else msg)


def log(msg, *args):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg % args if args else msg))
    sys.stdout.flush()


def wait_until(pred, timeout, what, interval=0.1):
    """Polls pred() until it returns a true value (returned), or fails after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def norm_etag(etag):
    return etag.strip('"') if etag else etag


def stem(key):
    """The key without its extension (directories kept)."""
    base = key.rsplit("/", 1)
    name = base[-1]
    if "." in name:
        name = name[:name.rfind(".")]
    return "/".join(base[:-1] + [name])


# --------------------------------------------------------------------------
# The test environment
# --------------------------------------------------------------------------

class Env:
    """One test's resources on the local stack, cleaned up by close()."""

    def __init__(self, name, canopy, source_dir, timeout_scale=1.0):
        import boto3
        from botocore.config import Config
        import psycopg2
        self.psycopg2 = psycopg2
        self.name = name
        self.canopy = canopy
        self.source_dir = source_dir
        self.scale = timeout_scale
        self.suffix = uuid.uuid4().hex[:10]
        self.tmp = tempfile.mkdtemp(prefix="canopy-e2e-%s-" % name)
        cfg = Config(retries={"max_attempts": 3}, connect_timeout=10, read_timeout=60,
                     max_pool_connections=32)
        self.s3 = boto3.client("s3", config=cfg)
        self.sqs = boto3.client("sqs", config=cfg)
        self.buckets, self.queues, self.procs = [], [], []
        self.dbname = None
        self._conn = None
        self.logs = []

    # ---- S3 and SQS --------------------------------------------------------

    def bucket(self, role):
        name = ("e2e-%s-%s-%s" % (self.name, role, self.suffix)).replace("_", "-")[:63]
        self.s3.create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def queue(self, role, visibility=10, max_receive=5, dlq=True):
        """A standard queue (and its dead-letter queue): returns (url, dlq url)."""
        base = ("e2e-%s-%s-%s" % (self.name, role, self.suffix))[:70]
        dlq_url = None
        attrs = {"VisibilityTimeout": str(visibility)}
        if dlq:
            dlq_url = self.sqs.create_queue(QueueName=base + "-dlq")["QueueUrl"]
            self.queues.append(dlq_url)
            arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"]
            attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn,
                                                 "maxReceiveCount": str(max_receive)})
        url = self.sqs.create_queue(QueueName=base, Attributes=attrs)["QueueUrl"]
        self.queues.append(url)
        return url, dlq_url

    def put(self, bucket, key, data, metadata=None):
        """Uploads an object; returns its ETag without quotes."""
        r = self.s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata or {})
        return norm_etag(r["ETag"])

    def send(self, url, bodies):
        """Sends message bodies in batches of 10."""
        for i in range(0, len(bodies), 10):
            entries = [{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i:i + 10])]
            r = self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
            check(not r.get("Failed"), "SendMessageBatch failed: %s", r.get("Failed"))

    def queue_crops(self, bucket, queue, key_format, count, sizes=None):
        """Uploads `count` NEON crops as key_format % i and sends an S3 event
        for each to the queue; returns the keys."""
        keys, messages = [], []
        crops = make_crops(self.source_dir, count, **({"sizes": sizes} if sizes else {}))
        for i, (_, _, data) in enumerate(crops):
            key = key_format % i
            etag = self.put(bucket, key, data)
            keys.append(key)
            messages.append(s3_event(bucket, key, len(data), etag))
        self.send(queue, messages)
        return keys

    def queue_counts(self, url):
        """(visible, in flight, delayed) messages of a queue."""
        a = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return (int(a["ApproximateNumberOfMessages"]),
                int(a["ApproximateNumberOfMessagesNotVisible"]),
                int(a.get("ApproximateNumberOfMessagesDelayed", 0)))

    def queue_total(self, url):
        return sum(self.queue_counts(url))

    def receive_all(self, url, expect=None, timeout=20):
        """Receives and deletes every message of a queue; returns the bodies.

        Stops when `expect` bodies were received, or (expect None) when a
        receive comes back empty."""
        bodies = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                         VisibilityTimeout=60)
            msgs = r.get("Messages", [])
            if not msgs:
                if expect is None or len(bodies) >= expect:
                    break
                continue
            bodies += [m["Body"] for m in msgs]
            self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
        return bodies

    def list_keys(self, bucket, prefix=""):
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    # ---- PostgreSQL --------------------------------------------------------

    def create_db(self):
        self.dbname = "e2e_%s_%s" % (self.name, self.suffix)
        conn = self.psycopg2.connect(dbname=os.environ.get("PGDATABASE", "postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute('CREATE DATABASE "%s"' % self.dbname)
        conn.close()
        return self.conninfo()

    def conninfo(self):
        return "host=%s port=%s user=%s dbname=%s connect_timeout=5" % (
            os.environ.get("PGHOST", "127.0.0.1"), os.environ.get("PGPORT", "5432"),
            os.environ.get("PGUSER", "canopy"), self.dbname)

    def query(self, sql, args=None):
        """Rows of a query on the test database (autocommit; after a lost
        connection, e.g. a restarted server, it connects again once)."""
        for attempt in (1, 2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self.psycopg2.connect(self.conninfo())
                    self._conn.autocommit = True
                with self._conn.cursor() as cur:
                    cur.execute(sql, args)
                    return cur.fetchall() if cur.description else []
            except (self.psycopg2.OperationalError, self.psycopg2.InterfaceError):
                try:
                    self._conn.close()
                except Exception:
                    pass
                self._conn = None
                if attempt == 2:
                    raise

    def table_exists(self, name):
        return bool(self.query("SELECT to_regclass(%s)", (name,))[0][0])

    def images(self, where="TRUE", args=None):
        """images rows as dicts."""
        if not self.table_exists("images"):
            return []
        cols = ("id", "bucket", "key", "etag", "model_version", "image_id", "scan_id",
                "address_id", "tree_types", "width", "height", "threshold", "canopy_cover",
                "tree_count", "mask_key", "overlay_key", "trees_key", "status", "error",
                "run_id", "processed_at")
        rows = self.query("SELECT %s FROM images WHERE %s ORDER BY id" % (", ".join(cols), where),
                          args)
        return [dict(zip(cols, r)) for r in rows]

    def trees_of(self, image_ref):
        return self.query("SELECT x, y, radius, score FROM trees WHERE image_ref = %s ORDER BY idx",
                          (image_ref,))

    def all_trees(self):
        """{image_ref: [(x, y, radius, score), ...] in idx order}."""
        out = {}
        for ref, x, y, r, score in self.query(
                "SELECT image_ref, x, y, radius, score FROM trees ORDER BY image_ref, idx"):
            out.setdefault(ref, []).append((x, y, r, score))
        return out

    def ok_keys(self):
        """{key: number of ok rows} of the images table."""
        if not self.table_exists("images"):
            return {}
        return dict(self.query("SELECT key, count(*) FROM images WHERE status = 'ok' GROUP BY key"))

    # ---- canopy ------------------------------------------------------------

    def model_path(self):
        """The detector model: CANOPY_E2E_MODEL, else the shipped model, else the
        random test model (the tests check plumbing, not accuracy)."""
        env = os.environ.get("CANOPY_E2E_MODEL")
        if env:
            return env
        for rel in ("models/crown-1.1.cnw", "models/test/random-tiny.cnw"):
            path = os.path.join(self.source_dir, rel)
            if os.path.exists(path):
                return path
        raise TestFailure("no detector model found")

    def write_config(self, sections, name="canopy.ini"):
        """Writes an INI file from {section: {key: value}}; returns its path."""
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            for section, keys in sections.items():
                f.write("[%s]\n" % section)
                for k, v in keys.items():
                    if isinstance(v, bool):
                        v = "true" if v else "false"
                    f.write("%s = %s\n" % (k, v))
                f.write("\n")
        return path

    def config(self, input_queue="", output_bucket="", output_queue="", output_prefix="out/",
               batch_size=8, visibility=10, idle_exit=3, wait=1, detector=True, extra=None,
               name="canopy.ini"):
        sections = {
            "input": {"queue_url": input_queue},
            "output": {"bucket": output_bucket, "prefix": output_prefix,
                       "queue_url": output_queue},
            "batch": {"size": batch_size, "wait_seconds": wait, "visibility_timeout": visibility,
                      "idle_exit_seconds": idle_exit},
            "postgres": {"conninfo": self.conninfo()},
            # tile 256: the engine times its layers on one tile at start-up, which
            # costs ~20 s at the default 1024 on a CPU device; the NEON originals
            # are then processed in tiles.
            "detector": {"enabled": detector, "model": self.model_path(), "tile": 256},
            "log": {"progress": "off"},
        }
        for section, keys in (extra or {}).items():
            sections.setdefault(section, {}).update(keys)
        return self.write_config(sections, name)

    def start(self, args, tag, env=None):
        """Starts canopy ARGS with stdout and stderr in files (env: variables
        to set on top of the environment); returns the Popen."""
        out = open(os.path.join(self.tmp, "%s.out" % tag), "w")
        err = open(os.path.join(self.tmp, "%s.err" % tag), "w")
        log("start %s: canopy %s", tag, " ".join(args))
        p = subprocess.Popen([self.canopy] + list(args), stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL, cwd=self.tmp,
                             env=dict(os.environ, **env) if env else None)
        out.close()
        err.close()
        p.tag = tag
        p.started = time.monotonic()
        self.procs.append(p)
        self.logs.append(tag)
        return p

    def start_busy(self, args, tag, out_bucket, out_prefix="out/"):
        """Starts canopy ARGS and returns once its first output object is in
        the bucket, i.e. it is in the middle of the work (fails if it exited)."""
        p = self.start(args, tag)
        wait_until(lambda: p.poll() is not None or self.list_keys(out_bucket, out_prefix), 120,
                   "the first upload of " + tag, interval=0.05)
        check(p.poll() is None, "canopy %s exited (%s) before its first upload was seen", tag,
              p.returncode)
        return p

    def wait(self, p, timeout):
        """Waits for a started canopy; returns (exit code, stdout, stderr)."""
        try:
            rc = p.wait(timeout=timeout * self.scale)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise TestFailure("canopy %s still running after %.0f s" % (p.tag, timeout * self.scale))
        out = open(os.path.join(self.tmp, "%s.out" % p.tag)).read()
        err = open(os.path.join(self.tmp, "%s.err" % p.tag)).read()
        log("%s exited %d after %.1f s", p.tag, rc, time.monotonic() - p.started)
        return rc, out, err

    def run(self, args, tag, timeout=240, expect_rc=None, env=None):
        rc, out, err = self.wait(self.start(args, tag, env), timeout)
        if expect_rc is not None and rc not in (expect_rc if isinstance(expect_rc, tuple)
                                                else (expect_rc,)):
            raise TestFailure("canopy %s exited %d, expected %s\n--- stdout\n%s\n--- stderr\n%s"
                              % (tag, rc, expect_rc, out[-4000:], err[-4000:]))
        return rc, out, err

    def stack(self, action):
        """scripts/stack.sh pg-stop | pg-start on the test's stack."""
        subprocess.run(["bash", os.environ["CANOPY_STACK"], action], check=True)

    # ---- clean-up ----------------------------------------------------------

    def close(self, failed):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if failed:
            for tag in self.logs:
                for ext in ("out", "err"):
                    path = os.path.join(self.tmp, "%s.%s" % (tag, ext))
                    try:
                        text = open(path).read()
                    except OSError:
                        continue
                    if text.strip():
                        sys.stdout.write("--- canopy %s %s (last 3000 chars)\n%s\n"
                                         % (tag, ext, text[-3000:]))
        keep = os.environ.get("CANOPY_E2E_KEEP") == "1"
        if keep:
            log("kept: %s, database %s", self.tmp, self.dbname)
            return
        for url in self.queues:
            try:
                self.sqs.delete_queue(QueueUrl=url)
            except Exception:
                pass
        for b in self.buckets:
            try:
                keys = self.list_keys(b)
                for i in range(0, len(keys), 1000):
                    self.s3.delete_objects(Bucket=b, Delete={
                        "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
                self.s3.delete_bucket(Bucket=b)
            except Exception:
                pass
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        if self.dbname:
            try:
                conn = self.psycopg2.connect(dbname=os.environ.get("PGDATABASE", "postgres"))
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.dbname)
                conn.close()
            except Exception:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# Checks shared by several tests
# --------------------------------------------------------------------------

def check_exactly_once(env, keys, bucket=None):
    """Every key has exactly one images row, status ok; no other ok rows."""
    counts = env.ok_keys()
    missing = [k for k in keys if counts.get(k, 0) == 0]
    dup = {k: n for k, n in counts.items() if n != 1}
    extra = set(counts) - set(keys)
    check(not missing, "%d images have no ok row, e.g. %s", len(missing), missing[:5])
    check(not dup, "images with more than one ok row: %s", list(dup.items())[:5])
    check(not extra, "unexpected ok rows: %s", sorted(extra)[:5])
    if bucket is not None:
        rows = env.query("SELECT count(*) FROM images WHERE status = 'ok' AND bucket <> %s",
                         (bucket,))
        check(rows[0][0] == 0, "ok rows of another bucket")
    dup_trees = env.query("SELECT image_ref, idx, count(*) FROM trees GROUP BY 1, 2 "
                          "HAVING count(*) > 1 LIMIT 5")
    check(not dup_trees, "duplicate trees rows: %s", dup_trees)


def check_queue_empty(env, url, timeout=10):
    """The queue holds no message at all (visible, in flight or delayed)."""
    counts = None

    def empty():
        nonlocal counts
        counts = env.queue_counts(url)
        return sum(counts) == 0
    try:
        wait_until(empty, timeout, "the queue to be empty", interval=0.5)
    except TestFailure:
        raise TestFailure("queue %s not empty: visible %d, in flight %d, delayed %d"
                          % (url.rsplit("/", 1)[-1], *counts))


def check_outputs(env, row, out_bucket, out_prefix, width, height, full=True, trees=None):
    """The three outputs of an ok images row exist, agree with the row and its
    trees rows (`trees`: from env.all_trees(), else queried) and carry the
    source's metadata; the mask decodes to the input's size, the overlay too
    when `full` (else its header is checked: decoding in Python is slow)."""
    s = out_prefix + stem(row["key"])
    expect = {"mask_key": s + ".mask.png", "overlay_key": s + ".overlay.png",
              "trees_key": s + ".trees.json"}
    if row["model_version"] == "none":
        # Without a detector there is nothing to draw: no overlay is written.
        check(row["overlay_key"] is None, "%s: overlay_key %r without a detector", row["key"],
              row["overlay_key"])
        try:
            env.s3.head_object(Bucket=out_bucket, Key=expect["overlay_key"])
            raise TestFailure("%s: an overlay was written without a detector" % row["key"])
        except env.s3.exceptions.ClientError:
            pass
        del expect["overlay_key"]
    for col, key in expect.items():
        check(row[col] == key, "%s: %s is %r, expected %r", row["key"], col, row[col], key)
    check(row["width"] == width and row["height"] == height, "%s: row size %sx%s, expected %dx%d",
          row["key"], row["width"], row["height"], width, height)
    if trees is None:
        trees = env.trees_of(row["id"])
    check(row["tree_count"] == len(trees), "%s: tree_count %s but %d trees rows",
          row["key"], row["tree_count"], len(trees))
    objs = {}
    for col, key in expect.items():
        try:
            o = env.s3.get_object(Bucket=out_bucket, Key=key)
        except Exception as e:
            raise TestFailure("%s: output s3://%s/%s: %s" % (row["key"], out_bucket, key, e))
        md = o.get("Metadata", {})
        # Metadata travels in HTTP headers: a non-ASCII key is percent-encoded.
        src = md.get("source-key")
        check(src is not None and (src == row["key"] or urllib.parse.unquote(src) == row["key"]),
              "%s: %s metadata source-key %r", row["key"], key, src)
        check(norm_etag(md.get("source-etag")) == norm_etag(row["etag"]),
              "%s: %s metadata source-etag %r, row etag %r", row["key"], key,
              md.get("source-etag"), row["etag"])
        check(md.get("model-version") == row["model_version"],
              "%s: %s metadata model-version %r, row %r", row["key"], key,
              md.get("model-version"), row["model_version"])
        objs[col] = o["Body"].read()
    for col in ("mask_key", "overlay_key"):
        if col not in expect:
            continue
        try:
            if col == "mask_key" or full:
                img = png_decode(objs[col])
                size = (img["width"], img["height"])
            else:
                size = png_size(objs[col])
        except ValueError as e:
            raise TestFailure("%s: %s does not decode: %s" % (row["key"], expect[col], e))
        check(size == (width, height), "%s: %s is %dx%d, expected %dx%d",
              row["key"], expect[col], size[0], size[1], width, height)
    doc = json.loads(objs["trees_key"])
    check(doc.get("width") == width and doc.get("height") == height,
          "%s: trees.json size %sx%s", row["key"], doc.get("width"), doc.get("height"))
    check(abs(doc.get("canopy_cover", -1) - row["canopy_cover"]) < 1e-3,
          "%s: trees.json canopy_cover %s, row %s", row["key"], doc.get("canopy_cover"),
          row["canopy_cover"])
    jt = doc.get("trees")
    check(isinstance(jt, list) and len(jt) == len(trees), "%s: trees.json has %s trees, rows %d",
          row["key"], len(jt) if isinstance(jt, list) else jt, len(trees))
    for i, (t, r) in enumerate(zip(jt, trees)):
        ok = (abs(t["x"] - r[0]) < 0.02 and abs(t["y"] - r[1]) < 0.02 and
              abs(t["radius"] - r[2]) < 0.02 and abs(t["score"] - r[3]) < 1e-3)
        check(ok, "%s: tree %d differs: json %s, row %s", row["key"], i, t, r)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main(name, body):
    """Runs body(env) as test `name`: exit 0 pass, 1 fail, 77 skip."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--canopy", required=True, help="path of the canopy executable")
    ap.add_argument("--source-dir", default=os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    args = ap.parse_args()
    if not os.environ.get("CANOPY_TEST_STACK"):
        if os.environ.get("CANOPY_TEST_REQUIRE_STACK") == "1":
            print("FAIL: CANOPY_TEST_REQUIRE_STACK=1 but the stack's environment is absent")
            return 1
        print("SKIP: no local stack (source .stack/env after scripts/stack.sh start)")
        return SKIP
    scale = float(os.environ.get("CANOPY_E2E_TIMEOUT_SCALE", "1"))
    env = Env(name, os.path.abspath(args.canopy), args.source_dir, scale)
    failed = True
    t0 = time.monotonic()
    try:
        body(env)
        failed = False
    except TestFailure as e:
        print("FAIL: %s" % e)
    except Exception:
        traceback.print_exc()
        print("FAIL: unexpected exception")
    finally:
        env.close(failed)
    if not failed:
        print("PASS: e2e_%s (%.1f s)" % (name, time.monotonic() - t0))
    return 1 if failed else 0

