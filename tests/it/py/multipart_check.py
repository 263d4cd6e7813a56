"""After a crash during complete: either the whole object exists with the right bytes
(prints OBJECT), or it does not exist and the upload is intact (prints UPLOAD). A sixth
argument K says the complete chose the first K parts only."""
import hashlib
import sys

from botocore.exceptions import ClientError
from common import client

bucket, key, uid, n, mib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
chosen = int(sys.argv[6]) if len(sys.argv) > 6 else n
s3 = client()
try:
    h = s3.head_object(Bucket=bucket, Key=key)
except ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in parts] == list(range(1, n + 1)), parts
    print("UPLOAD")
    sys.exit(0)
assert h["ContentLength"] == chosen * (mib << 20), h
body = s3.get_object(Bucket=bucket, Key=key)["Body"]
for i in range(1, chosen + 1):
    want = bytes([i]) * (1 << 20)
    for _ in range(mib):
        got = body.read(1 << 20)
        assert got == want, f"part {i} differs"
assert body.read(1) == b""
print("OBJECT")
