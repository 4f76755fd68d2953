#!/usr/bin/env bash
# Downloads, on a machine with Debian 12's package lists (this one), the
# .debs that bench/gpu.sh builds the device-only targets from on a bare GPU
# machine (no registry, no network): the OpenCL loader and headers, CLBlast,
# libpng, zlib, cJSON, inih and libcrypto (cmake/device_only.cmake). Only
# `apt-get download` into bench/gpu-deps/debs (ignored by git): nothing is
# installed, no root needed. Checks that the .debs and the tracked tree stay
# under the 64 MiB carried to a GPU machine.
#
#   bench/gpu-deps.sh [--dir DIR]        (default bench/gpu-deps)
#
# Then carry bench/gpu-deps with the tree and run bench/gpu.sh there.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

DIR=$CANOPY_ROOT/bench/gpu-deps
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    *) die "unknown argument $1 (see the comment at the top of $0)" ;;
  esac
done
# Runtime libraries and their -dev packages. glibc, libstdc++ and libgcc come
# with any CUDA image (CLBlast 1.5.3 needs libstdc++6 >= 11, glibc >= 2.34).
PKGS=(ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers opencl-clhpp-headers
      opencl-headers libclblast1 libclblast-dev libpng16-16 libpng-dev zlib1g zlib1g-dev
      libcjson1 libcjson-dev libinih1 libinireader0 libinih-dev libssl3 libssl-dev)
LIMIT=$((64 * 1024 * 1024))

command -v apt-get >/dev/null || die "apt-get not found: run this on a Debian 12 machine"
mkdir -p "$DIR/debs"
# Only the .debs travel: an unpacked tree from an earlier bench/gpu.sh run
# would count against the 64 MiB.
rm -rf "$DIR"/debs/*.deb "$DIR/root" "$DIR/vendors"
say "downloading ${#PKGS[@]} packages into $DIR/debs"
# apt-get download writes into the current directory; as root it warns that
# _apt cannot write there (harmless: the download runs unsandboxed).
(cd "$DIR/debs" && apt-get download "${PKGS[@]}" 2>&1 | grep -v "unsandboxed" >&2) || true
for p in "${PKGS[@]}"; do
  ls "$DIR"/debs/"${p}"_*.deb >/dev/null 2>&1 || die "$p: not downloaded (apt-get download $p)"
done
debs=$(du -cb "$DIR"/debs/*.deb | tail -1 | cut -f1)
tree=$(cd "$CANOPY_ROOT" && git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
say "debs $((debs / 1024)) KiB + tracked tree $((tree / 1024)) KiB (limit $((LIMIT / 1024)) KiB)"
[ $((debs + tree)) -lt $LIMIT ] || die "the debs and the tree exceed 64 MiB"
sha256sum "$DIR"/debs/*.deb | sed "s|$DIR/debs/||" > "$DIR/SHA256SUMS"
say "ok: carry $(realpath --relative-to="$CANOPY_ROOT" "$DIR" 2>/dev/null || echo "$DIR") and run bench/gpu.sh"
