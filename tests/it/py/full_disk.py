"""A store whose disk fills up: every write refused for lack of room answers 507
XFerryStorageFull (never a 500 a client retries, never a server path), reads go on, and
deletes and aborts still go through, so the disk can be emptied through S3."""
import os
import sys

from botocore.exceptions import ClientError

from common import client, error_code, status

s3 = client(retries={"max_attempts": 1})
B = "full"
s3.create_bucket(Bucket=B)


def refused(e):
    code, st = error_code(e), status(e)
    assert (code, st) == ("XFerryStorageFull", 507), f"{code} {st}: {e.response}"
    message = e.response["Error"].get("Message", "")
    assert "/" not in message, f"a server path in the message: {message}"


def fill(prefix, size, limit):
    """PUTs objects of `size` until one is refused; returns the keys written."""
    body = os.urandom(size)
    keys = []
    for i in range(limit):
        key = f"{prefix}{i:05}"
        try:
            s3.put_object(Bucket=B, Key=key, Body=body)
        except ClientError as e:
            refused(e)
            return keys
        keys.append(key)
    raise AssertionError(f"{limit} objects of {size} bytes fit a small disk")


big = fill("big/", 1 << 20, 200)
small = fill("small/", 1 << 10, 200_000)
assert big and small, (len(big), len(small))
print(f"full after {len(big)} x 1 MiB and {len(small)} x 1 KiB", file=sys.stderr)

# Multipart: creating an upload, or a part, is refused alike.
try:
    up = s3.create_multipart_upload(Bucket=B, Key="mp")["UploadId"]
    try:
        s3.upload_part(Bucket=B, Key="mp", UploadId=up, PartNumber=1, Body=os.urandom(5 << 20))
        raise AssertionError("a 5 MiB part fit a full disk")
    except ClientError as e:
        refused(e)
    s3.abort_multipart_upload(Bucket=B, Key="mp", UploadId=up)
except ClientError as e:
    refused(e)

# Reads go on.
assert s3.get_object(Bucket=B, Key=small[0])["Body"].read() is not None
assert s3.list_objects_v2(Bucket=B, MaxKeys=5)["KeyCount"] == 5

# Deletes go through on the full disk, several at once: the one that releases the reserve
# and those that ran out of room beside it.
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda k: s3.delete_object(Bucket=B, Key=k), small[-8:]))
# What they freed is kept for deletes: a write is still refused.
try:
    s3.put_object(Bucket=B, Key="too-soon", Body=b"x" * 1024)
    raise AssertionError("a write took the room the deletes freed")
except ClientError as e:
    refused(e)
for k in big[:4]:
    s3.delete_object(Bucket=B, Key=k)
gone = [{"Key": k} for k in small[:10]]
out = s3.delete_objects(Bucket=B, Delete={"Objects": gone})
assert not out.get("Errors"), out.get("Errors")
# Room again: writes work without a restart.
s3.put_object(Bucket=B, Key="after", Body=os.urandom(1 << 20))
keys = {o["Key"] for o in s3.list_objects_v2(Bucket=B, Prefix="big/")["Contents"]}
assert keys == set(big[4:]), "the listing does not match what was deleted"
print("ok")
