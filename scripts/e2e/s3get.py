"""Prints an object's bytes to stdout: s3get.py KEY (endpoint, bucket and credentials
from S3_ENDPOINT, S3_BUCKET and the AWS_* variables); exit status 3 when there is no such
object. With --put KEY, stores stdin as KEY instead (another writer). Used by the browser
test to check what reached S3, with a client that is not ours."""
import os
import sys

import boto3
from botocore.exceptions import ClientError

s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")
bucket = os.environ["S3_BUCKET"]
if sys.argv[1] == "--put":
    s3.put_object(Bucket=bucket, Key=sys.argv[2], Body=sys.stdin.buffer.read())
    sys.exit(0)
try:
    body = s3.get_object(Bucket=bucket, Key=sys.argv[1])["Body"].read()
except ClientError as e:
    if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
        sys.exit(3)
    raise
sys.stdout.buffer.write(body)
