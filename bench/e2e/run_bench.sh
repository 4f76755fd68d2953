#!/usr/bin/env bash
# End-to-end benchmark: canopy drain vs a baseline Python worker (boto3 +
# OpenCV, one message at a time) on the same local emulator, images and
# machine, and vs the codec-bound limit. Writes bench/results/e2e.json and
# bench/results/e2e.md.
#
#   bench/e2e/run_bench.sh [--count N] [--runs R] [--modes M1,M2] [--model FILE]
#
# Needs scripts/bootstrap.sh done (Debian packages, .venv). Builds canopy in
# build/ (CANOPY_BUILD_DIR), the baseline's venv in .cache/bench-venv, and
# runs its own private stack under /tmp, stopped on exit.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

HERE="$CANOPY_ROOT/bench/e2e"
BUILD_DIR=${CANOPY_BUILD_DIR:-$CANOPY_ROOT/build}
BENCH_VENV=${CANOPY_BENCH_VENV:-$CANOPY_ROOT/.cache/bench-venv}
NEON=${CANOPY_NEON_DIR:-$CANOPY_ROOT/tests/data/neon}

[ -x "$CANOPY_VENV_PY" ] || die "no $CANOPY_VENV: run scripts/bootstrap.sh first"
[ -d "$NEON" ] || die "NEON images not found in $NEON (set CANOPY_NEON_DIR)"

say "building $BUILD_DIR"
canopy_build "$BUILD_DIR" || die "build failed"

if ! "$BENCH_VENV/bin/python" -c 'import cv2, boto3, numpy' 2>/dev/null; then
  say "baseline venv: $BENCH_VENV"
  /usr/bin/python3 -m venv "$BENCH_VENV"
  "$BENCH_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
fi

say "building codec_limit"
# shellcheck disable=SC2046  # pkg-config output is a list of flags
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror \
  -I"$CANOPY_ROOT/include" -I"$CANOPY_ROOT/src" "$HERE/codec_limit.c" \
  "$BUILD_DIR/libcanopy_lib.a" \
  $(pkg-config --libs OpenCL clblast libcurl libpng16 libpq inih libcjson expat libcrypto zlib gdal) \
  -lpthread -lm -o "$BUILD_DIR/codec_limit"

# A private stack, so that the numbers are not shared with tests running beside.
export CANOPY_STACK_DIR
CANOPY_STACK_DIR=$(mktemp -d /tmp/canopy-bench-stack.XXXXXX)
TMP=$(mktemp -d /tmp/canopy-bench.XXXXXX)
cleanup() {
  bash "$CANOPY_ROOT/scripts/stack.sh" clean >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bash "$CANOPY_ROOT/scripts/stack.sh" start
# shellcheck disable=SC1091
. "$CANOPY_STACK_DIR/env"

"$CANOPY_VENV_PY" "$HERE/run_bench.py" --canopy "$BUILD_DIR/canopy" \
  --codec-limit "$BUILD_DIR/codec_limit" --baseline-python "$BENCH_VENV/bin/python" \
  --images "$NEON" --out "$CANOPY_ROOT/bench/results" --tmp "$TMP" "$@"
