#!/usr/bin/env bash
# RetinaNet bench: an imported RetinaNet in canopy (bench_retina, OpenCL)
# against the same model in PyTorch (bench/retina_torch.py) on the same
# machine and images, in one run; writes bench/results/retina.json and
# bench/results/retina.md (bench/retina_report.py).
#
#   bench/retina_full.sh [--model-dir DIR] [--cnw FILE] [--repeats N] [--threads N]
#                   [--device cpu|cuda] [--large MIN,MAX | --no-large]
#                   [--out DIR] [--note TEXT]
#
# --model-dir: a Hugging Face layout (model.safetensors + config.json; the
#   real DeepForest weights or a fixture). Default: a seeded fixture built by
#   tools/deepforest/make_fixture.py (CANOPY_MAKE_FIXTURE) with min_size 320,
#   max_size 533, in a temporary directory.
# --cnw: its import; default: canopy model import of --model-dir.
# --threads: PyTorch's threads and PoCL's (POCL_MAX_PTHREAD_COUNT); default
#   nproc. --device cuda: PyTorch on CUDA (canopy on whatever [opencl]
#   picks: set CANOPY_OPENCL_PLATFORM / _DEVICE to the same GPU).
# --note: a sentence for the results (what the weights are).
# --full: DeepForest's defaults instead (issue 19): the fixture at min_size
#   800 / max_size 1333, YELL_541000_west mirrored into a 2100 x 2070 mosaic
#   cut into 400-pixel patches, one run (--repeats 1 unless given); canopy
#   tuned (`canopy tune --budget TUNE_BUDGET`, default 600) with every conv
#   path, against a baseline in the same run (CLBlast's defaults, im2col +
#   SGEMM for every conv, as before issue 19) and PyTorch on the same
#   threads; writes bench/results/retina_full.json and retina_full.md.
# --large: one extra run per side at that min_size / max_size (DeepForest's
#   real 800,1333, the default); --no-large skips it.
# Environment: CANOPY_BUILD_DIR (build), CANOPY_TORCH_PYTHON (a Python with
# torch, torchvision, safetensors, pillow; default .venv-torch/bin/python),
# CANOPY_NEON_DIR, CANOPY_OPENCL_CACHE_DIR (PoCL's kernel binaries: set it
# to keep the first compile out of later runs).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/retina_env.sh"
MODEL_DIR="" CNW="" REPEATS=3 THREADS=$(nproc) DEVICE=cpu LARGE=800,1333
OUT="$CANOPY_ROOT/bench/results" NOTE="" FULL="" TUNE_BUDGET=600 REPEATS_SET=""
while [ $# -gt 0 ]; do
  case $1 in
    --model-dir) MODEL_DIR=$2; shift 2 ;;
    --cnw) CNW=$2; shift 2 ;;
    --repeats) REPEATS=$2; REPEATS_SET=1; shift 2 ;;
    --full) FULL=1; shift ;;
    --tune-budget) TUNE_BUDGET=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --large) LARGE=$2; shift 2 ;;
    --no-large) LARGE=""; shift ;;
    --out) OUT=$2; shift 2 ;;
    --note) NOTE=$2; shift 2 ;;
    *) die "unknown argument $1 (see the comment at the top of $0)" ;;
  esac
done
[ -x "$PY" ] || die "no $PY: set CANOPY_TORCH_PYTHON to a Python with torch and torchvision"
[ -d "$NEON" ] || die "NEON images not found in $NEON (set CANOPY_NEON_DIR)"
IMAGES=("$NEON/OSBS_029.png" "$NEON/SOAP_061.png" "$NEON/YELL_541000_west.png")
TILED="$NEON/YELL_541000_west.png"

