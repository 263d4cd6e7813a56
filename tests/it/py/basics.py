"""boto3 at default settings (checksum trailers on) against a Ferry endpoint: the common
operations and their edge cases. Exits non-zero on the first failed assertion."""
import datetime
import hashlib
import io

from boto3.s3.transfer import TransferConfig
from common import client, expect_error

s3 = client()
B = "basics"
s3.create_bucket(Bucket=B)
expect_error(lambda: s3.create_bucket(Bucket=B), "BucketAlreadyOwnedByYou", 409)
s3.head_bucket(Bucket=B)
expect_error(lambda: s3.head_bucket(Bucket="no-such-bucket"), "404", 404)
assert B in [b["Name"] for b in s3.list_buckets()["Buckets"]]
assert s3.get_bucket_location(Bucket=B).get("LocationConstraint") in (None, "")

# PUT / GET / HEAD with metadata and standard headers
body = b"hello ferry\n" * 100
r = s3.put_object(Bucket=B, Key="docs/a.txt", Body=body, ContentType="text/plain",
                  Metadata={"Owner": "alice", "x": "1"}, CacheControl="max-age=60",
                  ContentDisposition="inline", Tagging="k1=v1&k2=v%202")
etag = r["ETag"].strip('"')
assert etag == hashlib.md5(body).hexdigest(), (etag, r)
g = s3.get_object(Bucket=B, Key="docs/a.txt")
assert g["Body"].read() == body
assert g["ContentType"] == "text/plain", g["ContentType"]
assert g["Metadata"] == {"owner": "alice", "x": "1"}, g["Metadata"]
assert g["CacheControl"] == "max-age=60"
assert g["ContentDisposition"] == "inline"
assert g["TagCount"] == 2
h = s3.head_object(Bucket=B, Key="docs/a.txt")
assert h["ContentLength"] == len(body)
assert h["ETag"].strip('"') == etag
assert h["TagCount"] == 2, h
tags = s3.get_object_tagging(Bucket=B, Key="docs/a.txt")["TagSet"]
assert {t["Key"]: t["Value"] for t in tags} == {"k1": "v1", "k2": "v 2"}, tags
s3.put_object_tagging(Bucket=B, Key="docs/a.txt", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
assert s3.get_object_tagging(Bucket=B, Key="docs/a.txt")["TagSet"] == [{"Key": "a", "Value": "b"}]
s3.delete_object_tagging(Bucket=B, Key="docs/a.txt")
assert "TagCount" not in s3.head_object(Bucket=B, Key="docs/a.txt")
assert s3.get_object_tagging(Bucket=B, Key="docs/a.txt")["TagSet"] == []
expect_error(lambda: s3.get_object(Bucket=B, Key="docs/missing"), "NoSuchKey", 404)
expect_error(lambda: s3.get_object(Bucket="no-such-bucket", Key="x"), "NoSuchBucket", 404)

# Ranges
assert s3.get_object(Bucket=B, Key="docs/a.txt", Range="bytes=0-4")["Body"].read() == body[:5]
assert s3.get_object(Bucket=B, Key="docs/a.txt", Range="bytes=10-")["Body"].read() == body[10:]
assert s3.get_object(Bucket=B, Key="docs/a.txt", Range="bytes=-7")["Body"].read() == body[-7:]
r = s3.get_object(Bucket=B, Key="docs/a.txt", Range=f"bytes=5-{len(body) + 100}")
assert r["ContentRange"] == f"bytes 5-{len(body) - 1}/{len(body)}", r["ContentRange"]
expect_error(lambda: s3.get_object(Bucket=B, Key="docs/a.txt", Range=f"bytes={len(body)}-"), "InvalidRange", 416)

# Conditional requests
s3.get_object(Bucket=B, Key="docs/a.txt", IfMatch=etag)
expect_error(lambda: s3.get_object(Bucket=B, Key="docs/a.txt", IfMatch="0" * 32), "PreconditionFailed", 412)
expect_error(lambda: s3.get_object(Bucket=B, Key="docs/a.txt", IfNoneMatch=etag), "304", 304)
future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
expect_error(lambda: s3.get_object(Bucket=B, Key="docs/a.txt", IfModifiedSince=future), "304", 304)
s3.get_object(Bucket=B, Key="docs/a.txt", IfModifiedSince=past)
expect_error(lambda: s3.get_object(Bucket=B, Key="docs/a.txt", IfUnmodifiedSince=past), "PreconditionFailed", 412)
expect_error(lambda: s3.put_object(Bucket=B, Key="docs/a.txt", Body=b"x", IfNoneMatch="*"), "PreconditionFailed", 412)

# Copy: metadata directive COPY and REPLACE; copy onto itself needs REPLACE
c = s3.copy_object(Bucket=B, Key="docs/copy.txt", CopySource={"Bucket": B, "Key": "docs/a.txt"})
assert c["CopyObjectResult"]["ETag"].strip('"') == etag
assert s3.head_object(Bucket=B, Key="docs/copy.txt")["Metadata"] == {"owner": "alice", "x": "1"}
s3.copy_object(Bucket=B, Key="docs/copy2.txt", CopySource={"Bucket": B, "Key": "docs/a.txt"},
               MetadataDirective="REPLACE", Metadata={"new": "yes"}, ContentType="application/x-test")
h = s3.head_object(Bucket=B, Key="docs/copy2.txt")
assert h["Metadata"] == {"new": "yes"} and h["ContentType"] == "application/x-test", h
expect_error(lambda: s3.copy_object(Bucket=B, Key="docs/a.txt", CopySource={"Bucket": B, "Key": "docs/a.txt"}),
             "InvalidRequest", 400)
s3.copy_object(Bucket=B, Key="docs/a.txt", CopySource={"Bucket": B, "Key": "docs/a.txt"},
               MetadataDirective="REPLACE", Metadata={"changed": "1"})
assert s3.head_object(Bucket=B, Key="docs/a.txt")["Metadata"] == {"changed": "1"}

# Listing: v1, v2, delimiter, prefix, start-after, paging, encoding-type=url
keys = [f"list/{d}/{i:03d} é.txt" for d in ("x", "y") for i in range(30)] + ["list/top.txt", "list/z+plus"]
for k in keys:
    s3.put_object(Bucket=B, Key=k, Body=k.encode())
got = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B, Prefix="list/", PaginationConfig={"PageSize": 7}):
    got += [o["Key"] for o in page.get("Contents", [])]
