#!/usr/bin/env bash
# test_install.sh BUILD_DIR SOURCE_DIR NEON_DIR
#
# Installs canopy twice from BUILD_DIR, with nothing of the source tree:
#   1. cmake --install --prefix TMP/prefix
#   2. cpack -G DEB, then dpkg -x of the .deb into TMP/root (its usr/ is the
#      prefix), after checking the package's Depends against the libraries the
#      executable links (dpkg -S) and, where apt has package lists, that apt
#      can install it on this Debian (apt-get -s).
# Each installed canopy runs `canopy run` on a NEON image copied to TMP, from
# TMP/work (no models/ there), and `canopy devices`.
#
# How "the installed files alone suffice" is proven, the source tree being
# shared and impossible to move: an executable outside its build tree never
# searches the source tree for models (det_model_resolve_path); the test
# checks that the model the installed canopy loads lies inside the prefix
# (`canopy config show` and the debug log of `canopy run` name it), that its
# results equal the build tree's canopy's, and, as a control, that the same
# executable copied to a prefix without share/canopy fails with "model not
# found" without ever naming the source tree.
set -euo pipefail
build=$(cd "$1" && pwd -P) src=$(cd "$2" && pwd -P) neon=$3
image=OSBS_029.png
[ -f "$neon/$image" ] || { echo "SKIP: $neon/$image not found"; exit 77; }