TMP=$(mktemp -d /tmp/canopy-retina-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

say "building bench_retina and canopy in $BUILD_DIR"
cmake -S "$CANOPY_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
cmake --build "$BUILD_DIR" -j"$(canopy_jobs)" --target bench_retina canopy >&2

if [ -z "$MODEL_DIR" ]; then
  [ -f "$MAKE_FIXTURE" ] || die "no $MAKE_FIXTURE: pass --model-dir or set CANOPY_MAKE_FIXTURE"
  say "building a seeded fixture (random weights, DeepForest's architecture)"
  if [ -n "$FULL" ]; then SIZES=(--min-size 800 --max-size 1333); else SIZES=(--min-size 320 --max-size 533); fi
  "$PY" "$MAKE_FIXTURE" --seed 7 --out "$TMP/fx" "${SIZES[@]}" --layout hf >&2
  MODEL_DIR="$TMP/fx/hf"
  [ -f "$MODEL_DIR/config.json" ] || MODEL_DIR="$TMP/fx"
  NOTE="Weights: make_fixture.py --seed 7 (random, same FLOPs as DeepForest's)."
fi
if [ -z "$CNW" ]; then
  CNW="$TMP/model.cnw"
  "$BUILD_DIR/canopy" model import "$MODEL_DIR" --output "$CNW" >&2
fi

if [ -n "$FULL" ]; then
  [ -n "$REPEATS_SET" ] || REPEATS=1
  export POCL_MAX_PTHREAD_COUNT=$THREADS POCL_CPU_MAX_CU_NUM=$THREADS
  PATCH=(--patch-size 400 --patch-overlap 0.05 --patch-iou 0.15)
  MOSAIC="$TMP/mosaic.png"
  say "mosaic of $(basename "$TILED"), at least 2000 x 2000"
  "$PY" - "$TILED" "$MOSAIC" <<'PYEOF'
import sys
from PIL import Image, ImageOps
src = Image.open(sys.argv[1]).convert("RGB")
w, h = src.size
nx, ny = -(-2000 // w), -(-2000 // h)
out = Image.new("RGB", (nx * w, ny * h))
for j in range(ny):
    for i in range(nx):
        t = ImageOps.mirror(src) if i % 2 else src
        out.paste(ImageOps.flip(t) if j % 2 else t, (i * w, j * h))
out.save(sys.argv[2])
print(f"mosaic {out.size[0]} x {out.size[1]}", file=sys.stderr)
PYEOF
  say "canopy tune (budget $TUNE_BUDGET s) on the model's GEMM shapes"
  "$BUILD_DIR/canopy" tune --model "$CNW" --budget "$TUNE_BUDGET" --output "$TMP/tuning.txt" \
    --set detector.patch_size=400
  say "canopy baseline: CLBlast's defaults, im2col + SGEMM for every conv"
  CANOPY_OPENCL_CACHE_DIR="$TMP/cache-base" CANOPY_OPENCL_TUNING_FILE=off \
    CANOPY_DETECTOR_CONV=gemm "$BUILD_DIR/bench_retina" --model "$CNW" --repeats "$REPEATS" \
    --tiled "$MOSAIC" --tiled-only "${PATCH[@]}" --json "$TMP/base.json"
  say "canopy tuned, every conv path (direct, im2col + SGEMM, Winograd) by measurement"
  CANOPY_OPENCL_CACHE_DIR="$TMP/cache-new" CANOPY_OPENCL_TUNING_FILE="$TMP/tuning.txt" \
    CANOPY_DETECTOR_CONV=auto "$BUILD_DIR/bench_retina" --model "$CNW" --repeats "$REPEATS" \
    --tiled "$MOSAIC" --tiled-only "${PATCH[@]}" --json "$TMP/canopy.json"
  say "PyTorch: retina_torch.py ($DEVICE, $THREADS threads)"
  "$PY" "$CANOPY_ROOT/bench/retina_torch.py" --model "$MODEL_DIR" --device "$DEVICE" \
    --threads "$THREADS" --repeats "$REPEATS" --tiled "$MOSAIC" --tiled-only "${PATCH[@]}" \
    --json "$TMP/torch.json"
  mkdir -p "$OUT"
  "$PY" - "$TMP/base.json" "$TMP/canopy.json" "$TMP/torch.json" "$TMP/tuning.txt" \
    "$OUT/retina_full.json" "$OUT/retina_full.md" "$NOTE" <<'PYEOF'
import json, sys
base, new, torch = (json.load(open(p)) for p in sys.argv[1:4])
tuning = open(sys.argv[4]).read()
b, n, t = base["tiled"], new["tiled"], torch["tiled"]
res = {"model": new["model"], "min_size": new["min_size"], "max_size": new["max_size"],
       "device": new["device"], "torch_device": torch["device"], "threads": torch["threads"],
       "repeats": new["repeats"], "image": n["name"], "width": n["width"],
       "height": n["height"], "patches": n["patches"],
       "baseline_s": b["seconds"], "canopy_s": n["seconds"], "torch_s": t["seconds"],
       "speedup_vs_baseline": b["seconds"] / n["seconds"],
       "canopy_vs_torch": t["seconds"] / n["seconds"],
       "baseline_vs_torch": t["seconds"] / b["seconds"],
       "boxes": {"baseline": b["boxes"], "canopy": n["boxes"], "torch": t["boxes"]},
       "tuning_file": tuning, "note": sys.argv[7]}
json.dump(res, open(sys.argv[5], "w"), indent=2)
md = f"""# RetinaNet at DeepForest's defaults (bench/retina_full.sh --full)

{res['note']}

Model {res['model']} (min_size {res['min_size']}, max_size {res['max_size']}); image
{res['image']} {res['width']} x {res['height']} in {res['patches']} patches of 400
(overlap 0.05); canopy on {res['device']}, PyTorch on {res['torch_device']} with
{res['threads']} threads; median of {res['repeats']} run(s), all in one run of the script.

| run | s/image | vs baseline | vs PyTorch (>1: faster) | boxes |
|---|---|---|---|---|
| canopy baseline (CLBlast defaults, im2col + SGEMM) | {b['seconds']:.2f} | 1.00x | {res['baseline_vs_torch']:.3f}x | {b['boxes']} |
| canopy (tuned CLBlast, paths by measurement incl. Winograd) | {n['seconds']:.2f} | {res['speedup_vs_baseline']:.2f}x | {res['canopy_vs_torch']:.3f}x | {n['boxes']} |
| PyTorch | {t['seconds']:.2f} | | 1x | {t['boxes']} |

The CLBlast tuning file `canopy tune` wrote for this run:

```
{tuning.strip()}
```
"""
open(sys.argv[6], "w").write(md)
print(md)
PYEOF
  say "wrote $OUT/retina_full.json and $OUT/retina_full.md"
  exit 0
fi

LARGE_ARGS=()
if [ -n "$LARGE" ]; then
  LARGE_ARGS=(--large-min-size "${LARGE%,*}" --large-max-size "${LARGE#*,}")
fi
# One thread count for both sides (PoCL 3 reads POCL_MAX_PTHREAD_COUNT,
# later versions POCL_CPU_MAX_CU_NUM).
export POCL_MAX_PTHREAD_COUNT=$THREADS POCL_CPU_MAX_CU_NUM=$THREADS
PATCH=(--patch-size 400 --patch-overlap 0.05 --patch-iou 0.15)

say "canopy: bench_retina ($REPEATS repeats)"
"$BUILD_DIR/bench_retina" --model "$CNW" --repeats "$REPEATS" --tiled "$TILED" "${PATCH[@]}" \
  "${LARGE_ARGS[@]}" --json "$TMP/canopy.json" "${IMAGES[@]}"
say "PyTorch: retina_torch.py ($DEVICE, $THREADS threads)"
"$PY" "$CANOPY_ROOT/bench/retina_torch.py" --model "$MODEL_DIR" --device "$DEVICE" \
  --threads "$THREADS" --repeats "$REPEATS" --tiled "$TILED" "${PATCH[@]}" \
  "${LARGE_ARGS[@]}" --json "$TMP/torch.json" "${IMAGES[@]}"

mkdir -p "$OUT"
"$PY" "$CANOPY_ROOT/bench/retina_report.py" --canopy "$TMP/canopy.json" \
  --torch "$TMP/torch.json" --json "$OUT/retina.json" --md "$OUT/retina.md" --note "$NOTE"
say "wrote $OUT/retina.json and $OUT/retina.md"
