"""End-to-end benchmark on the local stack (run by bench/e2e/run_bench.sh).

Same emulator, same images, same machine, runs interleaved:
  baseline      bench/e2e/baseline_worker.py: boto3 + OpenCV, one message at
                a time (receive, download, Otsu, upload mask, notify, delete)
  canopy-bin    canopy drain, detector off and overlay off: the like-for-like
                mode (it still writes trees.json and commits PostgreSQL rows)
  canopy-det    canopy drain with the detector on and the overlay (defaults)
  codec limit   bench/e2e/codec_limit on all cores: decode + mask encode of
                the same images in memory, no network, device or database

Each drain run gets the same N legacy-JSON messages on the input queue, a
fresh output queue and (canopy) a fresh database. "wall" is measured from
the worker's launch until the N-th notification is on the output queue
(start-up included: imports, OpenCL set-up, the detector's layer timing,
database migration); "steady" from the first message leaving the input
queue (the worker's first receive) to the N-th notification. Both are
sampled every 50 ms with GetQueueAttributes. Medians of --runs runs. Writes
e2e.json and e2e.md into --out.
"""
import argparse
import json
import os
import platform
import statistics
import struct
import resource
import subprocess
import time
import uuid

import boto3
import psycopg2


def png_size(data):
    return struct.unpack(">II", data[16:24])


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Bench:
    def __init__(self, args):
        self.args = args
        self.s3, self.sqs = boto3.client("s3"), boto3.client("sqs")
        self.suffix = uuid.uuid4().hex[:8]
        self.in_bucket = "bench-in-" + self.suffix
        self.out_bucket = "bench-out-" + self.suffix
        self.s3.create_bucket(Bucket=self.in_bucket)
        self.s3.create_bucket(Bucket=self.out_bucket)
        self.in_queue = self.sqs.create_queue(QueueName="bench-in-" + self.suffix, Attributes={
            "VisibilityTimeout": "300"})["QueueUrl"]
        self.tmp = args.tmp
        self.keys, self.pixels = [], 0
        files = sorted(os.path.join(args.images, f) for f in os.listdir(args.images)
                       if f.endswith(".png"))
        blobs = [(os.path.basename(f)[:-4], open(f, "rb").read()) for f in files]
        for i in range(args.count):
            name, data = blobs[i % len(blobs)]
            key = "bench/%03d/%s.png" % (i, name)
            self.s3.put_object(Bucket=self.in_bucket, Key=key, Body=data)
            w, h = png_size(data)
            self.keys.append(key)
            self.pixels += w * h
        self.files = files
        self.nrun = 0

    def fresh_db(self):
        name = "bench_%s_%d" % (self.suffix, self.nrun)
        conn = psycopg2.connect(dbname=os.environ.get("PGDATABASE", "postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute('CREATE DATABASE "%s"' % name)
        conn.close()
        return "host=%s port=%s user=%s dbname=%s" % (
            os.environ["PGHOST"], os.environ["PGPORT"], os.environ["PGUSER"], name)

    def enqueue(self):
        bodies = [json.dumps({"image_id": "bench-%d" % i, "bucket": self.in_bucket, "key": k,
                              "scan_id": "bench"}) for i, k in enumerate(self.keys)]
        for i in range(0, len(bodies), 10):
            self.sqs.send_message_batch(QueueUrl=self.in_queue, Entries=[
                {"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i:i + 10])])

    def out_count(self, url):
        a = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"])

    def in_visible(self):
        a = self.sqs.get_queue_attributes(QueueUrl=self.in_queue, AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"])

    def timed(self, mode, cmd, out_queue):
        """Launches cmd, waits for N notifications; returns the measurements."""
        n = len(self.keys)
        log = open(os.path.join(self.tmp, "%s-%d.log" % (mode, self.nrun)), "w")
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        t_first = None
        deadline = t0 + self.args.timeout
        while True:
            if t_first is None and self.in_visible() < n:
                t_first = time.monotonic()
            c = self.out_count(out_queue)
            now = time.monotonic()
            if c >= n:
                t_last = now
                break
            if p.poll() is not None or now > deadline:
                p.kill()
                p.wait()
                log.close()
                raise SystemExit("%s: %d of %d notifications (worker exit %s); log %s"
                                 % (mode, c, n, p.returncode, log.name))
            time.sleep(0.05)
        # The worker's own CPU time (user + system), for CPU seconds per MPix:
        # an efficiency figure the emulator's speed does not bound.
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        rc = p.returncode
        log.close()
        if rc != 0:
            raise SystemExit("%s exited %d; log %s" % (mode, rc, log.name))
        wall = t_last - t0
        steady = n / (t_last - t_first)
        cpu = ru.ru_utime + ru.ru_stime
        r = {"seconds": wall, "images_per_s": n / wall, "mpix_per_s": self.pixels / 1e6 / wall,
             "steady_images_per_s": steady,
             "steady_mpix_per_s": steady * self.pixels / 1e6 / n,
             "cpu_seconds": cpu, "cpu_s_per_mpix": cpu / (self.pixels / 1e6)}
        print("  %-11s run %d: %6.2f s  %6.2f images/s  %6.3f MPix/s  (steady %.2f images/s)"
              "  %.3f CPU s/MPix"
              % (mode, self.nrun, wall, r["images_per_s"], r["mpix_per_s"], steady,
                 r["cpu_s_per_mpix"]), flush=True)
        return r

    def run_mode(self, mode):
        self.nrun += 1
        out_queue = self.sqs.create_queue(QueueName="bench-out-%s-%d" % (self.suffix, self.nrun))[
            "QueueUrl"]
        self.enqueue()
        prefix = "%s/%d/" % (mode, self.nrun)
        a = self.args
        if mode == "baseline":
            cmd = [a.baseline_python, os.path.join(a.here, "baseline_worker.py"),
                   "--queue", self.in_queue, "--out-bucket", self.out_bucket,
                   "--out-prefix", prefix, "--out-queue", out_queue, "--idle-exit", "2"]
        else:
            cfg = os.path.join(self.tmp, "%s-%d.ini" % (mode, self.nrun))
            with open(cfg, "w") as f:
                f.write("[input]\nqueue_url = %s\n[output]\nbucket = %s\nprefix = %s\n"
                        "queue_url = %s\noverlay = %s\n[batch]\nwait_seconds = 1\n"
                        "idle_exit_seconds = 2\n[postgres]\nconninfo = %s\n[detector]\n"
                        "enabled = %s\n%s[log]\nprogress = off\n"
                        % (self.in_queue, self.out_bucket, prefix, out_queue,
                           "false" if mode == "canopy-bin" else "true", self.fresh_db(),
                           "false" if mode == "canopy-bin" else "true",
                           "model = %s\n" % a.model if a.model else ""))
            cmd = [a.canopy, "drain", "-c", cfg]
        r = self.timed(mode, cmd, out_queue)
        self.sqs.delete_queue(QueueUrl=out_queue)
        return r

    def codec_limit(self, threads):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([self.args.codec_limit, "--threads", str(threads), "--seconds",
                              str(self.args.codec_seconds)] + self.files,
                             check=True, capture_output=True, text=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = json.loads(out)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        mpix = r["mpix_per_s"] * r.get("seconds", self.args.codec_seconds)
        r["cpu_s_per_mpix"] = cpu / mpix if mpix > 0 else float("nan")
        print("  codec limit %d thread(s): %.2f images/s, %.3f MPix/s"
              % (r["threads"], r["images_per_s"], r["mpix_per_s"]), flush=True)
        return r


def median_of(runs):
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--canopy", required=True)
    ap.add_argument("--codec-limit", required=True)
    ap.add_argument("--baseline-python", required=True)
    ap.add_argument("--images", required=True, help="directory of input PNGs (repeated)")
    ap.add_argument("--count", type=int, default=60, help="messages per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default="baseline,canopy-bin,canopy-det")
    ap.add_argument("--model", default="", help="[detector] model (default: canopy's)")
    ap.add_argument("--codec-seconds", type=float, default=5)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    args.here = os.path.dirname(os.path.abspath(__file__))
    if not args.model:
        root = os.path.dirname(os.path.dirname(args.here))
        if not os.path.exists(os.path.join(root, "models", "crown-1.1.cnw")):
            # No trained model in this checkout: time the detector with the
            # random test model (same architecture family, so similar cost).
            args.model = os.path.join(root, "models", "test", "random-tiny.cnw")
    b = Bench(args)
    n = len(b.keys)
    print("bench: %d images per run (%.1f MPix), %d runs, modes %s"
          % (n, b.pixels / 1e6, args.runs, args.modes), flush=True)
    modes = args.modes.split(",")
    runs = {m: [] for m in modes}
    for _ in range(args.runs):
        for m in modes:
            runs[m].append(b.run_mode(m))
    cores = os.cpu_count() or 1
    codec_all = [b.codec_limit(cores) for _ in range(args.runs)]
    codec_one = [b.codec_limit(1) for _ in range(args.runs)]
    res = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": cpu_model(), "cores": cores, "kernel": platform.release()},
        "images_per_run": n, "megapixels_per_run": round(b.pixels / 1e6, 3),
        "inputs": [os.path.basename(f) for f in b.files], "runs": args.runs,
        "model": os.path.basename(args.model) if args.model else "canopy default",
        "modes": {m: {"median": median_of(r), "runs": r} for m, r in runs.items()},
        "codec_limit": {"all_cores": median_of(codec_all), "one_core": median_of(codec_one)},
    }
    med = {m: res["modes"][m]["median"] for m in modes}
    ratios = {}
    if "baseline" in med and "canopy-bin" in med:
        ratios["canopy_bin_vs_baseline_wall"] = med["canopy-bin"]["images_per_s"] / \
            med["baseline"]["images_per_s"]
        ratios["canopy_bin_vs_baseline_steady"] = med["canopy-bin"]["steady_images_per_s"] / \
            med["baseline"]["steady_images_per_s"]
    if "canopy-bin" in med:
        ratios["canopy_bin_steady_vs_codec_limit"] = med["canopy-bin"]["steady_mpix_per_s"] / \
            res["codec_limit"]["all_cores"]["mpix_per_s"]
    if "canopy-bin" in med:
        # CPU efficiency against the codec-bound limit: what canopy spends per
        # MPix beyond decoding and encoding, whatever the emulator's speed.
        ratios["canopy_bin_cpu_vs_codec_limit"] = med["canopy-bin"]["cpu_s_per_mpix"] / \
            res["codec_limit"]["all_cores"]["cpu_s_per_mpix"]
    if "baseline" in med and "canopy-det" in med:
        ratios["canopy_det_vs_baseline_steady"] = med["canopy-det"]["steady_images_per_s"] / \
            med["baseline"]["steady_images_per_s"]
    res["ratios"] = ratios
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "e2e.json"), "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "e2e.md"), "w") as f:
        f.write(markdown(res, modes))
    print(markdown(res, modes))


def markdown(res, modes):
    label = {"baseline": "baseline worker (Python, boto3 + OpenCV, one message at a time)",
             "canopy-bin": "canopy drain, binarize only (detector and overlay off)",
             "canopy-det": "canopy drain, detector on (+ overlay)"}
    lines = [
        "End to end on the local stack (moto S3/SQS with signature checking, PostgreSQL 15, "
        "both on the same cores as the worker), "
        "%d images per run (the NEON images repeated, %.1f MPix), median of %d runs, %s, "
        "%d cores, %s; detector model: %s. wall: from the worker's launch to the last "
        "notification on the output queue (start-up included); steady: from the worker's "
        "first receive to the last notification (start-up excluded)."
        % (res["images_per_run"], res["megapixels_per_run"], res["runs"], res["machine"]["cpu"],
           res["machine"]["cores"], res["date"][:10], res["model"]),
        "",
        "| worker | wall s | images/s | MPix/s | steady images/s | steady MPix/s | CPU s/MPix |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in modes:
        r = res["modes"][m]["median"]
        lines.append("| %s | %.2f | %.2f | %.3f | %.2f | %.3f | %.3f |" % (
            label.get(m, m), r["seconds"], r["images_per_s"], r["mpix_per_s"],
            r["steady_images_per_s"], r["steady_mpix_per_s"], r["cpu_s_per_mpix"]))
    for k, name in (("all_cores", "%d cores" % res["machine"]["cores"]), ("one_core", "1 core")):
        r = res["codec_limit"][k]
        lines.append("| codec-bound limit, %s (PNG decode + mask encode in memory) | | %.2f | "
                     "%.3f | | | %.3f |" % (name, r["images_per_s"], r["mpix_per_s"],
                                          r["cpu_s_per_mpix"]))
    lines.append("")
    rt = res["ratios"]
    if "canopy_bin_vs_baseline_wall" in rt:
        lines.append("- canopy binarize-only vs the baseline worker (like for like): **%.2fx** "
                     "images/s steady, %.2fx wall" % (rt["canopy_bin_vs_baseline_steady"],
                                                      rt["canopy_bin_vs_baseline_wall"]))
    if "canopy_bin_steady_vs_codec_limit" in rt:
        lines.append("- canopy binarize-only vs the codec-bound limit on all cores: **%.0f%%** of "
                     "it (steady MPix/s)" % (100 * rt["canopy_bin_steady_vs_codec_limit"]))
    if "canopy_bin_cpu_vs_codec_limit" in rt:
        lines.append("- canopy binarize-only spends **%.2fx** the CPU seconds per MPix of the "
                     "codec-bound limit (its own CPU time: download, decode, device, encode, "
                     "upload, commit; the emulator's is not counted)"
                     % rt["canopy_bin_cpu_vs_codec_limit"])
    if "canopy_det_vs_baseline_steady" in rt:
        lines.append("- canopy with the detector vs the baseline (which detects nothing): %.2fx "
                     "images/s steady" % rt["canopy_det_vs_baseline_steady"])
    lines.append("")
    lines.append("moto is a single Python process: on a small machine it, not canopy, is the "
                 "ceiling of the end-to-end figures. Reproduce with `bench/e2e/run_bench.sh` "
                 "(options: --count, --runs, --modes, --model); raw runs in e2e.json.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
