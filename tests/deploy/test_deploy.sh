#!/usr/bin/env bash
# test_deploy.sh systemd|manifests BUILD_DIR SOURCE_DIR
#
# Both modes build the .deb (cpack) and extract it with dpkg -x into a scratch
# root, so that what is checked is what the package ships.
#   systemd    systemd-analyze verify of the packaged canopy-drain@.service and
#              .timer (instance 0), with ExecStart pointed at the extracted
#              executable (verify checks that it exists); any warning about
#              them fails. Skipped (77) without systemd-analyze.
#   manifests  check_manifests.py with the project's Python (pyyaml).
set -euo pipefail
mode=$1 build=$(cd "$2" && pwd -P) src=$(cd "$3" && pwd -P)
fail() { echo "FAIL: $*" >&2; exit 1; }

if [ "$mode" = systemd ] && ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze not installed (Debian package systemd)"; exit 77
fi
py=${CANOPY_PYTHON:-$src/.venv/bin/python}
if [ "$mode" = manifests ] && ! "$py" -c 'import yaml' 2>/dev/null; then
  [ "${CANOPY_TEST_REQUIRE_STACK:-0}" = 1 ] && fail "$py cannot import yaml (scripts/requirements-test.txt)"
  echo "SKIP: no Python with pyyaml (run scripts/bootstrap.sh)"; exit 77
fi

tmp=$(mktemp -d /tmp/canopy-deploy-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/pkg" >/dev/null
deb=$(ls "$tmp"/pkg/canopy_*_amd64.deb)
dpkg -x "$deb" "$tmp/root"
root=$tmp/root

case "$mode" in
systemd)
  units=$tmp/units
  mkdir -p "$units"
  for f in canopy-drain@.service canopy-drain@.timer; do
    [ -f "$root/usr/lib/systemd/system/$f" ] || fail "the package does not ship $f"
    cmp "$root/usr/lib/systemd/system/$f" "$src/deploy/systemd/$f" || fail "$f differs from deploy/systemd"
    sed "s#/usr/bin/canopy#$root/usr/bin/canopy#g" "$root/usr/lib/systemd/system/$f" >"$units/$f"
  done
  # The unit as the README describes it.
  svc=$root/usr/lib/systemd/system/canopy-drain@.service
  for line in 'ExecStart=/usr/bin/canopy drain -c /etc/canopy.ini --set opencl.device=%i' \
              'KillSignal=SIGTERM' 'TimeoutStopSec=120' 'SuccessExitStatus=3 4'; do
    grep -qxF "$line" "$svc" || fail "canopy-drain@.service lacks '$line'"
    [ "${line%%=*}" != ExecStart ] || grep -qF "\`$line\`" "$src/README.md" ||
      fail "README does not show '$line'"
  done
  grep -qx 'WantedBy=timers.target' "$units/canopy-drain@.timer" || fail "timer not wanted by timers.target"
  ! grep -q '^Unit=' "$units/canopy-drain@.timer" || fail "the timer must start its own instance (no Unit=)"
  (cd "$tmp" && SYSTEMD_UNIT_PATH="$units:" systemd-analyze verify \
      canopy-drain@0.service canopy-drain@0.timer) >"$tmp/verify.log" 2>&1 || {
    cat "$tmp/verify.log"; fail "systemd-analyze verify"; }
  cat "$tmp/verify.log"
  ! grep -i 'canopy' "$tmp/verify.log" || fail "systemd-analyze verify warns about the units"
  # The instance's ExecStart, %i = 0, is a valid canopy command line.
  "$root/usr/bin/canopy" config show -c "$root/usr/share/canopy/canopy.ini" \
      --set opencl.device=0 | grep -x 'device = 0' >/dev/null || fail "--set opencl.device=%i"
  echo PASS
  ;;
manifests)
  PYTHONDONTWRITEBYTECODE=1 "$py" "$src/tests/deploy/check_manifests.py" \
      --source-dir "$src" --root "$root" --deb "$deb" --work "$tmp/work"
  ;;
*) fail "unknown mode $mode" ;;
esac
