#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs canopy over the three
# NEON images in ../shared/data/neon.
#
#   1. `canopy run` over the local files: outputs in out/demo/, one line per
#      image and a summary.
#   2. When this build has `canopy drain`: the batch job against a local stack
#      (PostgreSQL + moto for S3 and SQS, signature checking on), started for
#      the demo and stopped afterwards: buckets and queues (with a dead-letter
#      queue) are created, the images submitted and drained, and the rows
#      written to PostgreSQL are shown.
#
# Environment: CANOPY_NEON_DIR (default ../shared/data/neon beside the
# repository), CANOPY_BUILD_DIR (default build/).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD_DIR=${CANOPY_BUILD_DIR:-$CANOPY_ROOT/build}
CANOPY="$BUILD_DIR/canopy"
NEON_DIR=${CANOPY_NEON_DIR:-$CANOPY_ROOT/../shared/data/neon}
OUT_DIR="$CANOPY_ROOT/out/demo"

setup() {
  bash "$CANOPY_ROOT/scripts/bootstrap.sh"
}

build() {
  say "building $BUILD_DIR"
  canopy_build "$BUILD_DIR"
}

# run_local: the embedded default, no service: local files in, local files out.
run_local() {
  [ -d "$NEON_DIR" ] || die "no images at $NEON_DIR (set CANOPY_NEON_DIR)"
  mkdir -p "$OUT_DIR"
  say "canopy run --input $NEON_DIR --output $OUT_DIR"
  (cd "$CANOPY_ROOT" && "$CANOPY" run --input "$NEON_DIR" --output "$OUT_DIR")
}

# drain_available: true when this build implements `canopy drain`.
drain_available() {
  "$CANOPY" drain --help >/dev/null 2>&1
}

# stack_start: a local stack private to the demo, stopped when the script exits.
stack_start() {
  export CANOPY_STACK_DIR
  CANOPY_STACK_DIR=$(mktemp -d /tmp/canopy-demo-stack.XXXXXX)
  trap 'bash "$CANOPY_ROOT/scripts/stack.sh" clean >/dev/null 2>&1 || true' EXIT
  bash "$CANOPY_ROOT/scripts/stack.sh" start
  # shellcheck disable=SC1091
  . "$CANOPY_STACK_DIR/env"
}

# make_resources: buckets and queues for the demo (the input queue redrives to
# a dead-letter queue after 5 receives); exports the CANOPY_<SECTION>_<KEY>
# settings that point canopy at them.
make_resources() {
  local urls
  urls=$("$CANOPY_PYTHON" - <<'EOF'
import json
import boto3
s3, sqs = boto3.client("s3"), boto3.client("sqs")
for bucket in ("canopy-demo-input", "canopy-demo-output"):
    s3.create_bucket(Bucket=bucket)
dlq = sqs.create_queue(QueueName="canopy-demo-dlq")["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
inq = sqs.create_queue(QueueName="canopy-demo-input", Attributes={
    "VisibilityTimeout": "120",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
outq = sqs.create_queue(QueueName="canopy-demo-output")["QueueUrl"]
print(inq, outq)
EOF
  )
  read -r CANOPY_INPUT_QUEUE_URL CANOPY_OUTPUT_QUEUE_URL <<<"$urls"
  export CANOPY_INPUT_QUEUE_URL CANOPY_OUTPUT_QUEUE_URL
  export CANOPY_INPUT_BUCKET=canopy-demo-input CANOPY_INPUT_PREFIX=neon/
  export CANOPY_OUTPUT_BUCKET=canopy-demo-output CANOPY_OUTPUT_PREFIX=results/
  export CANOPY_POSTGRES_CONNINFO="host=$PGHOST port=$PGPORT user=$PGUSER dbname=$PGDATABASE"
  export CANOPY_BATCH_IDLE_EXIT_SECONDS=3 CANOPY_BATCH_WAIT_SECONDS=1
}

# run_service: the batch job end to end against the local stack.
run_service() {
  stack_start
  make_resources
  (
    cd "$CANOPY_ROOT"
    "$CANOPY" db migrate
    "$CANOPY" submit "$NEON_DIR"/*.png
    "$CANOPY" drain
  )
  say "rows in PostgreSQL:"
  psql -X -P pager=off -c 'select key, width, height, threshold, canopy_cover, tree_count, status
                           from images order by key'
}

main() {
  setup
  build
  run_local
  if drain_available; then
    run_service
  else
    say "this build has no 'canopy drain' yet: the queue demo is skipped"
  fi
}

main "$@"
