#!/usr/bin/env bash
# canopy on a machine with no OpenCL driver at all: OCL_ICD_VENDORS names an
# empty directory, so the ICD loader finds no platform. `canopy run` must
# then run the models on the CPU backend and binarize on the C path, say so
# in its first log line, and give the OpenCL run's outputs: masks byte for
# byte (otsu, fixed, adaptive; luma and exg), trees within the CPU backend's
# tolerance (centre 0.02 px and score 1e-4 as test_cpu_backend, plus the
# rounding of trees.json); the CPU backend's conv choices are remembered in
# [opencl] cache_dir without a driver too, so a second run gives the same
# trees byte for byte. `canopy devices` and `canopy eval` run too; an
# explicit `[device] backend = opencl` is refused naming the missing driver.
#
# usage: no_opencl.sh CANOPY SOURCE_DIR        (exit 77: no OpenCL here to compare)
set -uo pipefail
canopy=$1
src=$2
neon=$src/tests/data/neon
model=$src/models/crown-1.1.cnw
work=$(mktemp -d /tmp/no_opencl.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/vendors"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
nodrv() { OCL_ICD_VENDORS=$work/vendors "$@"; }

# The OpenCL run first: models and binarization on the OpenCL device.
if ! "$canopy" run -i "$neon" -o "$work/ocl" --model "$model" --set device.backend=opencl \
    >"$work/ocl.log" 2>&1; then
    if grep -q "no OpenCL" "$work/ocl.log"; then
        echo "no OpenCL device here: nothing to compare against"
        exit 77
    fi
    cat "$work/ocl.log"
    exit 1
fi

cache=(--set "opencl.cache_dir=$work/cache")
nodrv "$canopy" run -i "$neon" -o "$work/none" --model "$model" "${cache[@]}" \
    >"$work/none.log" 2>&1 || fail "run without a driver: exit $? ($(tail -1 "$work/none.log"))"
# The CPU backend's measured conv choices are remembered in the cache
# directory without a driver too, so a second run chooses alike: the same
# trees, byte for byte.
ls "$work"/cache/cpu-conv-choices-*.txt >/dev/null 2>&1 ||
    fail "no cpu-conv-choices file in $work/cache after a run without a driver"
nodrv "$canopy" run -i "$neon" -o "$work/none2" --model "$model" "${cache[@]}" \
    >"$work/none2.log" 2>&1 || fail "second run without a driver: exit $?"
for t in "$work"/none/*.trees.json; do
    cmp -s "$t" "$work/none2/$(basename "$t")" || fail "$(basename "$t") differs on the second run"
done
first=$(grep -m1 "info  run: models\|info  run: binarization" "$work/none.log")
case $first in
*"models on the cpu backend"*"binarization on the CPU (C path; no OpenCL device"*) ;;
*) fail "the run's first device line: '$first'" ;;
esac
n=0
for m in "$work"/ocl/*.mask.png; do
    cmp -s "$m" "$work/none/$(basename "$m")" || fail "$(basename "$m") differs"
    n=$((n + 1))
done
[ "$n" = 3 ] || fail "$n masks compared, expected 3"

python3 - "$work/ocl" "$work/none" <<'EOF' || fail "trees differ"
import glob, json, os, sys
a_dir, b_dir = sys.argv[1:3]
bad = total = 0
for fa in sorted(glob.glob(os.path.join(a_dir, "*.trees.json"))):
    a = json.load(open(fa))["trees"]
    b = json.load(open(os.path.join(b_dir, os.path.basename(fa))))["trees"]
    def found(p, q):
        return sum(any(abs(s["x"] - t["x"]) < 0.03 and abs(s["y"] - t["y"]) < 0.03 and
                       abs(s["score"] - t["score"]) < 2e-4 for t in q) for s in p)
    x, y = found(a, b), found(b, a)
    print(f"{os.path.basename(fa)}: opencl {len(a)} trees, no driver {len(b)}; "
          f"{x} / {y} found both ways")
    bad += len(a) - x > len(a) // 50 or len(b) - y > len(b) // 50
    total += len(a)
sys.exit(1 if bad or total < 100 else 0)
EOF

# Binarization alone, every method and channel: byte-identical masks.
for args in "--method otsu --channel exg" "--method fixed --threshold 120" \
    "--method adaptive" "--method adaptive --channel exg --set binarize.window=255"; do
    # shellcheck disable=SC2086
    "$canopy" run -i "$neon" -o "$work/b-ocl" --no-detector $args >/dev/null 2>&1 ||
        fail "binarization ($args) on OpenCL"
    # shellcheck disable=SC2086
    nodrv "$canopy" run -i "$neon" -o "$work/b-none" --no-detector $args \
        >"$work/b.log" 2>&1 || fail "binarization ($args) without a driver"
    grep -q "binarization on the CPU (C path" "$work/b.log" || fail "($args): no C path line"
    for m in "$work"/b-ocl/*.mask.png; do
        cmp -s "$m" "$work/b-none/$(basename "$m")" || fail "($args) $(basename "$m") differs"
    done
    rm -rf "$work/b-ocl" "$work/b-none"
done

# A GeoTIFF larger than [limits] window_pixels streams through windows: the
# same mask as the OpenCL run's windows, the same trees as the whole image.
if command -v gdal_translate >/dev/null; then
    gdal_translate -q -of GTiff -a_srs EPSG:32617 -a_ullr 400000 3300000 400070 3299896.5 \
        "$neon/YELL_541000_west.png" "$work/yell.tif"
    win=(--set limits.window_pixels=200000)
    "$canopy" run -i "$work/yell.tif" -o "$work/w-ocl" --no-detector "${win[@]}" >/dev/null 2>&1 ||
        fail "windowed binarization on OpenCL"
    nodrv "$canopy" run -i "$work/yell.tif" -o "$work/w-none" --model "$model" "${win[@]}" \
        >/dev/null 2>&1 || fail "windowed run without a driver"
    cmp -s "$work/w-ocl/yell.mask.tif" "$work/w-none/yell.mask.tif" || fail "windowed masks differ"
    a=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["trees"]))' \
        "$work/w-none/yell.trees.json")
    b=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["trees"]))' \
        "$work/none/YELL_541000_west.trees.json")
    [ "$a" = "$b" ] || fail "windowed without a driver: $a trees, whole image $b"
else
    echo "no gdal_translate: the windowed case is left out"
fi

out=$(nodrv "$canopy" devices 2>&1) || fail "devices without a driver: $out"
grep -q "^no OpenCL device: no OpenCL platform found" <<<"$out" || fail "devices: $out"
grep -q "^models: cpu backend (oneDNN.*no OpenCL device)" <<<"$out" || fail "devices: $out"

out=$(nodrv "$canopy" eval --json --images "$neon" --annotations "$neon" --model "$model" 2>&1) ||
    fail "eval without a driver: $out"
grep -q '"device":.*cpu backend.*no OpenCL device' <<<"$out" || fail "eval's device: $out"

out=$(nodrv "$canopy" run -i "$neon" -o "$work/x" --model "$model" \
    --set device.backend=opencl 2>&1) && fail "backend = opencl without a driver ran"
grep -q "no OpenCL platform found" <<<"$out" || fail "backend = opencl: $out"

[ "$fails" = 0 ] && echo "no_opencl: all checks passed"
exit $((fails > 0))
