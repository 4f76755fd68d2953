#!/usr/bin/env bash
# Builds canopy and runs every ctest test against a private local stack, then
# builds with AddressSanitizer + UndefinedBehaviorSanitizer and runs them again.
#
# Last, the fuzz step: builds the libFuzzer targets with clang, replays each
# one's corpus in tests/fuzz/corpus and fuzzes each for a fixed number of
# inputs from a fixed seed, so that every machine tries the same inputs and a
# run that passed here passes in CI (scripts/fuzz.sh; the long, random runs
# are for people).
#
#   scripts/test.sh [--no-asan] [--no-fuzz] [--only REGEX] [--check]
#
#   --check       check the prerequisites (Debian 12, root or sudo, disk) and
#                 print what bootstrap would install, then stop
#   --no-asan     skip the sanitizer build and run
#   --no-fuzz     skip the fuzz step
#   --only REGEX  run only the tests whose name matches REGEX (ctest -R)
#
# Build directories: build/, build-asan/ and build-fuzz/ (override with
# CANOPY_BUILD_DIR, CANOPY_ASAN_BUILD_DIR and CANOPY_FUZZ_BUILD_DIR;
# CANOPY_FUZZ_RUNS and CANOPY_FUZZ_SEED set the inputs per target and the
# seed, default 20000 and 1). The
# stack (PostgreSQL + moto) runs from a fresh directory under /tmp for this
# run only and is always stopped on exit, so a stack a developer started with
# scripts/stack.sh is left alone.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

asan=1
fuzz=1
check=
only=
while [ $# -gt 0 ]; do
  case "$1" in
    --no-asan) asan=0 ;;
    --no-fuzz) fuzz=0 ;;
    --check) check=--check ;;
    --only) [ $# -ge 2 ] || die "--only needs a REGEX"; only=$2; shift ;;
    --only=*) only=${1#--only=} ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done

BUILD_DIR=${CANOPY_BUILD_DIR:-$CANOPY_ROOT/build}
ASAN_BUILD_DIR=${CANOPY_ASAN_BUILD_DIR:-$CANOPY_ROOT/build-asan}
failed=()

# finish: the last line says whether everything passed.
finish() {
  if [ ${#failed[@]} -eq 0 ]; then
    echo "test.sh: PASS ($( [ $asan = 1 ] && echo 'normal and sanitizer runs' || echo 'normal run; sanitizers skipped'); $( [ $fuzz = 1 ] && echo 'fuzz targets replayed and fuzzed' || echo 'fuzzing skipped'))"
    exit 0
  fi
  echo "test.sh: FAIL (${failed[*]})"
  exit 1
}

# Inherited settings (a sourced .stack/env, CANOPY_<SECTION>_<KEY> overrides,
# AWS profiles or libpq service files) must not leak into the tests.
while IFS= read -r var; do
  case "$var" in
    CANOPY_BUILD_DIR|CANOPY_ASAN_BUILD_DIR|CANOPY_FUZZ_BUILD_DIR|CANOPY_FUZZ_RUNS|CANOPY_FUZZ_SEED|CANOPY_JOBS) ;;
    CANOPY_OS_RELEASE|CANOPY_MIN_FREE_MB|CANOPY_SUDO) ;; # bootstrap's prerequisite checks
    *) unset "$var" ;;
  esac
done < <(compgen -e | grep -E '^(AWS_|PG|CANOPY_)' || true)

# The stack is stopped however the script ends (bash runs a signal's trap
# once the command in the foreground has returned).
CANOPY_STACK_DIR=
stop_stack() {
  [ -n "$CANOPY_STACK_DIR" ] || return 0
  bash "$CANOPY_ROOT/scripts/stack.sh" clean >/dev/null 2>&1 || true
}
trap stop_stack EXIT
trap 'stop_stack; trap - INT; kill -INT $$' INT
trap 'stop_stack; exit 143' TERM

# The prerequisites are checked before anything is installed or built; the
# tests need torch (.venv-torch: the RetinaNet parity tests).
if [ -n "$check" ]; then
  exec bash "$CANOPY_ROOT/scripts/bootstrap.sh" --torch --check
fi
bash "$CANOPY_ROOT/scripts/bootstrap.sh" --torch || { failed+=(bootstrap); finish; }

say "building $BUILD_DIR"
canopy_build "$BUILD_DIR" || { failed+=(build); finish; }

# --- the stack, private to this run ---------------------------------------------
export CANOPY_STACK_DIR
CANOPY_STACK_DIR=$(mktemp -d /tmp/canopy-test-stack.XXXXXX)
bash "$CANOPY_ROOT/scripts/stack.sh" start || { failed+=(stack); finish; }
# shellcheck disable=SC1091
. "$CANOPY_STACK_DIR/env"
export CANOPY_TEST_REQUIRE_STACK=1

# run_ctest DIR LABEL: runs the tests of build DIR; records LABEL on failure.
run_ctest() {
  local dir=$1 label=$2 args=(--output-on-failure -j2)
  [ -n "$only" ] && args+=(-R "$only")
  say "running the tests in $dir ($label)"
  if ! (cd "$dir" && CANOPY_OPENCL_CACHE_DIR="$dir/opencl-cache" ctest "${args[@]}"); then
    failed+=("$label tests")
  fi
}

run_ctest "$BUILD_DIR" normal

if [ $asan = 1 ]; then
  say "building $ASAN_BUILD_DIR (AddressSanitizer + UndefinedBehaviorSanitizer)"
  if canopy_build "$ASAN_BUILD_DIR" -DCANOPY_SANITIZE=ON; then
    # A test of the first run may have left PostgreSQL stopped: re-check.
    bash "$CANOPY_ROOT/scripts/stack.sh" start || { failed+=(stack); finish; }
    # shellcheck disable=SC1091
    . "$CANOPY_STACK_DIR/env"
    ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
    LSAN_OPTIONS="suppressions=$CANOPY_ROOT/scripts/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      run_ctest "$ASAN_BUILD_DIR" sanitizer
  else
    failed+=("sanitizer build")
  fi
fi

# --- fuzz step: the targets keep building and their corpus keeps passing ------
if [ $fuzz = 1 ]; then
  say "fuzz step: building the libFuzzer targets, replaying tests/fuzz/corpus, fuzzing ${CANOPY_FUZZ_RUNS:-20000} inputs each from seed ${CANOPY_FUZZ_SEED:-1}"
  fuzz_start=$SECONDS
  if bash "$CANOPY_ROOT/scripts/fuzz.sh" --replay &&
     bash "$CANOPY_ROOT/scripts/fuzz.sh" --no-build --runs "${CANOPY_FUZZ_RUNS:-20000}" \
       --seed "${CANOPY_FUZZ_SEED:-1}"; then
    say "fuzz step: passed in $((SECONDS - fuzz_start))s"
  else
    failed+=("fuzz")
  fi
fi

finish
