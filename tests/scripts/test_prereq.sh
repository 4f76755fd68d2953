#!/usr/bin/env bash
# test_prereq.sh SOURCE_DIR
#
# The quick start's scripts as a new user meets them (issue 22):
# - prerequisites are checked before anything is installed or built: on a
#   system that is not Debian 12, or without the disk space, demo.sh and
#   test.sh stop with a message saying so, and no build directory appears;
# - demo.sh does not install torch (its plan has no .venv-torch), test.sh
#   does.
# Nothing is installed: every run either stops at the check or is --check.
set -euo pipefail
src=$(cd "$1" && pwd -P)
tmp=$(mktemp -d /tmp/canopy-prereq-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect RC PATTERN LOG CMD...: runs CMD, output to LOG; checks both.
expect() {
  local want=$1 pattern=$2 log=$3 rc=0
  shift 3
  "$@" >"$log" 2>&1 || rc=$?
  cat "$log"
  [ "$rc" = "$want" ] || fail "$*: exit $rc, want $want"
  grep -qE -- "$pattern" "$log" || fail "$*: no '$pattern' in its output"
}

echo "--- demo.sh --check: the plan has no torch"
expect 0 'plan: Debian packages' "$tmp/demo-plan" bash "$src/scripts/demo.sh" --check
! grep -q 'venv-torch' "$tmp/demo-plan" || fail "demo.sh would install torch"
echo "--- test.sh --check: the tests need torch"
expect 0 'plan: .*\.venv-torch' "$tmp/test-plan" bash "$src/scripts/test.sh" --check

printf 'ID=ubuntu\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n' >"$tmp/os-release"
for script in demo test; do
  echo "--- $script.sh on Ubuntu: stops before installing or building"
  CANOPY_OS_RELEASE=$tmp/os-release CANOPY_BUILD_DIR=$tmp/build-$script \
    expect 1 'needs Debian 12 \(bookworm\); found Ubuntu 22.04.4 LTS' "$tmp/$script-os" \
    bash "$src/scripts/$script.sh"
  ! grep -q 'Debian packages\|building' "$tmp/$script-os" || fail "$script.sh went on"
  [ ! -e "$tmp/build-$script" ] || fail "$script.sh created its build directory"
done

echo "--- not enough disk space"
CANOPY_MIN_FREE_MB=999999999 CANOPY_BUILD_DIR=$tmp/build-disk \
  expect 1 '999999999 MB of free disk space needed under .*, [0-9]+ MB free' "$tmp/disk" \
  bash "$src/scripts/demo.sh"
[ ! -e "$tmp/build-disk" ] || fail "demo.sh created its build directory"
echo PASS
