#!/usr/bin/env bash
# The local stack for tests and the demo: PostgreSQL 15 (Debian) in a private
# data directory and moto_server (S3, SQS, IAM) with signature checking on,
# both on free loopback ports.
#
#   stack.sh start     start both (idempotent: re-checks what already runs)
#   stack.sh stop      stop both; no process is left behind
#   stack.sh pg-stop   stop only PostgreSQL (fault injection in tests)
#   stack.sh pg-crash  stop only PostgreSQL as a crash would (immediate: no
#                      shutdown checkpoint; what a commit promised must survive)
#   stack.sh pg-start  start PostgreSQL again, on the same port
#   stack.sh env       print the path of the sourceable env file
#   stack.sh status    say what runs
#   stack.sh clean     stop, then delete the state directory
#
# State lives in $CANOPY_STACK_DIR (default: .stack in the repository root).
# After start, `. "$(stack.sh env)"` exports PG*, AWS_* and CANOPY_* variables.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STACK_SH="$CANOPY_ROOT/scripts/stack.sh"
STACK_DIR=${CANOPY_STACK_DIR:-$CANOPY_ROOT/.stack}
PG_BIN=/usr/lib/postgresql/15/bin
PG_DIR="$STACK_DIR/pg"          # owned by the server user
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
PG_PORT_FILE="$STACK_DIR/pg.port"
MOTO_PID_FILE="$STACK_DIR/moto.pid"
MOTO_PORT_FILE="$STACK_DIR/moto.port"
MOTO_KEYS_FILE="$STACK_DIR/moto.keys"
MOTO_LOG="$STACK_DIR/moto.log"
ENV_FILE="$STACK_DIR/env"
# IAM set-up right after moto starts: CreateUser, PutUserPolicy,
# CreateAccessKey. moto skips authentication for exactly this many actions,
# then checks every request's signature and permissions.
MOTO_FREE_ACTIONS=3
REGION=us-east-1

