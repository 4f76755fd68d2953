#!/usr/bin/env bash
# Smoke test of the local stack started by scripts/stack.sh.
#   test_stack.sh services    PostgreSQL answers; moto accepts the IAM user's
#                             key and refuses a wrong secret or unknown key
#   test_stack.sh pg-restart  pg-stop makes PostgreSQL unreachable, pg-start
#                             brings it back on the same port
# Exit 77 (skip) without the stack's environment, unless
# CANOPY_TEST_REQUIRE_STACK=1.
set -euo pipefail

if [ -z "${CANOPY_TEST_STACK:-}" ]; then
  if [ "${CANOPY_TEST_REQUIRE_STACK:-0}" = 1 ]; then
    echo "FAIL: CANOPY_TEST_REQUIRE_STACK=1 but the stack's environment is absent" >&2
    exit 1
  fi
  echo "SKIP: no local stack (source .stack/env after scripts/stack.sh start)"
  exit 77
fi

fail() { echo "FAIL: $*" >&2; exit 1; }

pg_answers() {
  [ "$(psql -X -tAq -c 'select 1' 2>/dev/null)" = 1 ]
}

case "${1:-}" in
  services)
    [ "$(psql -X -tAq -v ON_ERROR_STOP=1 -c 'select 1')" = 1 ] || fail "psql select 1"
    [ "$(psql -X -tAq -v ON_ERROR_STOP=1 -c 'select current_user || current_database()')" = canopycanopy ] ||
      fail "not connected as canopy to database canopy"
    "$CANOPY_PYTHON" "$(dirname "$0")/check_moto.py"
    ;;
  pg-restart)
    pg_answers || fail "PostgreSQL does not answer before pg-stop"
    port=$PGPORT
    "$CANOPY_STACK" pg-stop
    if pg_answers; then fail "PostgreSQL still answers after pg-stop"; fi
    "$CANOPY_STACK" pg-start
    pg_answers || fail "PostgreSQL does not answer after pg-start"
    [ "$(psql -X -tAq -c 'select inet_server_port()')" = "$port" ] || fail "port changed"
    ;;
  *)
    echo "usage: $0 services|pg-restart" >&2
    exit 2
    ;;
esac
echo "PASS: $1"
