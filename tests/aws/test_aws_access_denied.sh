#!/usr/bin/env bash
# AccessDenied at start (issue 20, item 4): a worker whose role may not
# receive from its queue. moto cannot refuse a permission, so SQS and S3 are
# the local fake server (fake_server.py): every SQS call on a queue whose
# path has a segment "forbidden" answers 403 AccessDenied (JSON protocol),
# and the output bucket "forbidden" answers 403 AccessDenied (which alone is
# not final: writing needs no listing). `drain` must exit 1 at once, before
# anything was received, with the service's code and message, instead of
# retrying ReceiveMessage for [batch] unreachable_exit_seconds (300 s).
# Needs the stack's PostgreSQL (a throw-away database); 77 without it.
set -u
canopy=$1
src=$(cd "$(dirname "$0")" && pwd)
if [ -z "${CANOPY_TEST_STACK:-}" ] || [ -z "${PGHOST:-}" ]; then
  if [ "${CANOPY_TEST_REQUIRE_STACK:-0}" = 1 ]; then
    echo "FAIL: CANOPY_TEST_REQUIRE_STACK=1 but the stack's environment is absent"
    exit 1
  fi
  echo "SKIP: no local stack (PostgreSQL)"
  exit 77
fi
py=${CANOPY_PYTHON:-python3}
dir=$(mktemp -d /tmp/canopy-access-denied.XXXXXX)
db="canopy_t_denied_$$"
fs_pid=
cleanup() {
  [ -n "$fs_pid" ] && kill "$fs_pid" 2>/dev/null && wait "$fs_pid" 2>/dev/null
  dropdb --if-exists "$db" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT
createdb "$db" || { echo "FAIL: createdb $db"; exit 1; }
"$py" "$src/fake_server.py" > "$dir/port" 2>"$dir/fake.err" &
fs_pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$dir/port")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: the fake server did not start"; cat "$dir/fake.err"; exit 1; }
url=http://127.0.0.1:$port
cat > "$dir/c.ini" <<INI
[aws]
endpoint_url = $url
region = us-east-1
access_key_id = AKIDTEST
secret_access_key = secret
max_attempts = 3
[input]
queue_url = $url/123456789012/forbidden
[output]
bucket = forbidden
[batch]
unreachable_exit_seconds = 300
[detector]
enabled = false
[postgres]
conninfo = dbname=$db
[log]
progress = off
INI
start=$(date +%s)
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_ENDPOINT_URL \
  "$canopy" drain -c "$dir/c.ini" >"$dir/out" 2>"$dir/err"
rc=$?
took=$(( $(date +%s) - start ))
fail=0
if [ "$rc" != 1 ]; then
  echo "FAIL: drain exited $rc, expected 1"; fail=1
fi
if [ "$took" -gt 30 ]; then
  echo "FAIL: drain took $took s to give up"; fail=1
fi
for needle in "ReceiveMessage" "AccessDenied" "Access to the resource ReceiveMessage is denied." \
              "does not recover by itself"; do
  grep -qF -- "$needle" "$dir/err" || { echo "FAIL: '$needle' not in stderr"; fail=1; }
done
grep -qF -- "secret" "$dir/out" "$dir/err" && { echo "FAIL: the secret was printed"; fail=1; }
# The run is recorded as failed in the database, nothing was processed.
runs=$(psql -d "$db" -Atc "SELECT count(*), max(exit_code), sum(images_ok) FROM runs")
[ "$runs" = "1|1|0" ] || { echo "FAIL: runs: '$runs', expected 1|1|0"; fail=1; }
if [ "$fail" != 0 ]; then
  echo "--- stderr"; cat "$dir/err"
else
  echo "ok: drain refused ReceiveMessage (AccessDenied): exit 1 after $took s"
fi
exit $fail
