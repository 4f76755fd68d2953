#!/usr/bin/env bash
# Issue 19's target, measured: one DeepForest patch (OSBS_029.png, 400 x 400,
# upscaled to 800 x 800 by the model's transform at min_size 800) through the
# imported RetinaNet, in one run of this script:
#   before  canopy as before issue 19: CLBlast's default parameters, im2col +
#           SGEMM for every conv (CANOPY_OPENCL_TUNING_FILE=off,
#           CANOPY_DETECTOR_CONV=gemm);
#   now     CLBlast tuned by `canopy tune` on the model's GEMM shapes, every
#           conv's path (direct, im2col + SGEMM, Winograd) by measurement;
#   PyTorch the same weights in torchvision, same threads (or CUDA: TF32 off
#           and/or on, --tf32);
# medians of --repeats (predict_tile on the one patch, the engine created
# and its paths measured before the clock starts); then one profiled predict
# of "now" for each conv's GFLOP/s against a bare tuned CLBlast SGEMM of the
# same M x N x K. Writes OUT/NAME.json and OUT/NAME.md (retina_patch_report.py).
#
#   bench/retina_patch.sh [--repeats N] [--rounds N] [--threads N] [--device cpu|cuda]
#                         [--tf32 "off on"] [--tune-budget S | --tuning FILE]
#                         [--name NAME] [--out DIR] [--no-build] [--min-size N]
#
# --rounds: before, now and PyTorch run in turn N times (each --repeats
# runs), so that on a shared machine all three see the same load; the
# figures are the medians over the rounds of each round's median.
# Defaults: 3 repeats, 1 round, nproc threads, cpu, tune budget 240 s, name
# retina_patch, out bench/results, min_size 800 (DeepForest's; max 1333).
# --no-build: use CANOPY_BUILD_DIR as it is (bench/gpu.sh builds the
# device-only set itself). --min-size: a smaller fixture, for a quick check
# of the flow. Environment as bench/retina.sh (CANOPY_BUILD_DIR,
# CANOPY_TORCH_PYTHON, CANOPY_NEON_DIR, CANOPY_MAKE_FIXTURE).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/retina_env.sh"
REPEATS=3 ROUNDS=1 THREADS=$(nproc) DEVICE=cpu TF32="" TUNE_BUDGET=240 TUNING="" NAME=retina_patch
OUT="$CANOPY_ROOT/bench/results" BUILD=1 MIN_SIZE=800
while [ $# -gt 0 ]; do
  case $1 in
    --repeats) REPEATS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --tf32) TF32=$2; shift 2 ;;
    --tune-budget) TUNE_BUDGET=$2; shift 2 ;;
    --tuning) TUNING=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --min-size) MIN_SIZE=$2; shift 2 ;;
    *) die "unknown argument $1 (see the comment at the top of $0)" ;;
  esac
done
[ -x "$PY" ] || command -v "$PY" >/dev/null || die "no $PY: set CANOPY_TORCH_PYTHON"
PATCH_IMG="$NEON/OSBS_029.png"
[ -f "$PATCH_IMG" ] || die "no $PATCH_IMG (set CANOPY_NEON_DIR)"
[ -n "$TF32" ] || TF32=default
TMP=$(mktemp -d /tmp/canopy-retina-patch.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
if [ "$BUILD" = 1 ]; then
  say "building bench_retina and canopy in $BUILD_DIR"
  cmake -S "$CANOPY_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build "$BUILD_DIR" -j"$(canopy_jobs)" --target bench_retina canopy >&2
fi
export POCL_MAX_PTHREAD_COUNT=$THREADS POCL_CPU_MAX_CU_NUM=$THREADS
t0=$(date +%s)
say "fixture: make_fixture.py --seed 7, min_size $MIN_SIZE (DeepForest's architecture)"
"$PY" "$MAKE_FIXTURE" --seed 7 --out "$TMP/fx" --min-size "$MIN_SIZE" --max-size 1333 \
  --layout hf >&2
MODEL_DIR="$TMP/fx/hf"
[ -f "$MODEL_DIR/config.json" ] || MODEL_DIR="$TMP/fx"
CNW="$TMP/model.cnw"
"$BUILD_DIR/canopy" model import "$MODEL_DIR" --output "$CNW" >&2
TUNED_HERE=0
if [ -z "$TUNING" ]; then
  TUNED_HERE=1
  say "canopy tune (budget $TUNE_BUDGET s) on the model's GEMM shapes"
  TUNING="$TMP/tuning.txt"
  "$BUILD_DIR/canopy" tune --model "$CNW" --budget "$TUNE_BUDGET" --output "$TUNING" \
    --set detector.patch_size=400 >&2
fi
t_tune=$(date +%s)
PATCH=(--tiled "$PATCH_IMG" --tiled-only --patch-size 400 --patch-overlap 0.05 --patch-iou 0.15)
REPORT_ARGS=()
for round in $(seq 1 "$ROUNDS"); do
  say "round $round of $ROUNDS: before: CLBlast's defaults, im2col + SGEMM for every conv ($REPEATS repeats)"
  CANOPY_OPENCL_CACHE_DIR="$TMP/cache-before" CANOPY_OPENCL_TUNING_FILE=off \
    CANOPY_DETECTOR_CONV=gemm "$BUILD_DIR/bench_retina" --model "$CNW" --repeats "$REPEATS" \
    "${PATCH[@]}" --json "$TMP/before-$round.json" >&2
  say "round $round: now: tuned CLBlast, every conv's path by measurement ($REPEATS repeats)"
  CANOPY_OPENCL_CACHE_DIR="$TMP/cache-now" CANOPY_OPENCL_TUNING_FILE="$TUNING" \
    CANOPY_DETECTOR_CONV=auto "$BUILD_DIR/bench_retina" --model "$CNW" --repeats "$REPEATS" \
    "${PATCH[@]}" --json "$TMP/now-$round.json" >&2
  REPORT_ARGS+=(--before "$TMP/before-$round.json" --now "$TMP/now-$round.json")
  for v in $TF32; do
    say "round $round: PyTorch: $DEVICE, $THREADS threads, TF32 $v ($REPEATS repeats)"
    "$PY" "$CANOPY_ROOT/bench/retina_torch.py" --model "$MODEL_DIR" --device "$DEVICE" \
      --threads "$THREADS" --repeats "$REPEATS" "${PATCH[@]}" --tf32 "$v" \
      --json "$TMP/torch-$v-$round.json" >&2
    REPORT_ARGS+=(--torch "$v=$TMP/torch-$v-$round.json")
  done
done
say "now, per layer: one profiled predict against bare tuned SGEMMs of the same shapes"
CANOPY_OPENCL_CACHE_DIR="$TMP/cache-now" CANOPY_OPENCL_TUNING_FILE="$TUNING" \
  CANOPY_DETECTOR_CONV=auto "$BUILD_DIR/bench_retina" --model "$CNW" --repeats 1 \
  --json "$TMP/layers.json" "$PATCH_IMG" >&2
mkdir -p "$OUT"
"$PY" "$CANOPY_ROOT/bench/retina_patch_report.py" "${REPORT_ARGS[@]}" \
  --layers "$TMP/layers.json" --tuning "$TUNING" \
  --tune-seconds $([ "$TUNED_HERE" = 1 ] && echo $((t_tune - t0)) || echo -1) --total-seconds $(($(date +%s) - t0)) \
  --json "$OUT/$NAME.json" --md "$OUT/$NAME.md"
say "wrote $OUT/$NAME.json and $OUT/$NAME.md"
