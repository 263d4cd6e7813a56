"""Multipart calls for the role-change tests, one per run; prints `ok`, an id, or the S3 error
as `CODE: message`.
  begin BUCKET KEY          starts an upload with a 5 MiB part 1; prints its id
  part BUCKET KEY ID N      uploads a 1 KiB part N
  complete BUCKET KEY ID    completes with every part listed
  abort BUCKET KEY ID
  uploads BUCKET            the bucket's upload ids, one per line"""
import sys

from botocore.exceptions import ClientError

from common import client

s3 = client()
cmd, bucket = sys.argv[1], sys.argv[2]
try:
    if cmd == "begin":
        key = sys.argv[3]
        uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=b"1" * (5 << 20))
        print(uid)
    elif cmd == "part":
        key, uid, n = sys.argv[3], sys.argv[4], int(sys.argv[5])
        s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=b"2" * 1024)
        print("ok")
    elif cmd == "complete":
        key, uid = sys.argv[3], sys.argv[4]
        parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]})
        print("ok")
    elif cmd == "abort":
        s3.abort_multipart_upload(Bucket=bucket, Key=sys.argv[3], UploadId=sys.argv[4])
        print("ok")
    elif cmd == "uploads":
        for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            print(u["UploadId"])
except ClientError as e:
    err = e.response.get("Error", {})
    print(f"{err.get('Code')}: {err.get('Message')}")