tmp=$(mktemp -d /tmp/canopy-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

mkdir -p "$tmp/in" "$tmp/work"
# Compiled kernels go to a cache of this test's own, not the build tree's
# (scripts/test.sh points CANOPY_OPENCL_CACHE_DIR there).
export CANOPY_OPENCL_CACHE_DIR=$tmp/kernel-cache
cp "$neon/$image" "$tmp/in/"
chmod u+w "$tmp/in/$image"

# reference result from the build tree's executable
step "reference: build tree canopy run"
(cd "$tmp/work" && "$build/canopy" run --input "$tmp/in" --output "$tmp/out-build") >/dev/null

# check_tree PREFIX RUNTIME_PREFIX: the installed files under PREFIX, nothing
# the package must not ship; the systemd unit runs RUNTIME_PREFIX/bin/canopy
# (where PREFIX is once installed: the .deb's usr/ is /usr).
check_tree() {
  local prefix=$1 runtime=$2
  for f in bin/canopy share/canopy/canopy.ini share/canopy/models/crown-1.1.cnw \
           share/canopy/models/crown-1.0.cnw lib/systemd/system/canopy-drain@.service \
           lib/systemd/system/canopy-drain@.timer share/doc/canopy/copyright; do
    [ -e "$prefix/$f" ] || fail "$prefix/$f not installed"
  done
  [ -x "$prefix/bin/canopy" ] || fail "$prefix/bin/canopy not executable"
  ! ls -d "$prefix"/share/canopy/models/loo "$prefix"/share/canopy/models/test 2>/dev/null ||
    fail "models/loo or models/test installed"
  ! find "$prefix" -name '*.cl' | grep -q . || fail "kernel sources installed (they are embedded)"
  local stray
  stray=$(cd "$prefix" && find . -type f | grep -vE '^\./(bin/canopy|share/canopy/|share/doc/canopy/copyright$|lib/systemd/system/canopy-drain@\.(service|timer)$)' || true)
  [ -z "$stray" ] || fail "unexpected files installed: $stray"
  # Before: ExecStart=/usr/bin/canopy whatever the prefix.
  local unit=$prefix/lib/systemd/system/canopy-drain@.service
  grep -q "^ExecStart=$runtime/bin/canopy drain " "$unit" ||
    fail "$unit does not run $runtime/bin/canopy: $(grep ExecStart "$unit")"
  grep -q "^Documentation=file://$runtime/share/canopy/canopy.ini$" "$unit" ||
    fail "$unit: Documentation is not $runtime/share/canopy/canopy.ini"
  grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/$' \
    "$prefix/share/doc/canopy/copyright" || fail "copyright is not in Debian's format"
}

# run_installed PREFIX LABEL: canopy run + devices + config show from PREFIX.
run_installed() {
  local prefix=$1 label=$2 exe=$1/bin/canopy out=$tmp/out-$2 log=$tmp/$2.log
  case "$(readlink -f "$exe")" in "$build"/*|"$src"/*) fail "$exe lies in the build or source tree" ;; esac

  step "$label: canopy config show names the model inside the prefix"
  local shown
  shown=$(cd "$tmp/work" && "$exe" config show -c "$prefix/share/canopy/canopy.ini")
  echo "$shown" | tail -1
  grep -qxF "; [detector] model resolves to $prefix/bin/../share/canopy/models/crown-1.1.cnw" <<<"$shown" ||
    fail "$label: model does not resolve inside $prefix"

  step "$label: canopy run --input $tmp/in (cwd $tmp/work)"
  (cd "$tmp/work" && "$exe" run -c "$prefix/share/canopy/canopy.ini" --set log.level=debug \
      --input "$tmp/in" --output "$out") >"$log" 2>&1 || { cat "$log"; fail "$label: canopy run failed"; }
  grep -F "model models/crown-1.1.cnw: $prefix/bin/../share/canopy/models/crown-1.1.cnw" "$log" >/dev/null ||
    { cat "$log"; fail "$label: canopy run did not load the model from $prefix"; }
  ! grep -F "$src" "$log" || fail "$label: canopy run names the source tree"
  local stem=${image%.png}
  for f in "$stem.mask.png" "$stem.overlay.png" "$stem.trees.json"; do
    [ -s "$out/$f" ] || fail "$label: $out/$f missing"
  done
  grep -q '"x":' "$out/$stem.trees.json" || fail "$label: no trees in $stem.trees.json"
  cmp "$out/$stem.trees.json" "$tmp/out-build/$stem.trees.json" ||
    fail "$label: trees.json differs from the build tree canopy's"

  step "$label: canopy devices"
  (cd "$tmp/work" && "$exe" devices) >"$log" 2>&1 || { cat "$log"; fail "$label: canopy devices failed"; }
  grep -q '^selected: ' "$log" || { cat "$log"; fail "$label: canopy devices selected nothing"; }
  step "$label: canopy --version"
  "$exe" --version
}

# ---- 1. cmake --install --------------------------------------------------------
step "cmake --install --prefix $tmp/prefix"
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
check_tree "$tmp/prefix" "$tmp/prefix"
run_installed "$tmp/prefix" prefix

step "control: the same executable without share/canopy does not find a model"
mkdir -p "$tmp/bare/bin"
cp "$tmp/prefix/bin/canopy" "$tmp/bare/bin/"
# CANOPY_DATADIR, compiled in: <CMAKE_INSTALL_PREFIX>/share/canopy
install_prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
if [ -e /usr/share/canopy/models/crown-1.1.cnw ] ||
   [ -e "$install_prefix/share/canopy/models/crown-1.1.cnw" ]; then
  echo "(skipped: canopy is installed system-wide on this machine)"
else
  set +e
  (cd "$tmp/work" && "$tmp/bare/bin/canopy" run --input "$tmp/in" --output "$tmp/out-bare") >"$tmp/bare.log" 2>&1
  rc=$?
  set -e
  cat "$tmp/bare.log"
  [ $rc -ne 0 ] || fail "control: canopy without share/canopy succeeded"
  grep -q 'model not found' "$tmp/bare.log" || fail "control: no 'model not found' message"
  ! grep -F "$src" "$tmp/bare.log" || fail "control: an installed canopy searched the source tree"
fi

# ---- 2. the Debian package ------------------------------------------------------
step "cpack -G DEB"
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/pkg" >/dev/null
deb=$(ls "$tmp"/pkg/canopy_*_amd64.deb)
dpkg-deb -I "$deb" | sed -n '/Package:/,$p'
depends=$(dpkg-deb -f "$deb" Depends)
[ "$(dpkg-deb -f "$deb" Package)" = canopy ] || fail "package name"

step "Depends needs an OpenCL driver (ICD), not only suggests one"
grep -qE '(^|, )pocl-opencl-icd \| opencl-icd(,|$)' <<<"$depends" ||
  fail "Depends lacks 'pocl-opencl-icd | opencl-icd': $depends"

step "Depends covers every library canopy links (dpkg -S)"
# The groups without alternatives: the libraries' packages.
deps=" $(echo "$depends" | tr ',' '\n' | grep -v '|' | sed 's/([^)]*)//g' | tr '\n' ' ') "
while read -r lib; do
  path=$(ldd "$build/canopy" | awk -v l="$lib" '$1 == l { print $3 }')
  [ -n "$path" ] || fail "ldd does not resolve $lib"
  real=$(readlink -f "$path")
  pkg=$(dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || true)
  pkg=${pkg%%:*}
  [ -n "$pkg" ] || fail "no Debian package owns $real ($lib)"
  case "$deps" in
    *" $pkg "*) echo "$lib: $pkg" ;;
    *) [ "$pkg" = libc6 ] && case "$lib" in libm.so.*|libc.so.*) ;; *) false ;; esac ||
         fail "$lib comes from $pkg, which Depends does not list ($depends)" ;;
  esac
done < <(readelf -d "$build/canopy" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for pkg in $deps; do
  dpkg-query -W -f='${db:Status-Status}\n' "$pkg" 2>/dev/null | grep -qx installed ||
    fail "Depends names $pkg, which is not an installed Debian package here"
done
# An alternative group: one of its packages installed (PoCL here).
dpkg-query -W -f='${db:Status-Status}\n' pocl-opencl-icd 2>/dev/null | grep -qx installed ||
  ls /etc/OpenCL/vendors/*.icd >/dev/null 2>&1 || fail "no OpenCL ICD installed here"

policy=$(apt-cache policy libc6 2>/dev/null || true)
if [[ $policy == *"Candidate: "[0-9]* ]]; then
  step "apt-get -s install the .deb (dependencies resolvable on this Debian)"
  apt-get -s -o Debug::NoLocking=1 install "$deb" >"$tmp/apt.log" 2>&1 ||
    { cat "$tmp/apt.log"; fail "apt-get -s install $deb"; }
  grep -q '^Inst canopy ' "$tmp/apt.log" || { cat "$tmp/apt.log"; fail "apt would not install canopy"; }
fi

step "dpkg -x into $tmp/root"
dpkg -x "$deb" "$tmp/root"
check_tree "$tmp/root/usr" /usr
run_installed "$tmp/root/usr" deb
echo "PASS"
