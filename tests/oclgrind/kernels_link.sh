#!/bin/sh
# Compiles every kernel file with clang at -O0 for SPIR (as clang-based
# drivers do: ROCm, Intel, PoCL with -cl-opt-disable) and fails when a
# function is declared but not defined: a C99 `inline` helper without
# `static` is left undefined there, and the program fails to link.
#   kernels_link.sh KERNEL_DIR
# Skipped (77) without clang.
dir=$1
command -v clang >/dev/null 2>&1 || { echo "SKIP: no clang"; exit 77; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
for cl in "$dir"/*.cl; do
  for defs in "" "-DCANOPY_HAVE_FP64"; do
    if ! clang -x cl -cl-std=CL1.2 -O0 -Xclang -finclude-default-header -target spir64 \
         $defs -emit-llvm -S -o "$out" "$cl"; then
      echo "FAIL: $cl $defs does not compile" >&2
      status=1
      continue
    fi
    # OpenCL built-ins are mangled (@_Z...), LLVM intrinsics are @llvm.*.
    undefined=$(grep '^declare' "$out" | grep -v '@_Z\|@llvm\.' || true)
    if [ -n "$undefined" ]; then
      echo "FAIL: $cl $defs: functions declared but not defined at -O0:" >&2
      echo "$undefined" >&2
      status=1
    fi
  done
done
[ $status -eq 0 ] && echo "ok: every kernel file links at -O0"
exit $status
