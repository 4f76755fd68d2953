"""The baseline for bench/e2e: a worker built like the earlier Python system
(boto3 + OpenCV, one message at a time):

    receive one message -> download the PNG -> binarize (grayscale, Otsu)
    -> upload <stem>.mask.png -> notify the output queue -> delete the message

It accepts the same messages as canopy (S3 event notifications, plain or
SNS-wrapped, and the legacy JSON {"image_id", "bucket", "key", ...}) and
exits when the queue stayed empty for --idle-exit seconds. Endpoint,
credentials and region come from the usual AWS_* variables.

    python baseline_worker.py --queue URL --out-bucket B [--out-prefix P]
                              [--out-queue URL] [--idle-exit S]
"""
import argparse
import json
import sys
import time
import urllib.parse

import boto3
import cv2
import numpy as np


def images_of(body):
    """[(bucket, key, image_id)] named by a message body."""
    msg = json.loads(body)
    if msg.get("Type") == "Notification" and "Message" in msg:
        msg = json.loads(msg["Message"])
    if "Records" in msg:
        return [(r["s3"]["bucket"]["name"], urllib.parse.unquote_plus(r["s3"]["object"]["key"]),
                 None) for r in msg["Records"] if r.get("eventName", "").startswith("ObjectCreated")]
    if "bucket" in msg and "key" in msg:
        return [(msg["bucket"], msg["key"], msg.get("image_id"))]
    return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queue", required=True)
    ap.add_argument("--out-bucket", required=True)
    ap.add_argument("--out-prefix", default="")
    ap.add_argument("--out-queue", default="")
    ap.add_argument("--idle-exit", type=float, default=2.0)
    ap.add_argument("--wait", type=int, default=1, help="long-poll seconds")
    args = ap.parse_args()
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    done = failed = 0
    pixels = 0
    idle_since = time.monotonic()
    t0 = time.monotonic()
    while True:
        r = sqs.receive_message(QueueUrl=args.queue, MaxNumberOfMessages=1,
                                WaitTimeSeconds=args.wait)
        msgs = r.get("Messages", [])
        if not msgs:
            if time.monotonic() - idle_since >= args.idle_exit:
                break
            continue
        m = msgs[0]
        try:
            for bucket, key, image_id in images_of(m["Body"]):
                data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                if img is None:
                    raise ValueError("%s: not a decodable image" % key)
                gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                threshold, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
                ok, png = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                if not ok:
                    raise ValueError("%s: PNG encoding failed" % key)
                stem = key.rsplit(".", 1)[0]
                mask_key = args.out_prefix + stem + ".mask.png"
                s3.put_object(Bucket=args.out_bucket, Key=mask_key, Body=png.tobytes(),
                              ContentType="image/png")
                if args.out_queue:
                    sqs.send_message(QueueUrl=args.out_queue, MessageBody=json.dumps({
                        "image_id": image_id, "bucket": bucket, "key": key,
                        "threshold": float(threshold),
                        "canopy_cover": float(np.count_nonzero(mask)) / mask.size,
                        "mask_key": mask_key, "output_bucket": args.out_bucket}))
                done += 1
                pixels += mask.size
        except Exception as e:  # the earlier worker logged and left the message
            failed += 1
            print("baseline: %s" % e, file=sys.stderr)
            continue
        sqs.delete_message(QueueUrl=args.queue, ReceiptHandle=m["ReceiptHandle"])
        idle_since = time.monotonic()
    elapsed = time.monotonic() - t0
    print(json.dumps({"images": done, "failed": failed, "megapixels": pixels / 1e6,
                      "seconds": elapsed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
