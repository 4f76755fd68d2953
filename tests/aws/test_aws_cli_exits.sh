#!/usr/bin/env bash
# Every command that talks to AWS (submit, drain, reprocess, reprocess
# --dry-run) stops before any work with exit 1 and the six credential
# sources when there are no credentials, and with exit 2 naming the profile
# when a named profile does not exist (README "Credentials", "Exit codes").
set -u
canopy=$1
dir=$(mktemp -d /tmp/canopy-aws-exits.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
cat > c.ini <<'INI'
[aws]
endpoint_url = http://127.0.0.1:1
region = us-east-1
[input]
queue_url = http://127.0.0.1:1/123456789012/q
bucket = in
[output]
bucket = out
[postgres]
conninfo = host=127.0.0.1 port=1 connect_timeout=1
INI
# A 1x1 PNG.
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82' > x.png
mkdir home
fail=0
check() { # EXPECTED-RC NEEDLE ENV... -- ARGS...
  local want=$1 needle=$2; shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env -i PATH="$PATH" HOME="$dir/home" AWS_EC2_METADATA_DISABLED=true "${envs[@]}" \
    "$canopy" "$@" >out 2>err
  local rc=$?
  if [ "$rc" != "$want" ] || ! grep -qF -- "$needle" err; then
    echo "FAIL: canopy $* (${envs[*]}): exit $rc, wanted $want and '$needle'; stderr:"
    cat err
    fail=1
  else
    echo "ok: canopy $* (${envs[*]}) -> $rc"
  fi
}
for args in "submit -c c.ini x.png" "drain -c c.ini" "reprocess s3://in/p -c c.ini" \
            "reprocess s3://in/p -c c.ini --dry-run"; do
  # shellcheck disable=SC2086
  check 1 "no AWS credentials found" -- $args
  for source in "1. [aws] access_key_id" "2. AWS_ACCESS_KEY_ID" "3. web identity" \
                "4. profile 'default'" "5. container credentials" "6. EC2 instance metadata"; do
    grep -qF -- "$source" err || { echo "FAIL: $args: '$source' not listed"; fail=1; }
  done
  # shellcheck disable=SC2086
  check 2 "AWS profile 'nope' not found" AWS_PROFILE=nope -- $args
  # shellcheck disable=SC2086
  check 2 "AWS profile 'gone' not found" -- $args --set aws.profile=gone
done
exit $fail
