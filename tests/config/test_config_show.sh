#!/usr/bin/env bash
# test_config_show.sh CANOPY
#
# `canopy config show` prints the effective configuration: defaults, then the
# file, then CANOPY_* environment variables, then --set flags, with every
# secret masked wherever it came from: [aws] secret_access_key (file),
# session_token (environment), access_key_id (flag), and the PostgreSQL
# password inside [postgres] conninfo, as keyword = value pairs (quoted, with
# an escaped quote and spaces) and as a URI (user:password@ and ?password=).
set -euo pipefail
canopy=$1
tmp=$(mktemp -d /tmp/canopy-config-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# Inherited settings must not leak in.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(AWS_|PG|CANOPY_)' || true)

secrets=(FILESECRETwJalrXUtnFEMI ENVTOKENIQoJb3JpZ2lu FLAGKEYAKIAIOSFODNN7 PGPASSq7zR3 PGPASSuri9Kd
         PGPASSquery5Lm SSLPASSw0rd)
cat >"$tmp/canopy.ini" <<INI
[aws]
region = eu-west-1
secret_access_key = ${secrets[0]}
[batch]
size = 10
idle_exit_seconds = 11
[postgres]
conninfo = host=file.example dbname=trees password=${secrets[3]}
INI

# assert_masked OUT: no secret appears in OUT, and every masked key shows ********.
assert_masked() {
  local out=$1 s
  for s in "${secrets[@]}"; do
    if grep -F "$s" <<<"$out"; then fail "secret $s appears in the output"; fi
  done
}
expect_line() { # OUT LINE
  grep -qxF -- "$2" <<<"$1" || { echo "$1"; fail "line missing: $2"; }
}

# 1. file < environment < flags, secrets from all three
out=$(CANOPY_AWS_SESSION_TOKEN=${secrets[1]} CANOPY_BATCH_SIZE=20 \
      CANOPY_POSTGRES_CONNINFO="host=db.example port=5432 user=canopy password='${secrets[3]} \\' x' sslpassword=${secrets[6]} sslmode=verify-full" \
      "$canopy" config show -c "$tmp/canopy.ini" --set batch.size=30 \
        --set aws.access_key_id=${secrets[2]})
assert_masked "$out"
expect_line "$out" "region = eu-west-1"                 # file
expect_line "$out" "idle_exit_seconds = 11"             # file
expect_line "$out" "size = 30"                          # flag over environment over file
# where each value came from
expect_line "$out" "; size: command line"
expect_line "$out" "; session_token: CANOPY_AWS_SESSION_TOKEN"
expect_line "$out" "; wait_seconds: default"
grep -qx "; idle_exit_seconds: $tmp/canopy.ini:[0-9]*" <<<"$out" ||
  fail "no file:line origin for idle_exit_seconds"
expect_line "$out" "secret_access_key = ********"
expect_line "$out" "session_token = ********"
expect_line "$out" "access_key_id = ********"
expect_line "$out" "conninfo = host=db.example port=5432 user=canopy password=******** sslpassword=******** sslmode=verify-full"
expect_line "$out" "wait_seconds = 20"                  # a default
grep -q '^; \[detector\] model resolves to .*/models/crown-1.1.cnw$' <<<"$out" ||
  fail "no resolved model path"

# 2. a URI conninfo, password in the user info and in the query
out=$("$canopy" config show \
      --set "postgres.conninfo=postgresql://canopy:${secrets[4]}@db.example:5432/trees?sslmode=require&password=${secrets[5]}&application_name=canopy")
assert_masked "$out"
expect_line "$out" "conninfo = postgresql://canopy:********@db.example:5432/trees?sslmode=require&password=********&application_name=canopy"

# 3. `canopy config` without `show` means the same; --help; errors exit 2
# grep without -q reads all of canopy's output: an early exit would stop
# canopy with SIGPIPE, which pipefail reports as a failure.
"$canopy" config -c "$tmp/canopy.ini" | grep -xF "size = 10" >/dev/null ||
  fail "canopy config (no show)"
"$canopy" config show --help | grep '^usage: canopy config show' >/dev/null || fail "--help"
"$canopy" --help | grep '^  config ' >/dev/null || fail "canopy --help does not list config"
set +e
"$canopy" config show --set batch.sise=3 2>"$tmp/err"; rc1=$?
CANOPY_BATCH_SIZE=many "$canopy" config show 2>>"$tmp/err"; rc2=$?
"$canopy" config show -c "$tmp/missing.ini" 2>>"$tmp/err"; rc3=$?
"$canopy" config show extra 2>>"$tmp/err"; rc4=$?
CANOPY_BATCH_SIZEE=3 "$canopy" config show 2>"$tmp/err5"; rc5=$?
set -e
cat "$tmp/err" "$tmp/err5"
[ "$rc1 $rc2 $rc3 $rc4 $rc5" = "2 2 2 2 2" ] ||
  fail "configuration errors exit $rc1 $rc2 $rc3 $rc4 $rc5, not 2"
grep -q "CANOPY_BATCH_SIZEE.*did you mean CANOPY_BATCH_SIZE" "$tmp/err5" ||
  fail "a misspelt variable does not name the key it meant"
echo PASS
