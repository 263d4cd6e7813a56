"""Mutations of every kind through boto3 on a namespace bucket (issue 4).

usage: multiwrite_ops.py BUCKET
PUT with metadata and tags, copy, object tagging, DELETE, delete-many and a multipart upload;
the test then checks that every secondary ends equal to the primary."""
import sys

from common import client

bucket = sys.argv[1]
s3 = client()
s3.put_object(Bucket=bucket, Key="meta.txt", Body=b"with metadata", ContentType="text/plain",
              Metadata={"color": "blue", "city": "=?UTF-8?B?WsO8cmljaA==?="}, Tagging="team=storage")
s3.put_object(Bucket=bucket, Key="gone.txt", Body=b"deleted next")
s3.delete_object(Bucket=bucket, Key="gone.txt")
for i in range(5):
    s3.put_object(Bucket=bucket, Key=f"many/{i}", Body=f"object {i}".encode())
s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "many/0"}, {"Key": "many/1"}]})
s3.copy_object(Bucket=bucket, Key="copied.txt", CopySource={"Bucket": bucket, "Key": "meta.txt"})
s3.put_object_tagging(Bucket=bucket, Key="many/2", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
up = s3.create_multipart_upload(Bucket=bucket, Key="multi.bin")
parts = []
for n in (1, 2):
    body = bytes([n]) * (5 * 1024 * 1024 if n == 1 else 1000)
    r = s3.upload_part(Bucket=bucket, Key="multi.bin", UploadId=up["UploadId"], PartNumber=n, Body=body)
    parts.append({"PartNumber": n, "ETag": r["ETag"]})
s3.complete_multipart_upload(Bucket=bucket, Key="multi.bin", UploadId=up["UploadId"],
                             MultipartUpload={"Parts": parts})
got = s3.get_object(Bucket=bucket, Key="meta.txt")
assert got["Body"].read() == b"with metadata"
assert got["Metadata"] == {"color": "blue", "city": "=?UTF-8?B?WsO8cmljaA==?="}, got["Metadata"]
# A namespace bucket that is not empty answers DeleteBucket as any bucket does.
try:
    s3.delete_bucket(Bucket=bucket)
    raise AssertionError("a non-empty namespace bucket was deleted")
except s3.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "BucketNotEmpty", e.response
print("ok")