assert got == sorted(keys, key=lambda k: k.encode()), got
got = []
for page in s3.get_paginator("list_objects").paginate(Bucket=B, Prefix="list/", PaginationConfig={"PageSize": 9}):
    got += [o["Key"] for o in page.get("Contents", [])]
assert got == sorted(keys, key=lambda k: k.encode()), got
r = s3.list_objects_v2(Bucket=B, Prefix="list/", Delimiter="/")
assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["list/x/", "list/y/"], r
assert [o["Key"] for o in r["Contents"]] == ["list/top.txt", "list/z+plus"], r
prefixes, contents, token = [], [], None
while True:
    kw = {"ContinuationToken": token} if token else {}
    r = s3.list_objects_v2(Bucket=B, Prefix="list/", Delimiter="/", MaxKeys=1, **kw)
    assert r["KeyCount"] <= 1
    prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
    contents += [o["Key"] for o in r.get("Contents", [])]
    if not r["IsTruncated"]:
        break
    token = r["NextContinuationToken"]
assert prefixes == ["list/x/", "list/y/"] and contents == ["list/top.txt", "list/z+plus"], (prefixes, contents)
r = s3.list_objects_v2(Bucket=B, Prefix="list/y/", StartAfter="list/y/027 é.txt")
assert [o["Key"] for o in r["Contents"]] == ["list/y/028 é.txt", "list/y/029 é.txt"], r
r = s3.list_objects_v2(Bucket=B, Prefix="list/x/00", EncodingType="url")
# botocore leaves keys encoded when the caller asked for encoding-type=url itself.
assert r["Contents"][0]["Key"] == "list/x/000%20%C3%A9.txt", r["Contents"][0]
assert s3.list_objects_v2(Bucket=B, Prefix="nothing/")["KeyCount"] == 0

# DeleteObjects
r = s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": k} for k in keys] + [{"Key": "never-existed"}]})
assert len(r["Deleted"]) == len(keys) + 1 and not r.get("Errors"), r
assert s3.list_objects_v2(Bucket=B, Prefix="list/")["KeyCount"] == 0

