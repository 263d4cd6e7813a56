"""Versioning with boto3: versions, the null version, delete markers, restore by copy, delete by
version id, suspension, ListObjectVersions paging. Exits non-zero on failure."""
from common import client, expect_error

s3 = client()
B = "ver"
s3.create_bucket(Bucket=B)
s3.put_object(Bucket=B, Key="k", Body=b"v0-null")
s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
ids = [s3.put_object(Bucket=B, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(1, 4)]
vs = s3.list_object_versions(Bucket=B)
assert len(vs["Versions"]) == 4
for i, vid in enumerate(ids, 1):
    assert s3.get_object(Bucket=B, Key="k", VersionId=vid)["Body"].read() == f"v{i}".encode()
assert s3.get_object(Bucket=B, Key="k", VersionId="null")["Body"].read() == b"v0-null"
d = s3.delete_object(Bucket=B, Key="k")
assert d["DeleteMarker"] and d["VersionId"], d
expect_error(lambda: s3.get_object(Bucket=B, Key="k"), "NoSuchKey", 404)
e = expect_error(lambda: s3.head_object(Bucket=B, Key="k"), "404", 404)
assert e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true"
vs = s3.list_object_versions(Bucket=B)
assert vs["DeleteMarkers"][0]["IsLatest"]
s3.copy_object(Bucket=B, Key="k", CopySource={"Bucket": B, "Key": "k", "VersionId": ids[0]})
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"v1"
s3.delete_object(Bucket=B, Key="k", VersionId=ids[1])
expect_error(lambda: s3.get_object(Bucket=B, Key="k", VersionId=ids[1]), "NoSuchVersion", 404)
# delete latest (the copy) by version id -> delete marker becomes latest -> 404
latest = s3.head_object(Bucket=B, Key="k")["VersionId"]
s3.delete_object(Bucket=B, Key="k", VersionId=latest)
expect_error(lambda: s3.get_object(Bucket=B, Key="k"), "NoSuchKey", 404)
dm = s3.list_object_versions(Bucket=B)["DeleteMarkers"][0]["VersionId"]
s3.delete_object(Bucket=B, Key="k", VersionId=dm)
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"v3", "previous version back"
s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Suspended"})
r = s3.put_object(Bucket=B, Key="k", Body=b"s1")
assert r.get("VersionId") in (None, "null"), r
r = s3.put_object(Bucket=B, Key="k", Body=b"s2")
vs = s3.list_object_versions(Bucket=B)["Versions"]
nulls = [v for v in vs if v["VersionId"] == "null"]
assert len(nulls) == 1 and nulls[0]["IsLatest"], vs
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"s2"
assert s3.get_bucket_versioning(Bucket=B)["Status"] == "Suspended"
# paging
for j in range(7):
    for i in range(3):
        s3.put_object(Bucket=B, Key=f"p/{j}", Body=b"x")
s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
for j in range(7):
    for i in range(3):
        s3.put_object(Bucket=B, Key=f"p/{j}", Body=b"y" * i)
seen = []
for page in s3.get_paginator("list_object_versions").paginate(Bucket=B, Prefix="p/", PaginationConfig={"PageSize": 2}):
    seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
assert len(seen) == len(set(seen)) == 7 * 4, (len(seen), len(set(seen)))
print("OK")
