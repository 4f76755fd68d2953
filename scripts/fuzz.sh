#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs them.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]   fuzz each target N seconds (default 60)
#   scripts/fuzz.sh --replay [TARGET...]        run each target over its in-tree corpus only
#   scripts/fuzz.sh --runs N --seed S [TARGET...]  N inputs per target from seed S,
#                 starting from the in-tree corpus only: the same inputs on
#                 every machine (what test.sh and CI run)
#
#   TARGET        message, s3_xml, aws_error, sqs_json, config, aws_profile, png,
#                 raster, cnw, safetensors (with or without the fuzz_ prefix);
#                 default: all
#   --seconds N   time per target
#   --replay      no fuzzing: every file of tests/fuzz/corpus/<target> once (CI)
#   --runs N      fuzz N inputs per target instead of for a time
#   --seed S      libFuzzer's random seed (default: chosen by libFuzzer)
#   --no-build    use the targets already built
#
# Build directory: build-fuzz/ (override with CANOPY_FUZZ_BUILD_DIR). New
# corpus entries go to build-fuzz/corpus/<target>, never into the tree; a
# crash, leak, timeout or out-of-memory input is written to
# build-fuzz/artifacts/<target>/ and its path printed. Exits 1 when any target
# found something (or did not build). Add a reproducer to the tree's corpus
# once the bug is fixed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=60
runs=
seed=
replay=0
build=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) [ $# -ge 2 ] || die "--seconds needs N"; seconds=$2; shift ;;
    --seconds=*) seconds=${1#--seconds=} ;;
    --runs) [ $# -ge 2 ] || die "--runs needs N"; runs=$2; shift ;;
    --seed) [ $# -ge 2 ] || die "--seed needs S"; seed=$2; shift ;;
    --replay) replay=1 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option: $1 (see --help)" ;;
    *) targets+=("fuzz_${1#fuzz_}") ;;
  esac
  shift
done
case "$seconds" in ''|*[!0-9]*) die "--seconds needs a whole number" ;; esac
case "$runs" in *[!0-9]*) die "--runs needs a whole number" ;; esac
case "$seed" in *[!0-9]*) die "--seed needs a whole number" ;; esac

BUILD_DIR=${CANOPY_FUZZ_BUILD_DIR:-$CANOPY_ROOT/build-fuzz}
CORPUS_SRC=$CANOPY_ROOT/tests/fuzz/corpus

if [ $build = 1 ]; then
  command -v clang >/dev/null || die "clang not found (scripts/bootstrap.sh installs it)"
  say "building the fuzz targets in $BUILD_DIR (clang, libFuzzer, ASan + UBSan)"
  cmake -S "$CANOPY_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER=clang -DCANOPY_FUZZ=ON >&2 || die "configure failed"
  cmake --build "$BUILD_DIR" -j"$(canopy_jobs)" --target fuzz_targets >&2 || die "build failed"
fi

if [ ${#targets[@]} -eq 0 ]; then
  for src in "$CANOPY_ROOT"/tests/fuzz/fuzz_*.c; do
    targets+=("$(basename "$src" .c)")
  done
fi

# Leaks are findings; ASan aborts so that libFuzzer writes the input out.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Inputs bigger than libFuzzer's default (4 KiB) for the file formats.
max_len() {
  case "$1" in
    fuzz_png|fuzz_raster|fuzz_cnw) echo 65536 ;;
    *) echo 8192 ;;
  esac
}

found=()
for t in "${targets[@]}"; do
  bin=$BUILD_DIR/fuzz/$t
  [ -x "$bin" ] || { say "$t: not built ($bin)"; found+=("$t:missing"); continue; }
  [ -d "$CORPUS_SRC/$t" ] || die "$t: no seed corpus in $CORPUS_SRC/$t"
  artifacts=$BUILD_DIR/artifacts/$t
  mkdir -p "$artifacts"
  log=$BUILD_DIR/artifacts/$t.log
  # Bounded memory: one allocation over 512 MiB, or 2 GiB in all, is a finding.
  args=(-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=20 -max_len="$(max_len "$t")"
        -artifact_prefix="$artifacts/" -print_final_stats=1)
  before=$(ls "$artifacts" | wc -l)
  if [ $replay = 1 ]; then
    say "$t: replaying $(ls "$CORPUS_SRC/$t" | wc -l) inputs of tests/fuzz/corpus/$t"
    rc=0; "$bin" "${args[@]}" -runs=0 "$CORPUS_SRC/$t" >"$log" 2>&1 || rc=$?
  else
    [ -n "$seed" ] && args+=(-seed="$seed")
    if [ -n "$runs" ]; then
      # Reproducible: a fresh corpus each time, so that the inputs depend on
      # the tree and the seed only, not on what earlier runs here found.
      corpus=$BUILD_DIR/corpus-fixed/$t
      rm -rf "$corpus"; mkdir -p "$corpus"
      say "$t: fuzzing $runs inputs${seed:+ from seed $seed}"
      limit=(-runs="$runs")
    else
      corpus=$BUILD_DIR/corpus/$t
      mkdir -p "$corpus"
      say "$t: fuzzing for ${seconds}s (new inputs in $corpus)"
      limit=(-max_total_time="$seconds")
    fi
    rc=0; "$bin" "${args[@]}" "${limit[@]}" "$corpus" "$CORPUS_SRC/$t" \
            >"$log" 2>&1 || rc=$?
  fi
  stats=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
  if [ $rc -ne 0 ] || [ "$(ls "$artifacts" | wc -l)" -ne "$before" ]; then
    tail -n 40 "$log" >&2
    repro=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -n 1 | sed 's/.* to //' || true)
    say "$t: FAILED (exit $rc)${repro:+; reproducer: $repro}; log: $log"
    [ -n "$repro" ] && say "  replay: $bin $repro"
    found+=("$t")
  else
    say "$t: ok (${stats:-?} executions)"
  fi
done

if [ ${#found[@]} -ne 0 ]; then
  say "FAIL: ${found[*]}"
  exit 1
fi
say "PASS: ${#targets[@]} targets"
