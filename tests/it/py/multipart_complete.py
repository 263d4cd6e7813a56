"""Completes an upload with all its parts (or the first K, given as a fourth argument);
prints SENDING just before the request and COMPLETED once it is acknowledged."""
import sys

from common import client

bucket, key, uid = sys.argv[1:4]
s3 = client(retries={"max_attempts": 1}, read_timeout=300)
parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
if len(sys.argv) > 4:
    parts = parts[: int(sys.argv[4])]
print("SENDING", flush=True)
s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={
    "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]})
print("COMPLETED", flush=True)
