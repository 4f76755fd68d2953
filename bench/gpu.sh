#!/usr/bin/env bash
# Everything a lent GPU machine should run, in one go and under 8 minutes:
# on a bare CUDA image (CMake, a compiler and PyTorch; no package registry,
# no network) it unpacks the Debian .debs that bench/gpu-deps.sh downloaded
# beforehand (bench/gpu-deps/debs, carried with the tree) into
# bench/gpu-deps/root (never into /), builds the device-only targets
# against them (-DCANOPY_DEVICE_ONLY=ON, cmake/device_only.cmake), finds
# NVIDIA's OpenCL driver (writing an ICD file for libnvidia-opencl.so.1 into
# a private OCL_ICD_VENDORS directory when the image registers none), runs
# the kernel and model tests on the GPU, tunes CLBlast, and runs
# bench/retina_patch.sh with PyTorch CUDA as the peer (FP32 with TF32 off,
# and TF32 on), and bench_detect (the crown model; no PyTorch peer for it
# yet). Writes bench/results/gpu-tests.json, gpu-detect.json,
# gpu-retina.json and gpu-retina.md (commit them).
#
#   bench/gpu.sh [--quick]
#
# On this project's lent machines: run(command="bench/gpu.sh",
# carry=["bench/gpu-deps"]) after bench/gpu-deps.sh here.
#
# --quick: the flow alone (two kernel tests, a 320 fixture, a 10 s tune, one
#   repeat; figures into the build directory, not bench/results): for
#   checking the script on a machine without a GPU.
# Environment: CANOPY_GPU_OPENCL=nvidia (default) or system (use the ICDs
#   the machine registers, e.g. PoCL standing in for the GPU),
#   CANOPY_GPU_TORCH_DEVICE (cuda; cpu with PoCL), CANOPY_TORCH_PYTHON
#   (python3), CANOPY_GPU_DEPS_DIR (bench/gpu-deps), CANOPY_BUILD_DIR
#   (build-gpu), CANOPY_GPU_TUNE_BUDGET (60 s).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
DEPS=${CANOPY_GPU_DEPS_DIR:-$CANOPY_ROOT/bench/gpu-deps}
BUILD_DIR=${CANOPY_BUILD_DIR:-$CANOPY_ROOT/build-gpu}
OPENCL=${CANOPY_GPU_OPENCL:-nvidia}
TORCH_DEVICE=${CANOPY_GPU_TORCH_DEVICE:-cuda}
PY=${CANOPY_TORCH_PYTHON:-python3}
TUNE_BUDGET=${CANOPY_GPU_TUNE_BUDGET:-60}
OUT=$CANOPY_ROOT/bench/results
[ "$QUICK" = 1 ] && OUT=$BUILD_DIR/quick-results # a flow check's figures are no results
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }

