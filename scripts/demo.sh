#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs canopy over the three
# NEON images in tests/data/neon.
#
#   1. `canopy run` over the local files: outputs in out/demo/, one line per
#      image and a summary.
#   2. The batch job against a local stack
#      (PostgreSQL + moto for S3 and SQS, signature checking on), started for
#      the demo and stopped afterwards: buckets and queues (with a dead-letter
#      queue) are created, the images submitted and drained, and the rows
#      written to PostgreSQL are shown.
#
# It installs what the demo needs and nothing more (no torch: that is for
# scripts/test.sh and tools/), after checking the prerequisites (Debian 12,
# root or sudo, disk space): `scripts/demo.sh --check` checks them and
# prints what would be installed, then stops.
#
# Environment: CANOPY_NEON_DIR (default tests/data/neon beside the
# repository), CANOPY_BUILD_DIR (default build/).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD_DIR=${CANOPY_BUILD_DIR:-$CANOPY_ROOT/build}
MODEL=${CANOPY_DETECTOR_MODEL:-$CANOPY_ROOT/models/crown-1.1.cnw}
[ -f "$MODEL" ] || die "detector weights not found: $MODEL"
export CANOPY_DETECTOR_MODEL="$MODEL"
CANOPY="$BUILD_DIR/canopy"
NEON_DIR=${CANOPY_NEON_DIR:-$CANOPY_ROOT/tests/data/neon}
OUT_DIR="$CANOPY_ROOT/out/demo"

setup() {
  bash "$CANOPY_ROOT/scripts/bootstrap.sh" "$@"
}

build() {
  say "building $BUILD_DIR"
  canopy_build "$BUILD_DIR"
}

# run_local: the embedded default, no service: local files in, local files out.
# make_geotiff: a georeferenced Cloud-Optimised GeoTIFF of OSBS_029, placed
# in UTM zone 17N near the OSBS site (Florida) at its 0.1 m resolution, as an
# agency orthophoto tile would come.
make_geotiff() {
  GEO_DIR="$CANOPY_ROOT/out/demo-geotiff"
  mkdir -p "$GEO_DIR"
  GEOTIFF="$GEO_DIR/OSBS_029_utm17n.tif"
  gdal_translate -q -of COG -co COMPRESS=DEFLATE -a_srs EPSG:32617 \
    -a_ullr 403980 3284980 404020 3284940 "$NEON_DIR/OSBS_029.png" "$GEOTIFF"
}

run_local() {
  [ -d "$NEON_DIR" ] || die "no images at $NEON_DIR (set CANOPY_NEON_DIR)"
  mkdir -p "$OUT_DIR"
  make_geotiff
  say "canopy run --input $NEON_DIR --input $GEOTIFF --output $OUT_DIR"
  (cd "$CANOPY_ROOT" && "$CANOPY" run --input "$NEON_DIR" --input "$GEOTIFF" --output "$OUT_DIR")
  say "the GeoTIFF's crowns in map coordinates: $OUT_DIR/OSBS_029_utm17n.trees.geojson" \
      "(open it in QGIS), mask $OUT_DIR/OSBS_029_utm17n.mask.tif"
}

# stack_start: a local stack private to the demo (PostgreSQL + moto), stopped
# and deleted when the script exits, however it exits: nothing is left running.
stack_start() {
  export CANOPY_STACK_DIR
  CANOPY_STACK_DIR=$(mktemp -d /tmp/canopy-demo-stack.XXXXXX)
  trap 'bash "$CANOPY_ROOT/scripts/stack.sh" clean >/dev/null 2>&1 || true' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  bash "$CANOPY_ROOT/scripts/stack.sh" start
  # shellcheck disable=SC1091
  . "$CANOPY_STACK_DIR/env"
}