# free_port: prints a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  "$CANOPY_VENV_PY" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# port_is_free PORT: true when a server could listen on PORT of 127.0.0.1.
# SO_REUSEADDR as the servers set it: connections of a server that just
# stopped (TIME_WAIT) do not keep it from listening again.
port_is_free() {
  "$CANOPY_VENV_PY" -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

# pid_alive PIDFILE: true when PIDFILE names a running process.
pid_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(head -n 1 "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# --- PostgreSQL -------------------------------------------------------------

# initdb refuses to run as root, so root runs the server as `postgres`.
if [ "$(id -u)" -eq 0 ]; then
  PG_OS_USER=${CANOPY_PG_OS_USER:-postgres}
else
  PG_OS_USER=$(id -un)
fi

# as_pg CMD...: runs CMD as the server's OS user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

# pg_socket_dir: the unix socket directory (inside the stack unless the path
# would be too long for a socket name, then a private directory in /tmp).
pg_socket_dir() {
  local dir="$PG_DIR/sock"
  if [ ${#dir} -gt 80 ]; then
    dir="/tmp/canopy-pgsock-$(printf '%s' "$STACK_DIR" | md5sum | cut -c1-12)"
  fi
  echo "$dir"
}

pg_port() { cat "$PG_PORT_FILE" 2>/dev/null; }

# pg_running: true when the postmaster recorded in the data directory runs
# (a stale pid file whose pid now belongs to another program does not count).
pg_running() {
  local pid
  [ -s "$PG_DATA/postmaster.pid" ] || return 1
  pid=$(head -n 1 "$PG_DATA/postmaster.pid")
  [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = postgres ]
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$(pg_port)" -t 2; }

pg_init() {
  [ -s "$PG_DATA/PG_VERSION" ] && return 0
  [ -x "$PG_BIN/initdb" ] || die "$PG_BIN/initdb not found: run scripts/bootstrap.sh"
  id "$PG_OS_USER" >/dev/null 2>&1 || die "OS user $PG_OS_USER does not exist (set CANOPY_PG_OS_USER)"
  say "PostgreSQL: initdb in $PG_DATA (server runs as $PG_OS_USER)"
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  if [ "$(id -u)" -eq 0 ]; then chown "$PG_OS_USER": "$PG_DIR"; fi
  chmod 700 "$PG_DIR"
  as_pg test -w "$PG_DIR" ||
    die "$PG_OS_USER cannot write $PG_DIR (a parent directory is not searchable?); set CANOPY_STACK_DIR to a directory under /tmp"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U canopy --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$STACK_DIR/initdb.log" 2>&1 || { cat "$STACK_DIR/initdb.log" >&2; die "initdb failed"; }
  # A throw-away test server: surviving a machine crash is not needed (fsync
  # off), but a commit must survive the server process stopping at once:
  # outage tests stop it right after a commit, and a canopy that deleted the
  # messages of a chunk whose COMMIT returned must find its rows afterwards.
  # So synchronous_commit stays on (pg_start also sets it on the command line,
  # for data directories initialised when this file said off).
  as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<'EOF'

# canopy test stack (scripts/stack.sh)
listen_addresses = '127.0.0.1'
max_connections = 200
fsync = off
synchronous_commit = on
full_page_writes = off
log_min_messages = warning
EOF
}

pg_start() {
  local port sock
  if pg_running; then
    pg_ready || pg_wait_ready
    return 0
  fi
  pg_init
  port=$(pg_port || true)
  if [ -z "$port" ] || ! port_is_free "$port"; then
    if [ -n "$port" ] && [ "${1:-}" = same-port ]; then
      die "PostgreSQL port $port is taken by another process"
    fi
    port=$(free_port)
    echo "$port" >"$PG_PORT_FILE"
  fi
  sock=$(pg_socket_dir)
  mkdir -p "$sock"
  if [ "$(id -u)" -eq 0 ]; then chown "$PG_OS_USER": "$sock"; fi
  say "PostgreSQL: starting on 127.0.0.1:$port"
  as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s \
    -o "-p $port -k $sock -c synchronous_commit=on" 9>&- ||
    { tail -n 20 "$PG_LOG" >&2 || true; die "PostgreSQL did not start (log: $PG_LOG)"; }
  pg_wait_ready
  if ! psql -h 127.0.0.1 -p "$port" -U canopy -d postgres -tAqc \
      "select 1 from pg_database where datname = 'canopy'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$port" -U canopy -d postgres -qc 'create database canopy' >/dev/null ||
      die "cannot create database canopy"
  fi
}

pg_wait_ready() {
  local i
  for i in $(seq 1 60); do
    pg_ready && return 0
    sleep 0.5
  done
  die "PostgreSQL on port $(pg_port) is not ready after 30 s (log: $PG_LOG)"
}

pg_stop() {
  local pid
  [ -d "$PG_DATA" ] || return 0
  if pg_running; then
    say "PostgreSQL: stopping"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 30 -s ||
      as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 30 -s || true
  fi
  # A postmaster that ignored pg_ctl: kill it by the pid it recorded.
  if pg_running; then
    pid=$(head -n 1 "$PG_DATA/postmaster.pid")
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [ "$(pg_socket_dir)" != "$PG_DIR/sock" ]; then
    rm -rf "$(pg_socket_dir)"
  fi
}

# pg_crash: an immediate shutdown (the server exits without a checkpoint, as
# after a crash; the next start runs recovery from the WAL).
pg_crash() {
  [ -d "$PG_DATA" ] || return 0
  if pg_running; then
    say "PostgreSQL: immediate stop"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 30 -s || true
  fi
  pg_stop
}

# --- moto -------------------------------------------------------------------

moto_port() { cat "$MOTO_PORT_FILE" 2>/dev/null; }
moto_url() { echo "http://127.0.0.1:$(moto_port)"; }

# moto_up: true when the recorded moto process runs and answers HTTP.
moto_up() {
  pid_alive "$MOTO_PID_FILE" &&
    curl -sf -o /dev/null --max-time 2 "$(moto_url)/moto-api/"
}

# moto_launch: starts moto_server in its own session on a free port and waits
# until it answers (/moto-api/ is not an AWS action, so it costs no free one).
moto_launch() {
  local try port i
  [ -x "$CANOPY_VENV/bin/moto_server" ] || die "$CANOPY_VENV/bin/moto_server not found: run scripts/bootstrap.sh"
  for try in 1 2 3; do
    port=$(free_port)
    echo "$port" >"$MOTO_PORT_FILE"
    rm -f "$MOTO_PID_FILE" "$MOTO_KEYS_FILE"
    say "moto: starting on 127.0.0.1:$port"
    # setsid: its own process group, so stop can kill it and any child.
    INITIAL_NO_AUTH_ACTION_COUNT=$MOTO_FREE_ACTIONS MOTO_PID_FILE="$MOTO_PID_FILE" \
      setsid bash -c 'echo $$ >"$MOTO_PID_FILE"; exec "$0" "$@"' \
      "$CANOPY_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" \
      </dev/null >"$MOTO_LOG" 2>&1 9>&- &
    for i in $(seq 1 100); do
      if [ -s "$MOTO_PID_FILE" ] && ! pid_alive "$MOTO_PID_FILE"; then
        break
      fi
      moto_up && return 0
      sleep 0.2
    done
    tail -n 5 "$MOTO_LOG" >&2 || true
    moto_stop
  done
  die "moto_server did not start (log: $MOTO_LOG)"
}

# moto_iam PHASE: `setup` creates the IAM user, its allow-all policy and an
# access key with the free actions and writes the key to MOTO_KEYS_FILE;
# `verify` proves that the key works and that a wrong secret gets 403.
moto_iam() {
  "$CANOPY_VENV_PY" - "$1" "$(moto_url)" "$MOTO_KEYS_FILE" "$REGION" <<'EOF'
import json, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

phase, url, keys_file, region = sys.argv[1:5]
cfg = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30)

def client(service, key_id, secret):
    return boto3.client(service, endpoint_url=url, region_name=region, config=cfg,
                        aws_access_key_id=key_id, aws_secret_access_key=secret)

if phase == "setup":
    iam = client("iam", "setup", "setup")
    iam.create_user(UserName="canopy-test")
    iam.put_user_policy(UserName="canopy-test", PolicyName="allow-all",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="canopy-test")["AccessKey"]
    with open(keys_file, "w") as f:
        f.write(key["AccessKeyId"] + "\n" + key["SecretAccessKey"] + "\n")
    sys.exit(0)

key_id, secret = open(keys_file).read().split()
for service, call in (("s3", "list_buckets"), ("sqs", "list_queues")):
    try:
        getattr(client(service, key_id, secret + "x"), call)()
    except ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        if status != 403:
            sys.exit(f"{service} {call} with a wrong secret: expected 403, got {status}")
    else:
        sys.exit(f"{service} {call} with a wrong secret succeeded: "
                 "moto does not check signatures (INITIAL_NO_AUTH_ACTION_COUNT not in effect?)")
    try:
        getattr(client(service, key_id, secret), call)()
    except ClientError as e:
        sys.exit(f"{service} {call} with the IAM user's key failed: {e}")
EOF
}

moto_start() {
  if moto_up && [ -s "$MOTO_KEYS_FILE" ]; then
    return 0
  fi
  moto_stop
  moto_launch
  moto_iam setup || die "moto: IAM set-up failed (log: $MOTO_LOG)"
}

moto_stop() {
  local pid i
  if pid_alive "$MOTO_PID_FILE"; then
    pid=$(head -n 1 "$MOTO_PID_FILE")
    say "moto: stopping"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$MOTO_PID_FILE" "$MOTO_KEYS_FILE"
}

# --- env file -----------------------------------------------------------------

write_env() {
  local key_id secret tmp
  { read -r key_id; read -r secret; } <"$MOTO_KEYS_FILE"
  tmp="$ENV_FILE.tmp"
  {
    echo "# Written by scripts/stack.sh start; source it: . $ENV_FILE"
    printf 'export %s=%q\n' \
      PGHOST 127.0.0.1 \
      PGPORT "$(pg_port)" \
      PGUSER canopy \
      PGDATABASE canopy \
      AWS_ENDPOINT_URL "$(moto_url)" \
      AWS_ACCESS_KEY_ID "$key_id" \
      AWS_SECRET_ACCESS_KEY "$secret" \
      AWS_REGION "$REGION" \
      AWS_DEFAULT_REGION "$REGION" \
      CANOPY_STACK "$STACK_SH" \
      CANOPY_STACK_DIR "$STACK_DIR" \
      CANOPY_PYTHON "$CANOPY_VENV_PY" \
      CANOPY_MOTO_PORT "$(moto_port)" \
      CANOPY_TEST_STACK 1
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
}

# --- commands -----------------------------------------------------------------

# with_lock CMD...: runs CMD holding the stack directory's lock (fd 9), so that
# two starts (or a start and a stop) never interleave. The servers are started
# with fd 9 closed: they must not hold the lock after this script exits.
with_lock() {
  mkdir -p "$STACK_DIR"
  exec 9>"$STACK_DIR/lock"
  flock -w 120 9 || die "timed out waiting for the lock on $STACK_DIR"
  "$@"
}

cmd_start() {
  [ -x "$CANOPY_VENV_PY" ] || die "no $CANOPY_VENV: run scripts/bootstrap.sh first"
  chmod 755 "$STACK_DIR"
  pg_start
  moto_start
  moto_iam verify || die "moto: signature checking is not working (log: $MOTO_LOG)"
  write_env
  say "stack ready: PostgreSQL 127.0.0.1:$(pg_port), moto $(moto_url); env: $ENV_FILE"
}

cmd_stop() {
  local pid
  moto_stop
  pg_stop
  rm -f "$ENV_FILE"
  # A postmaster or moto of this stack whose pid file was lost: end it by pid.
  for pid in $(pgrep -f -- "bin/postgres -D $PG_DATA( |\$)" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "$(moto_port)" ]; then
    for pid in $(pgrep -f -- "moto_server -H 127.0.0.1 -p $(moto_port)\$" || true); do
      kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  say "stack stopped"
}

cmd_status() {
  local rc=0
  if pg_running && pg_ready; then echo "postgresql: running on 127.0.0.1:$(pg_port)"; else echo "postgresql: stopped"; rc=1; fi
  if moto_up; then echo "moto: running on $(moto_url)"; else echo "moto: stopped"; rc=1; fi
  return $rc
}

case "${1:-}" in
  start) with_lock cmd_start ;;
  stop) with_lock cmd_stop ;;
  pg-stop) with_lock pg_stop ;;
  pg-crash) with_lock pg_crash ;;
  pg-start) with_lock pg_start same-port ;;
  env)
    echo "$ENV_FILE"
    [ -s "$ENV_FILE" ] || { say "no env file yet: run $0 start"; exit 1; }
    ;;
  status) cmd_status ;;
  clean)
    with_lock cmd_stop
    rm -rf "$STACK_DIR"
    ;;
  *)
    echo "usage: $0 start|stop|pg-stop|pg-crash|pg-start|env|status|clean" >&2
    exit 2
    ;;
esac