# 1. The .debs, unpacked into the tree.
ls "$DEPS"/debs/*.deb >/dev/null 2>&1 || die "no .debs in $DEPS/debs: run bench/gpu-deps.sh first"
if [ -f "$DEPS/SHA256SUMS" ]; then
  (cd "$DEPS/debs" && sha256sum --quiet -c ../SHA256SUMS) || die "$DEPS/debs: checksums differ"
fi
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (it unpacks the .debs)"
ROOT=$DEPS/root
rm -rf "$ROOT"
mkdir -p "$ROOT"
for d in "$DEPS"/debs/*.deb; do dpkg-deb -x "$d" "$ROOT"; done
LIBDIR=$(dirname "$(find "$ROOT/usr/lib" -name 'libclblast.so.1' | head -1)")
[ -d "$LIBDIR" ] || die "libclblast.so.1 not found in the unpacked .debs"
export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "unpacked $(ls "$DEPS"/debs/*.deb | wc -l) .debs into $ROOT ($(elapsed) s)"

# 2. The OpenCL driver.
if [ "$OPENCL" = nvidia ]; then
  if [ -z "${OCL_ICD_VENDORS:-}" ] && ! grep -qls nvidia /etc/OpenCL/vendors/*.icd 2>/dev/null; then
    lib=$( (ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/{print $NF; exit}') || true)
    for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/nvidia/lib64 /usr/lib; do
      [ -n "$lib" ] || [ ! -e "$d/libnvidia-opencl.so.1" ] || lib=$d/libnvidia-opencl.so.1
    done
    [ -n "$lib" ] || die "NVIDIA's OpenCL driver (libnvidia-opencl.so.1) not found"
    mkdir -p "$DEPS/vendors"
    echo "$lib" > "$DEPS/vendors/nvidia.icd"
    export OCL_ICD_VENDORS=$DEPS/vendors
    say "no NVIDIA ICD registered: wrote $DEPS/vendors/nvidia.icd -> $lib"
  fi
  export CANOPY_OPENCL_PLATFORM=${CANOPY_OPENCL_PLATFORM:-NVIDIA}
fi

# 3. The device-only build, against the unpacked packages only.
say "configuring the device-only build in $BUILD_DIR"
cmake -S "$CANOPY_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCANOPY_DEVICE_ONLY=ON \
  -DCMAKE_FIND_ROOT_PATH="$ROOT" -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY \
  -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY -DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY \
  -DCANOPY_TORCH_PYTHON="$(command -v "$PY" || echo "$PY")" >&2
cmake --build "$BUILD_DIR" -j"$(canopy_jobs)" >&2
say "built ($(elapsed) s)"
export CANOPY_OPENCL_CACHE_DIR=$BUILD_DIR/opencl-cache
"$BUILD_DIR/canopy" devices

# 4. Kernel and model tests on the device.
TESTS='test_topk|test_winograd|test_graph_engine|test_detect_engine|test_backend_ops|test_graph_bench|test_detect_nms|test_tuning'
[ "$QUICK" = 1 ] && TESTS='test_topk|test_winograd'
mkdir -p "$OUT"
set +e
(cd "$BUILD_DIR" && ctest -R "^($TESTS)\$" -j4 --timeout 240 --output-on-failure) \
  > "$BUILD_DIR/gpu-tests.log" 2>&1
set -e
tail -n 40 "$BUILD_DIR/gpu-tests.log" >&2
"$PY" - "$BUILD_DIR/gpu-tests.log" "$OUT/gpu-tests.json" "$("$BUILD_DIR/canopy" devices 2>&1 | head -20)" <<'PYEOF'
import json, re, sys
log = open(sys.argv[1]).read()
rows = re.findall(r"Test +#\d+: (\S+) \.+\**\s*(Passed|Failed|\*\*\*\w+|Not Run|Skipped|\w+)\s+([\d.]+) sec", log)
res = {"devices": sys.argv[3], "tests": [{"name": n, "result": r, "seconds": float(s)} for n, r, s in rows]}
res["passed"] = sum(1 for t in res["tests"] if t["result"] == "Passed")
res["total"] = len(res["tests"])
json.dump(res, open(sys.argv[2], "w"), indent=2)
print(f"tests: {res['passed']} of {res['total']} passed", file=sys.stderr)
PYEOF
say "tests done ($(elapsed) s)"

# 5. The crown model's bench on the device (no PyTorch peer exists for it yet).
SIZE=2048x2048 REPS=5
[ "$QUICK" = 1 ] && SIZE=256x256 REPS=1
timeout 120 "$BUILD_DIR/bench_detect" --size "$SIZE" --repeats "$REPS" --no-ref \
  --json "$OUT/gpu-detect.json" >&2 || say "bench_detect failed or ran past 120 s"
say "crown bench done ($(elapsed) s)"

# 6. Tune, then the patch bench against PyTorch (TF32 off and on).
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  die "$PY has no torch + torchvision: the tests ran ($OUT/gpu-tests.json), the bench did not"
fi
ARGS=(--no-build --device "$TORCH_DEVICE" --tune-budget "$TUNE_BUDGET" --name gpu-retina
      --out "$OUT")
[ "$TORCH_DEVICE" = cuda ] && ARGS+=(--tf32 "off on")
[ "$QUICK" = 1 ] && ARGS=(--no-build --device "$TORCH_DEVICE" --tune-budget 10 --repeats 1
                          --min-size 320 --name gpu-retina --out "$OUT")
CANOPY_BUILD_DIR=$BUILD_DIR CANOPY_TORCH_PYTHON=$PY "$CANOPY_ROOT/bench/retina_patch.sh" "${ARGS[@]}"
say "done in $(elapsed) s: $OUT/gpu-tests.json, $OUT/gpu-retina.json, $OUT/gpu-retina.md"
