#!/bin/sh
# Runs one end-to-end test script with the test venv's Python ($CANOPY_PYTHON,
# written into .stack/env by scripts/stack.sh):  run.sh SCRIPT.py ARGS...
# Exit 77 (skipped) without the local stack's environment, unless
# CANOPY_TEST_REQUIRE_STACK=1, in which case the missing stack is a failure.
if [ -z "${CANOPY_TEST_STACK:-}" ] || [ -z "${CANOPY_PYTHON:-}" ]; then
  if [ "${CANOPY_TEST_REQUIRE_STACK:-0}" = 1 ]; then
    echo "FAIL: CANOPY_TEST_REQUIRE_STACK=1 but the stack's environment is absent" >&2
    exit 1
  fi
  echo "SKIP: no local stack (source .stack/env after scripts/stack.sh start)"
  exit 77
fi
export PYTHONDONTWRITEBYTECODE=1
exec "$CANOPY_PYTHON" "$@"
