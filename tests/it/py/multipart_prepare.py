"""Creates BUCKET (unless it exists), starts a multipart upload of KEY and uploads N parts of M MiB each
(part i is filled with byte i). Prints the upload id."""
import sys

from common import client

bucket, key, n, mib = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s3 = client()
if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket=bucket)
uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
for i in range(1, n + 1):
    s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=bytes([i]) * (mib << 20))
print(uid)
