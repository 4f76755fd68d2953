#!/usr/bin/env bash
# Crown model bench: the shipped crown model on the CPU backend
# (bench_crown_cpu, oneDNN), on the OpenCL engine (bench_detect) and the same
# network in PyTorch (bench/crown_torch.py, built from the .cnw's layer list),
# same threads, one run, per image; PyTorch's output is checked against the
# CPU backend's before it is timed. Writes crown.json and crown.md.
#
#   bench/crown.sh [--model FILE] [--threads N] [--repeats N] [--tile-to N]
#                  [--no-opencl] [--out DIR] IMAGE.png...
#
# Default images: the three NEON images and, with --tile-to N (default 2000),
# YELL_541000_west tiled to at least N x N. Times: the network alone on the
# whole image (input transform + layers) on both sides; the CPU backend's
# whole detection (tiles, decode, NMS) and the OpenCL engine's beside it.
# Environment: CANOPY_BUILD_DIR (build), CANOPY_TORCH_PYTHON.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BUILD_DIR=${CANOPY_BUILD_DIR:-$CANOPY_ROOT/build}
PY=${CANOPY_TORCH_PYTHON:-$CANOPY_ROOT/.venv-torch/bin/python}
NEON=$CANOPY_ROOT/tests/data/neon
MODEL=$CANOPY_ROOT/models/crown-1.1.cnw THREADS=$(nproc) REPEATS=5 TILE_TO=2000 OPENCL=1
OUT=$CANOPY_ROOT/bench/results
IMAGES=()
while [ $# -gt 0 ]; do
  case $1 in
    --model) MODEL=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --tile-to) TILE_TO=$2; shift 2 ;;
    --no-opencl) OPENCL=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    -*) die "unknown argument $1 (see the comment at the top of $0)" ;;
    *) IMAGES+=("$1"); shift ;;
  esac
done
[ -x "$PY" ] || die "no $PY: set CANOPY_TORCH_PYTHON to a Python with torch"
TMP=$(mktemp -d /tmp/canopy-crown-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
if [ ${#IMAGES[@]} = 0 ]; then
  IMAGES=("$NEON/OSBS_029.png" "$NEON/SOAP_061.png" "$NEON/YELL_541000_west.png")
  if [ "$TILE_TO" -gt 0 ]; then
    "$PY" "$CANOPY_ROOT/bench/mosaic.py" "$NEON/YELL_541000_west.png" "$TMP/mosaic.png" "$TILE_TO"
    IMAGES+=("$TMP/mosaic.png")
  fi
fi
cmake --build "$BUILD_DIR" -j"$(canopy_jobs)" --target bench_crown_cpu bench_detect >&2
export OMP_NUM_THREADS=$THREADS POCL_MAX_PTHREAD_COUNT=$THREADS
i=0
for img in "${IMAGES[@]}"; do
  say "$(basename "$img"): CPU backend, PyTorch$([ "$OPENCL" = 1 ] && echo ", OpenCL") ($THREADS threads)"
  "$BUILD_DIR/bench_crown_cpu" --model "$MODEL" --image "$img" --threads "$THREADS" \
    --repeats "$REPEATS" --dump "$TMP/out$i.f32" --json "$TMP/cpu$i.json"
  "$PY" "$CANOPY_ROOT/bench/crown_torch.py" --cnw "$MODEL" --image "$img" --threads "$THREADS" \
    --repeats "$REPEATS" --check "$TMP/out$i.f32" --tol 1e-3 --json "$TMP/torch$i.json"
  if [ "$OPENCL" = 1 ]; then
    CANOPY_DETECTOR_MODEL=$MODEL "$BUILD_DIR/bench_detect" --model "$MODEL" --image "$img" \
      --repeats "$REPEATS" --no-ref --json "$TMP/ocl$i.json" >"$TMP/ocl$i.log" 2>&1 ||
      { cat "$TMP/ocl$i.log" >&2; die "bench_detect failed"; }
  fi
  i=$((i + 1))
done
mkdir -p "$OUT"
"$PY" - "$TMP" "$i" "$OUT" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PYEOF'
import json, os, sys
tmp, n, out, cores, load = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rows = []
for i in range(n):
    c = json.load(open(f"{tmp}/cpu{i}.json"))
    t = json.load(open(f"{tmp}/torch{i}.json"))
    o = json.load(open(f"{tmp}/ocl{i}.json")) if os.path.exists(f"{tmp}/ocl{i}.json") else None
    rows.append({"image": os.path.basename(c["image"]), "width": c["width"],
                 "height": c["height"], "gflop": c["gflop"], "threads": c["threads"],
                 "torch_threads": t["threads"], "max_abs_diff": t["max_abs_diff"],
                 "cpu_network_s": c["network_s"], "torch_network_s": t["network_s"],
                 "cpu_detect_s": c["detect_s"], "trees": c["trees"],
                 "opencl_detect_s": o["device_run"]["seconds"] if o else None,
                 "opencl_device": o["device"] if o else None,
                 "speed_vs_torch": t["network_s"] / c["network_s"]})
res = {"model": c["model"], "torch": t["torch"], "cores": int(cores), "load_avg_end": load,
       "repeats": c["repeats"], "rows": rows}
json.dump(res, open(f"{out}/crown.json", "w"), indent=1)
f = lambda v: "-" if v is None else f"{v:.4f}"
md = [f"# Crown model bench (bench/crown.sh)\n",
      f"Model {res['model']}; {rows[0]['threads']} threads on both sides (machine: {cores} cores, "
      f"shared with other jobs; load average at the end {load}); PyTorch {res['torch']}; "
      f"medians of {res['repeats']} runs after a warm-up. Network = input transform + every "
      "layer on the whole image in one call; detection = canopy's whole run (tiles, decode, "
      "NMS). PyTorch's network output matched the CPU backend's (max abs difference below) "
      "before it was timed.\n",
      "| image | GFLOP | CPU backend network s | PyTorch network s | CPU backend / PyTorch speed "
      "| CPU backend detection s | OpenCL detection s | max abs diff | trees |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    md.append(f"| {r['image']} {r['width']}x{r['height']} | {r['gflop']:.1f} | "
              f"{f(r['cpu_network_s'])} | {f(r['torch_network_s'])} | {r['speed_vs_torch']:.2f} | "
              f"{f(r['cpu_detect_s'])} | {f(r['opencl_detect_s'])} | {r['max_abs_diff']:.2g} | "
              f"{r['trees']:.0f} |")
if rows[0]["opencl_device"]:
    md.append(f"\nOpenCL device: {rows[0]['opencl_device']}.")
open(f"{out}/crown.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PYEOF
say "wrote $OUT/crown.json and $OUT/crown.md"