# Multipart through the transfer manager (parts of 5 MiB), and by hand
big = bytes(range(256)) * (17 * 4096)  # 17 MiB: parts of 5, 5, 5 and 2 MiB
cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
s3.upload_fileobj(io.BytesIO(big), B, "big.bin", Config=cfg)
h = s3.head_object(Bucket=B, Key="big.bin")
assert h["ContentLength"] == len(big) and h["ETag"].strip('"').endswith("-4"), h
out = io.BytesIO()
s3.download_fileobj(B, "big.bin", out, Config=cfg)
assert out.getvalue() == big
mp = s3.create_multipart_upload(Bucket=B, Key="manual.bin", Metadata={"m": "1"})
uid = mp["UploadId"]
assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=B)["Uploads"]] == [uid]
p1 = s3.upload_part(Bucket=B, Key="manual.bin", UploadId=uid, PartNumber=1, Body=big[: 5 * 1024 * 1024])
p2 = s3.upload_part_copy(Bucket=B, Key="manual.bin", UploadId=uid, PartNumber=2,
                         CopySource={"Bucket": B, "Key": "docs/copy.txt"}, CopySourceRange="bytes=0-99")
parts = s3.list_parts(Bucket=B, Key="manual.bin", UploadId=uid)["Parts"]
assert [p["PartNumber"] for p in parts] == [1, 2] and parts[1]["Size"] == 100, parts
expect_error(lambda: s3.complete_multipart_upload(
    Bucket=B, Key="manual.bin", UploadId=uid,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": '"' + "0" * 32 + '"'}]}),
    "InvalidPart", 400)
s3.complete_multipart_upload(Bucket=B, Key="manual.bin", UploadId=uid, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
g = s3.get_object(Bucket=B, Key="manual.bin")
assert g["Body"].read() == big[: 5 * 1024 * 1024] + (body[:100]) and g["Metadata"] == {"m": "1"}
expect_error(lambda: s3.list_parts(Bucket=B, Key="manual.bin", UploadId=uid), "NoSuchUpload", 404)
mp = s3.create_multipart_upload(Bucket=B, Key="aborted.bin")
s3.abort_multipart_upload(Bucket=B, Key="aborted.bin", UploadId=mp["UploadId"])
assert not s3.list_multipart_uploads(Bucket=B).get("Uploads")

# Bucket tagging
expect_error(lambda: s3.get_bucket_tagging(Bucket=B), "NoSuchTagSet", 404)
s3.put_bucket_tagging(Bucket=B, Tagging={"TagSet": [{"Key": "team", "Value": "storage"}]})
assert s3.get_bucket_tagging(Bucket=B)["TagSet"] == [{"Key": "team", "Value": "storage"}]
s3.delete_bucket_tagging(Bucket=B)

# Delete bucket: refused while not empty
expect_error(lambda: s3.delete_bucket(Bucket=B), "BucketNotEmpty", 409)
for o in s3.list_objects_v2(Bucket=B)["Contents"]:
    s3.delete_object(Bucket=B, Key=o["Key"])
s3.delete_bucket(Bucket=B)
expect_error(lambda: s3.head_bucket(Bucket=B), "404", 404)
print("OK")

# A website redirect is kept and named back (S3 keeps it; a copy gets the one it names).
W = "basics-web"
s3.create_bucket(Bucket=W)
s3.put_object(Bucket=W, Key="moved.html", Body=b"", WebsiteRedirectLocation="/new.html")
assert s3.head_object(Bucket=W, Key="moved.html")["WebsiteRedirectLocation"] == "/new.html"
assert s3.get_object(Bucket=W, Key="moved.html")["WebsiteRedirectLocation"] == "/new.html"
s3.copy_object(Bucket=W, Key="moved-copy.html", CopySource={"Bucket": W, "Key": "moved.html"})
assert "WebsiteRedirectLocation" not in s3.head_object(Bucket=W, Key="moved-copy.html")
s3.copy_object(Bucket=W, Key="moved-copy.html", CopySource={"Bucket": W, "Key": "moved.html"},
               WebsiteRedirectLocation="/newer.html")
assert s3.head_object(Bucket=W, Key="moved-copy.html")["WebsiteRedirectLocation"] == "/newer.html"
print("website redirect: ok")
