"""moto from scripts/stack.sh: the IAM user's key works for S3 and SQS, and a
wrong secret or an unknown access key is refused with 403 (signature checking
is on). Uses AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_REGION from the stack's environment."""
import os
import sys
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

URL = os.environ["AWS_ENDPOINT_URL"]
KEY_ID = os.environ["AWS_ACCESS_KEY_ID"]
SECRET = os.environ["AWS_SECRET_ACCESS_KEY"]
REGION = os.environ["AWS_REGION"]
CFG = Config(retries={"max_attempts": 1})


def client(service, key_id=KEY_ID, secret=SECRET):
    return boto3.client(service, endpoint_url=URL, region_name=REGION, config=CFG,
                        aws_access_key_id=key_id, aws_secret_access_key=secret)


def expect_403(what, call):
    try:
        call()
    except ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        if status != 403:
            sys.exit(f"FAIL: {what}: expected 403, got {status} {e}")
        print(f"ok: {what} refused: 403 {e.response['Error'].get('Code')}")
        return
    sys.exit(f"FAIL: {what} succeeded: moto does not check signatures")


suffix = uuid.uuid4().hex[:12]
bucket = f"canopy-stack-{suffix}"
s3 = client("s3")
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="dir/a b+c.txt", Body=b"hello")
body = s3.get_object(Bucket=bucket, Key="dir/a b+c.txt")["Body"].read()
if body != b"hello":
    sys.exit(f"FAIL: S3 round trip returned {body!r}")
print("ok: S3 put/get with the IAM user's key")

sqs = client("sqs")
queue = sqs.create_queue(QueueName=f"canopy-stack-{suffix}")["QueueUrl"]
sqs.send_message(QueueUrl=queue, MessageBody="ping")
msgs = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
if [m["Body"] for m in msgs] != ["ping"]:
    sys.exit(f"FAIL: SQS round trip returned {msgs!r}")
print("ok: SQS send/receive with the IAM user's key")

wrong = SECRET[:-1] + ("A" if SECRET[-1] != "A" else "B")
expect_403("S3 GetObject with a wrong secret",
           lambda: client("s3", secret=wrong).get_object(Bucket=bucket, Key="dir/a b+c.txt"))
expect_403("S3 ListBuckets with an unknown key",
           lambda: client("s3", key_id="AKIAUNKNOWN000000000").list_buckets())
expect_403("SQS SendMessage with a wrong secret",
           lambda: client("sqs", secret=wrong).send_message(QueueUrl=queue, MessageBody="x"))

s3.delete_object(Bucket=bucket, Key="dir/a b+c.txt")
s3.delete_bucket(Bucket=bucket)
sqs.delete_queue(QueueUrl=queue)
