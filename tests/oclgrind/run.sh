#!/bin/sh
# Runs the kernel driver under Oclgrind:  run.sh DRIVER PART [OCLGRIND OPTIONS]
# Fails when Oclgrind reports anything (its log is not empty) or the driver
# fails; 77 (skipped) without oclgrind unless CANOPY_TEST_REQUIRE_OCLGRIND=1.
driver=$1
part=$2
shift 2
if ! command -v oclgrind >/dev/null 2>&1; then
  if [ "${CANOPY_TEST_REQUIRE_OCLGRIND:-0}" = 1 ]; then
    echo "FAIL: CANOPY_TEST_REQUIRE_OCLGRIND=1 but oclgrind is not installed" >&2
    exit 1
  fi
  echo "SKIP: oclgrind is not installed (Debian package oclgrind)"
  exit 77
fi
log=$(mktemp)
cache=$(mktemp -d)
trap 'rm -rf "$log" "$cache"' EXIT
# Not --uninitialized: Oclgrind 21.10's plugin for it is broken three ways
# (see oclgrind_kernels.c): it crashes on a host write from any thread but
# the main one, does not count clEnqueueFillBuffer as initializing memory,
# and stops with "Unsupported instruction: freeze" (a FATAL ERROR) on the
# LLVM 14 code of the convolution and pooling kernels.
CANOPY_OPENCL_CACHE_DIR=$cache oclgrind --data-races --check-api "$@" --log "$log" "$driver" "$part"
rc=$?
if [ -s "$log" ]; then
  echo "FAIL: Oclgrind reported:" >&2
  head -c 20000 "$log" >&2
  exit 1
fi
if [ $rc -ne 0 ]; then
  echo "FAIL: the driver exited $rc under Oclgrind" >&2
  exit 1
fi
echo "ok: $part under Oclgrind, nothing reported"
