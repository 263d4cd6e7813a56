"""Checks a crash test's acknowledgement log against the server.

usage: verify_acks.py put BUCKET ACKLOG            every logged key reads back with its MD5
       verify_acks.py delete BUCKET ACKLOG         every logged key is gone
       verify_acks.py put-unless-deleted BUCKET PUTLOG DELLOG
A key whose DELETE was attempted (DELLOG.attempted) but not acknowledged may be present or
gone; when present, its bytes must still be the acknowledged ones.
Prints the number of entries checked."""
import hashlib
import sys

from botocore.exceptions import ClientError
from common import client

mode, bucket = sys.argv[1], sys.argv[2]
s3 = client()
deleted = set()
maybe_deleted = set()
if mode == "put-unless-deleted":
    deleted = {line.split()[0] for line in open(sys.argv[4]) if line.strip()}
    maybe_deleted = {line.strip() for line in open(sys.argv[4] + ".attempted") if line.strip()}
checked = 0
for line in open(sys.argv[3]):
    parts = line.split()
    if not parts:
        continue
    key = parts[0]
    if mode in ("put", "put-unless-deleted"):
        if key in deleted:
            continue
        try:
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            if key in maybe_deleted and e.response["Error"]["Code"] == "NoSuchKey":
                continue  # its DELETE was sent; the server applied it but died before answering
            raise
        assert hashlib.md5(data).hexdigest() == parts[1], f"{key}: content differs from the acknowledged write"
    else:
        try:
            s3.head_object(Bucket=bucket, Key=key)
            raise AssertionError(f"{key}: an acknowledged DELETE came back")
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
    checked += 1
print(checked)