# make_resources: buckets and queues for the demo (the input queue redrives to
# a dead-letter queue after 5 receives), then the configuration file
# $DEMO_INI that points canopy at them.
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
print(inq, outq, dlq)
EOF
  )
  read -r INPUT_QUEUE OUTPUT_QUEUE DEAD_LETTER_QUEUE <<<"$urls"
  DEMO_INI="$CANOPY_STACK_DIR/canopy-demo.ini"
  # Endpoint, credentials and region come from the AWS_* variables of the
  # stack's env file, as on AWS they come from the instance or task role.
  cat >"$DEMO_INI" <<EOF
[input]
queue_url = $INPUT_QUEUE
bucket = canopy-demo-input
prefix = neon/

[output]
bucket = canopy-demo-output
prefix = results/
queue_url = $OUTPUT_QUEUE

[batch]
wait_seconds = 1
idle_exit_seconds = 3

[postgres]
conninfo = host=$PGHOST port=$PGPORT user=$PGUSER dbname=$PGDATABASE

[detector]
model = $MODEL
EOF
  say "configuration ($DEMO_INI):"
  sed 's/^/    /' "$DEMO_INI" >&2
}

# show_results: what the drain left behind: rows, trees, objects, queues.
show_results() {
  say "results in PostgreSQL:"
  psql -X -P pager=off -v ON_ERROR_STOP=1 -c \
    "select key, scan_id, address_id, tree_types, width || 'x' || height as size,
            tree_count, round(canopy_cover::numeric, 3) as canopy_cover, status
     from images order by key"
  psql -X -P pager=off -v ON_ERROR_STOP=1 -c \
    "select i.key, count(t.image_ref) as trees, round(avg(t.radius)::numeric, 1) as mean_radius_px,
            round(avg(t.score)::numeric, 2) as mean_score
     from images i left join trees t on t.image_ref = i.id group by i.key order by i.key"
  say "PostGIS: the GeoTIFF's trees inside a 20 m x 20 m square in its north-west corner"
  psql -X -P pager=off -v ON_ERROR_STOP=1 -c \
    "select i.key, i.epsg, count(*) as trees_in_square,
            round(avg(t.radius_m)::numeric, 2) as mean_radius_m,
            round(min(t.lon)::numeric, 6) as min_lon, round(max(t.lat)::numeric, 6) as max_lat
     from trees t join images i on i.id = t.image_ref
     where ST_Within(t.geom, ST_Transform(ST_MakeEnvelope(403980, 3284960, 404000, 3284980, 32617), 4326))
     group by i.key, i.epsg"
  "$CANOPY_PYTHON" - "$INPUT_QUEUE" "$OUTPUT_QUEUE" "$DEAD_LETTER_QUEUE" <<'EOF'
import json, sys
import boto3
inq, outq, dlq = sys.argv[1:4]
s3, sqs = boto3.client("s3"), boto3.client("sqs")
print("output objects in s3://canopy-demo-output:")
for o in s3.list_objects_v2(Bucket="canopy-demo-output").get("Contents", []):
    print("    %-50s %9d bytes" % (o["Key"], o["Size"]))
def waiting(url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])
print("messages left: input queue %d, dead-letter queue %d" % (waiting(inq), waiting(dlq)))
notes = sqs.receive_message(QueueUrl=outq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
if notes:
    print("a notification on the output queue:")
    print("    " + json.dumps(json.loads(notes[0]["Body"]), indent=2).replace("\n", "\n    "))
EOF
}

# run_service: the batch job end to end against the local stack.
run_service() {
  stack_start
  make_resources
  cd "$CANOPY_ROOT"
  say "canopy db migrate"
  "$CANOPY" db migrate -c "$DEMO_INI"
  say "canopy submit: upload the NEON images with scan and address ids, enqueue them"
  "$CANOPY" submit -c "$DEMO_INI" --scan-id demo-scan-1 --address-id "1 Demo Road" \
    --tree-types pine,oak "$NEON_DIR"/*.png "$GEOTIFF"
  say "canopy drain: the batch job (exits when the queue stayed empty for 3 s)"
  "$CANOPY" drain -c "$DEMO_INI"
  show_results
}

main() {
  case "${1:-}" in
    --check) setup --check; exit 0 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  setup
  build
  run_local
  run_service
}

main "$@"
