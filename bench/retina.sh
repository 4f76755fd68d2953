#!/usr/bin/env bash
# (The tuned-CLBlast run at DeepForest's defaults against the untuned baseline
# and PyTorch is bench/retina_full.sh --full.)
# RetinaNet bench: an imported RetinaNet in canopy (bench_retina, OpenCL;
# bench_retina_cpu, the CPU backend, where it is built) against the same
# model in PyTorch (bench/retina_torch.py) on the same machine and images,
# in one run; writes bench/results/retina.json and bench/results/retina.md
# (bench/retina_report.py).
#
#   bench/retina.sh [--model-dir DIR] [--cnw FILE] [--repeats N] [--threads N]
#                   [--device cpu|cuda] [--large MIN,MAX | --no-large]
#                   [--fixture-size MIN,MAX] [--tile-to N] [--cpu-batch N]
#                   [--no-opencl-tiled] [--out DIR] [--note TEXT]
#
# DeepForest's defaults (400-pixel patches at min_size 800, on a NEON image
# tiled to 2000 x 2000; the OpenCL path is timed per patch on the whole
# 400 x 400 images, which are one patch each at that size):
#   bench/retina.sh --fixture-size 800,1333 --tile-to 2000 --no-large \
#                   --no-opencl-tiled --repeats 1 --out bench/results/deepforest
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
# --fixture-size: the fixture's min_size / max_size (default 320,533).
# --tile-to: the tiled case on a mosaic of the NEON image repeated to at
#   least N x N pixels (default: the image itself).
# --cpu-batch: patches per call of the CPU backend (default 1).
# --no-opencl-tiled: leaves the tiled case out of the OpenCL run (slow on a
#   CPU OpenCL device at min_size 800).
# --large: one extra run per side at that min_size / max_size (DeepForest's
#   real 800,1333, the default); --no-large skips it.
# Environment: CANOPY_BUILD_DIR (build), CANOPY_TORCH_PYTHON (a Python with
# torch, torchvision, safetensors, pillow; default .venv-torch/bin/python),
# CANOPY_NEON_DIR, CANOPY_OPENCL_CACHE_DIR (PoCL's kernel binaries: set it
# to keep the first compile out of later runs).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/retina_env.sh"
MODEL_DIR="" CNW="" REPEATS=3 THREADS=$(nproc) DEVICE=cpu LARGE=800,1333
OUT="$CANOPY_ROOT/bench/results" NOTE="" FIXTURE_SIZE=320,533 TILE_TO=0 CPU_BATCH=1
OPENCL_TILED=1
while [ $# -gt 0 ]; do
  case $1 in
    --model-dir) MODEL_DIR=$2; shift 2 ;;
    --cnw) CNW=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --large) LARGE=$2; shift 2 ;;
    --no-large) LARGE=""; shift ;;
    --out) OUT=$2; shift 2 ;;
    --note) NOTE=$2; shift 2 ;;
    --fixture-size) FIXTURE_SIZE=$2; shift 2 ;;
    --tile-to) TILE_TO=$2; shift 2 ;;
    --cpu-batch) CPU_BATCH=$2; shift 2 ;;
    --no-opencl-tiled) OPENCL_TILED=0; shift ;;
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
CPU_BENCH=""
if grep -q '^CANOPY_WITH_DNNL:BOOL=ON' "$BUILD_DIR/CMakeCache.txt"; then
  cmake --build "$BUILD_DIR" -j"$(canopy_jobs)" --target bench_retina_cpu >&2
  CPU_BENCH="$BUILD_DIR/bench_retina_cpu"
fi

if [ -z "$MODEL_DIR" ]; then
  [ -f "$MAKE_FIXTURE" ] || die "no $MAKE_FIXTURE: pass --model-dir or set CANOPY_MAKE_FIXTURE"
  say "building a seeded fixture (random weights, DeepForest's architecture)"
  "$PY" "$MAKE_FIXTURE" --seed 7 --out "$TMP/fx" --min-size "${FIXTURE_SIZE%,*}" \
    --max-size "${FIXTURE_SIZE#*,}" --layout hf >&2
  MODEL_DIR="$TMP/fx/hf"
  [ -f "$MODEL_DIR/config.json" ] || MODEL_DIR="$TMP/fx"
  NOTE="Weights: make_fixture.py --seed 7 --min-size ${FIXTURE_SIZE%,*} --max-size ${FIXTURE_SIZE#*,} (random, DeepForest's architecture and FLOPs)."
fi
if [ -z "$CNW" ]; then
  CNW="$TMP/model.cnw"
  "$BUILD_DIR/canopy" model import "$MODEL_DIR" --output "$CNW" >&2
fi

if [ "$TILE_TO" -gt 0 ]; then
  say "tiling $(basename "$TILED") to at least ${TILE_TO}x$TILE_TO"
  "$PY" "$CANOPY_ROOT/bench/mosaic.py" "$TILED" "$TMP/mosaic.png" "$TILE_TO"
  TILED="$TMP/mosaic.png"
fi

LARGE_ARGS=()
if [ -n "$LARGE" ]; then
  LARGE_ARGS=(--large-min-size "${LARGE%,*}" --large-max-size "${LARGE#*,}")
fi
# One thread count for both sides (PoCL 3 reads POCL_MAX_PTHREAD_COUNT,
# later versions POCL_CPU_MAX_CU_NUM).
export POCL_MAX_PTHREAD_COUNT=$THREADS POCL_CPU_MAX_CU_NUM=$THREADS
PATCH=(--patch-size 400 --patch-overlap 0.05 --patch-iou 0.15)

OPENCL_TILED_ARGS=()
[ "$OPENCL_TILED" = 1 ] && OPENCL_TILED_ARGS=(--tiled "$TILED")
say "canopy: bench_retina ($REPEATS repeats)"
"$BUILD_DIR/bench_retina" --model "$CNW" --repeats "$REPEATS" "${OPENCL_TILED_ARGS[@]}" \
  "${PATCH[@]}" "${LARGE_ARGS[@]}" --json "$TMP/canopy.json" "${IMAGES[@]}"
CPU_ARGS=()
if [ -n "$CPU_BENCH" ]; then
  say "canopy: bench_retina_cpu (CPU backend, $THREADS threads, batch $CPU_BATCH)"
  "$CPU_BENCH" --model "$CNW" --repeats "$REPEATS" --threads "$THREADS" --batch "$CPU_BATCH" \
    --tiled "$TILED" "${PATCH[@]}" "${LARGE_ARGS[@]}" --json "$TMP/cpu.json" "${IMAGES[@]}"
  CPU_ARGS=(--cpu "$TMP/cpu.json")
fi
say "PyTorch: retina_torch.py ($DEVICE, $THREADS threads)"
"$PY" "$CANOPY_ROOT/bench/retina_torch.py" --model "$MODEL_DIR" --device "$DEVICE" \
  --threads "$THREADS" --repeats "$REPEATS" --tiled "$TILED" "${PATCH[@]}" \
  "${LARGE_ARGS[@]}" --json "$TMP/torch.json" "${IMAGES[@]}"

mkdir -p "$OUT"
"$PY" "$CANOPY_ROOT/bench/retina_report.py" --canopy "$TMP/canopy.json" \
  --torch "$TMP/torch.json" "${CPU_ARGS[@]}" --json "$OUT/retina.json" --md "$OUT/retina.md" \
  --note "$NOTE"
say "wrote $OUT/retina.json and $OUT/retina.md"
