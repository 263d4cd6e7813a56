"""Completes an upload with all its parts; prints COMPLETED once acknowledged."""
import sys

from common import client

bucket, key, uid = sys.argv[1:4]
s3 = client(retries={"max_attempts": 1}, read_timeout=300)
parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={
    "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]})
print("COMPLETED", flush=True)
