#!/usr/bin/env python3
"""Peak memory and throughput of `canopy run` against raster size.

Builds deflate-compressed, tiled GeoTIFFs (UTM 17N, 0.1 m) of 1k, 5k, 10k and
20k pixels a side by tiling a NEON image (a GDAL VRT mosaic, written with
gdal_translate), then runs the real executable on each, in a fresh process
per run, and records its peak resident memory (getrusage of the child) and
MPix/s (median of the repeats):

- binarize only, in windows (the default above [limits] window_pixels) and,
  up to 10k, whole (window_pixels raised above the image): the windowed path
  must not grow with size and must be no slower;
- with the detector (crown-1.1) at 1k to 20k, in windows, with outputs
  written through temporary files ([output] spill_bytes, the default) and,
  at --memory-sizes, held in memory (spill_bytes 0) to show what that costs.

Each row also records the bytes of the outputs written, which grow with the
raster while memory must not.

    bench/large/run_bench.py [--canopy build/canopy] [--sizes 1024,5000,10000,20000]
                             [--detect-sizes 1024,5000,10000,20000] [--memory-sizes 10000]
                             [--repeats 3] [--work DIR] [--json bench/results/raster_size.json]

--work keeps the GeoTIFFs between runs (the 20k one takes minutes to write).
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NEON = os.path.join(ROOT, "tests", "data", "neon", "YELL_541000_west.png")
TILE_W, TILE_H = 700, 1035


def make_geotiff(side, out_dir):
    path = os.path.join(out_dir, "tile-%d.tif" % side)
    if os.path.exists(path):
        return path
    vrt = os.path.join(out_dir, "tile-%d.vrt" % side)
    sources = []
    for y in range(0, side, TILE_H):
        for x in range(0, side, TILE_W):
            w, h = min(TILE_W, side - x), min(TILE_H, side - y)
            sources.append(
                "<SimpleSource><SourceFilename relativeToVRT=\"0\">%s</SourceFilename>"
                "<SourceBand>{b}</SourceBand><SrcRect xOff=\"0\" yOff=\"0\" xSize=\"%d\" "
                "ySize=\"%d\"/><DstRect xOff=\"%d\" yOff=\"%d\" xSize=\"%d\" ySize=\"%d\"/>"
                "</SimpleSource>" % (os.path.abspath(NEON), w, h, x, y, w, h))
    bands = "".join("<VRTRasterBand dataType=\"Byte\" band=\"%d\">%s</VRTRasterBand>"
                    % (b, "".join(s.replace("{b}", str(b)) for s in sources)) for b in (1, 2, 3))
    with open(vrt, "w") as f:
        f.write("<VRTDataset rasterXSize=\"%d\" rasterYSize=\"%d\">%s</VRTDataset>"
                % (side, side, bands))
    subprocess.run(["gdal_translate", "-q", "-co", "COMPRESS=DEFLATE", "-co", "TILED=YES",
                    "-co", "BIGTIFF=IF_SAFER", "-a_srs", "EPSG:32617", "-a_ullr", "400000",
                    str(3290000), str(400000 + side * 0.1), str(3290000 - side * 0.1), vrt, path],
                   check=True)
    os.unlink(vrt)
    return path


def measure(cmd):
    """(seconds, peak RSS MiB) of cmd in a fresh child process."""
    probe = ("import resource, subprocess, sys, time\n"
             "t = time.monotonic()\n"
             "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL,"
             " stderr=subprocess.DEVNULL).returncode\n"
             "print(rc, time.monotonic() - t,"
             " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", probe] + cmd, capture_output=True, text=True,
                         check=True).stdout.split()
    if out[0] != "0":
        raise SystemExit("failed (exit %s): %s" % (out[0], " ".join(cmd)))
    return float(out[1]), int(out[2]) / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--canopy", default=os.path.join(ROOT, "build", "canopy"))
    ap.add_argument("--sizes", default="1024,5000,10000,20000")
    ap.add_argument("--detect-sizes", default="1024,5000,10000,20000")
    ap.add_argument("--memory-sizes", default="10000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "raster_size.json"))
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="canopy-bench-large-")
    os.makedirs(work, exist_ok=True)
    base = ["--set", "limits.max_pixels=1000000000", "--set", "log.progress=off"]
    rows = []

    def run(side, mode, extra, repeats):
        path = make_geotiff(side, work)
        out = os.path.join(work, "out")
        times, rss = [], []
        for _ in range(repeats):
            shutil.rmtree(out, ignore_errors=True)
            t, r = measure([args.canopy, "run", "-i", path, "-o", out] + base + extra)
            times.append(t)
            rss.append(r)
        med = statistics.median(times)
        outputs = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        row = {"side": side, "mode": mode, "seconds": med, "mpix_per_s": side * side / 1e6 / med,
               "peak_rss_mib": max(rss), "output_mb": outputs / 1e6, "repeats": repeats}
        rows.append(row)
        print("%6d  %-34s %8.1f s  %7.2f MPix/s  peak RSS %7.0f MiB  outputs %7.1f MB" %
              (side, mode, med, row["mpix_per_s"], row["peak_rss_mib"], row["output_mb"]),
              flush=True)

    for side in [int(s) for s in args.sizes.split(",")]:
        reps = args.repeats if side <= 10000 else 1
        run(side, "binarize, windows", ["--no-detector", "--set", "limits.window_pixels=1000000"],
            reps)
        if side <= 10000:
            run(side, "binarize, whole", ["--no-detector", "--set",
                                          "limits.window_pixels=1000000000"], reps)
    for side in [int(s) for s in args.detect_sizes.split(",")]:
        run(side, "detector, windows", ["--set", "limits.window_pixels=1000000"], 1)
    for side in [int(s) for s in args.memory_sizes.split(",") if s]:
        run(side, "detector, windows, outputs in memory",
            ["--set", "limits.window_pixels=1000000", "--set", "output.spill_bytes=0"], 1)
    with open(args.json, "w") as f:
        json.dump({"machine": os.uname().nodename, "cpus": os.cpu_count(), "rows": rows}, f,
                  indent=1)
    print("wrote", args.json)


if __name__ == "__main__":
    main()
