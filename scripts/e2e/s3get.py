"""Prints an object's bytes to stdout: s3get.py KEY (endpoint, bucket and credentials
from S3_ENDPOINT, S3_BUCKET and the AWS_* variables). Used by the browser test to check
what reached S3, with a client that is not ours."""
import os
import sys

import boto3

s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")
body = s3.get_object(Bucket=os.environ["S3_BUCKET"], Key=sys.argv[1])["Body"].read()
sys.stdout.buffer.write(body)
