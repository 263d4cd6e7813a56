"""boto3 against a Ferry endpoint: conditional writes and reads as S3 defines them.
If-None-Match: * and If-Match on PutObject, CopyObject and CompleteMultipartUpload hold at
the commit (of writers racing with If-None-Match: * exactly one wins); 304 answers carry
the ETag and Last-Modified; preconditions come before ranges; HEAD with a Range is 206;
conditional deletes remove nothing when their condition fails.
Exits non-zero on the first failed assertion."""
import concurrent.futures
import threading

from botocore.exceptions import ClientError

from common import client, expect_error

s3 = client()
B = "conditions"
s3.create_bucket(Bucket=B)
etag = s3.put_object(Bucket=B, Key="k", Body=b"x" * 100)["ETag"]

# PutObject
expect_error(lambda: s3.put_object(Bucket=B, Key="k", Body=b"y", IfNoneMatch="*"), "PreconditionFailed", 412)
expect_error(lambda: s3.put_object(Bucket=B, Key="k", Body=b"y", IfMatch='"0123"'), "PreconditionFailed", 412)
expect_error(lambda: s3.put_object(Bucket=B, Key="absent", Body=b"y", IfMatch=etag), "NoSuchKey", 404)
expect_error(lambda: s3.put_object(Bucket=B, Key="k", Body=b"y", IfNoneMatch=etag), "NotImplemented", 501)
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"x" * 100
s3.put_object(Bucket=B, Key="new", Body=b"y", IfNoneMatch="*")
etag = s3.put_object(Bucket=B, Key="k", Body=b"z" * 100, IfMatch=etag)["ETag"]

# Writers racing with If-None-Match: * (a lock file): exactly one wins.
for round_ in range(5):
    key = f"lock-{round_}"
    start = threading.Barrier(8)

    def take(i):
        start.wait()
        try:
            s3.put_object(Bucket=B, Key=key, Body=bytes([i]) * 300_000, IfNoneMatch="*")
            return i
        except ClientError as e:
            assert e.response["Error"]["Code"] == "PreconditionFailed", e.response
            return None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        won = [i for i in pool.map(take, range(8)) if i is not None]
    assert len(won) == 1, f"round {round_}: {len(won)} writers won"
    assert s3.get_object(Bucket=B, Key=key)["Body"].read() == bytes([won[0]]) * 300_000

# An If-Match write racing an unconditional one never overwrites it unseen: when the
# conditional write succeeds, the unconditional one committed after it (else it would have
# changed the ETag the condition names, and the conditional write would have failed).
for round_ in range(10):
    key = f"cas-{round_}"
    e0 = s3.put_object(Bucket=B, Key=key, Body=b"0")["ETag"]
    start = threading.Barrier(2)
    plain, cond = b"u" * 1_000_000, b"c" * 1_000_000

    def unconditional():
        start.wait()
        s3.put_object(Bucket=B, Key=key, Body=plain)

    def conditional():
        start.wait()
        try:
            s3.put_object(Bucket=B, Key=key, Body=cond, IfMatch=e0)
            return True
        except ClientError as e:
            assert e.response["Error"]["Code"] == "PreconditionFailed", e.response
            return False

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        u = pool.submit(unconditional)
        c = pool.submit(conditional)
        u.result()
        won = c.result()
    final = s3.get_object(Bucket=B, Key=key)["Body"].read()
    if won:
        assert final == plain, f"round {round_}: the If-Match write overwrote a write it never saw"

# CopyObject onto an existing key
expect_error(lambda: s3.copy_object(Bucket=B, Key="k", CopySource={"Bucket": B, "Key": "new"},
                                    IfNoneMatch="*"), "PreconditionFailed", 412)
expect_error(lambda: s3.copy_object(Bucket=B, Key="k", CopySource={"Bucket": B, "Key": "new"},
                                    IfMatch='"0123"'), "PreconditionFailed", 412)
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"z" * 100
s3.copy_object(Bucket=B, Key="k", CopySource={"Bucket": B, "Key": "new"}, IfMatch=etag)
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"y"

# CompleteMultipartUpload
uid = s3.create_multipart_upload(Bucket=B, Key="k")["UploadId"]
p = s3.upload_part(Bucket=B, Key="k", UploadId=uid, PartNumber=1, Body=b"part")
parts = {"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]}
expect_error(lambda: s3.complete_multipart_upload(Bucket=B, Key="k", UploadId=uid, MultipartUpload=parts,
                                                  IfNoneMatch="*"), "PreconditionFailed", 412)
expect_error(lambda: s3.complete_multipart_upload(Bucket=B, Key="k", UploadId=uid, MultipartUpload=parts,
                                                  IfMatch='"0123"'), "PreconditionFailed", 412)
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"y"
s3.complete_multipart_upload(Bucket=B, Key="k", UploadId=uid, MultipartUpload=parts)
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"part"
uid = s3.create_multipart_upload(Bucket=B, Key="fresh")["UploadId"]
p = s3.upload_part(Bucket=B, Key="fresh", UploadId=uid, PartNumber=1, Body=b"part")
parts = {"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]}
expect_error(lambda: s3.complete_multipart_upload(Bucket=B, Key="fresh", UploadId=uid, MultipartUpload=parts,
                                                  IfMatch=p["ETag"]), "NoSuchKey", 404)
s3.complete_multipart_upload(Bucket=B, Key="fresh", UploadId=uid, MultipartUpload=parts, IfNoneMatch="*")

# Reads: 304 carries the validators; preconditions before ranges; HEAD with a Range is 206.
h = s3.head_object(Bucket=B, Key="fresh")
for call in (s3.get_object, s3.head_object):
    e = expect_error(lambda: call(Bucket=B, Key="fresh", IfNoneMatch=h["ETag"]), "304", 304)
    headers = e.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers.get("etag") == h["ETag"], headers
    assert headers.get("last-modified") == h["ResponseMetadata"]["HTTPHeaders"]["last-modified"], headers
expect_error(lambda: s3.get_object(Bucket=B, Key="fresh", Range="bytes=100-", IfMatch='"0123"'),
             "PreconditionFailed", 412)
expect_error(lambda: s3.get_object(Bucket=B, Key="fresh", Range="bytes=100-"), "InvalidRange", 416)
r = s3.head_object(Bucket=B, Key="fresh", Range="bytes=1-2")
assert r["ResponseMetadata"]["HTTPStatusCode"] == 206, r["ResponseMetadata"]
assert (r["ContentLength"], r["ContentRange"]) == (2, "bytes 1-2/4"), r

# Copies that S3 refuses: a delete marker by version id, a part range past the source's end.
s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
# A 304 of a versioned object names its version, as the 200 would.
vid = s3.put_object(Bucket=B, Key="v304", Body=b"v")["VersionId"]
for call in (s3.get_object, s3.head_object):
    e = expect_error(lambda: call(Bucket=B, Key="v304", IfNoneMatch="*"), "304", 304)
    assert e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-version-id") == vid, e.response
s3.put_object(Bucket=B, Key="gone", Body=b"1")
marker = s3.delete_object(Bucket=B, Key="gone")["VersionId"]
expect_error(lambda: s3.copy_object(Bucket=B, Key="c", CopySource={"Bucket": B, "Key": "gone", "VersionId": marker}),
             "InvalidRequest", 400)
uid = s3.create_multipart_upload(Bucket=B, Key="pc")["UploadId"]
expect_error(lambda: s3.upload_part_copy(Bucket=B, Key="pc", UploadId=uid, PartNumber=1,
                                         CopySource={"Bucket": B, "Key": "fresh"}, CopySourceRange="bytes=0-4"),
             "InvalidArgument", 400)
s3.upload_part_copy(Bucket=B, Key="pc", UploadId=uid, PartNumber=1,
                    CopySource={"Bucket": B, "Key": "fresh"}, CopySourceRange="bytes=0-3")
# ?partNumber=N: part 1 of a one-piece object is all of it (206); parts it lacks are 416.
s3.put_object(Bucket=B, Key="six", Body=b"abcdef")
for call in (s3.get_object, s3.head_object):
    r = call(Bucket=B, Key="six", PartNumber=1)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206, r["ResponseMetadata"]
    assert (r["ContentLength"], r["ContentRange"]) == (6, "bytes 0-5/6"), r
    # PartsCount is for objects uploaded in parts: S3 leaves it out for a plain PUT.
    assert "PartsCount" not in r, r
    expect_error(lambda: call(Bucket=B, Key="six", PartNumber=2), "InvalidPartNumber" if call == s3.get_object else "416", 416)
    expect_error(lambda: call(Bucket=B, Key="six", PartNumber=0), "InvalidArgument" if call == s3.get_object else "400", 400)
    expect_error(lambda: call(Bucket=B, Key="six", PartNumber=1, Range="bytes=0-1"),
                 "InvalidRequest" if call == s3.get_object else "400", 400)
assert s3.get_object(Bucket=B, Key="six", PartNumber=1)["Body"].read() == b"abcdef"
uid = s3.create_multipart_upload(Bucket=B, Key="two")["UploadId"]
done = []
for n, data in ((1, b"a" * (5 * 1024 * 1024)), (2, b"b" * 10)):
    p = s3.upload_part(Bucket=B, Key="two", UploadId=uid, PartNumber=n, Body=data)
    done.append({"PartNumber": n, "ETag": p["ETag"]})
s3.complete_multipart_upload(Bucket=B, Key="two", UploadId=uid, MultipartUpload={"Parts": done})
expect_error(lambda: s3.get_object(Bucket=B, Key="two", PartNumber=3), "InvalidPartNumber", 416)
for n, (first, last, byte) in ((1, (0, 5 * 1024 * 1024 - 1, b"a")), (2, (5 * 1024 * 1024, 5 * 1024 * 1024 + 9, b"b"))):
    size = 5 * 1024 * 1024 + 10
    g = s3.get_object(Bucket=B, Key="two", PartNumber=n)
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206, g["ResponseMetadata"]
    assert (g["ContentRange"], g["PartsCount"]) == (f"bytes {first}-{last}/{size}", 2), g
    assert g["Body"].read() == byte * (last - first + 1)
    h = s3.head_object(Bucket=B, Key="two", PartNumber=n)
    assert (h["ContentLength"], h["ContentRange"], h["PartsCount"]) == (last - first + 1, f"bytes {first}-{last}/{size}", 2), h
assert "PartsCount" not in s3.head_object(Bucket=B, Key="two"), "parts count without partNumber"
# DeleteObject and DeleteObjects: a delete whose condition fails removes nothing (412 / a
# PreconditionFailed entry); one whose condition holds goes. `If-Match` on a key that is not
# there (or whose current version is a delete marker) is NoSuchKey and adds no marker: S3's
# "delete only if it exists"; the size and time conditions alone let it go on.
d = s3.put_object(Bucket=B, Key="del", Body=b"12345")
head = s3.head_object(Bucket=B, Key="del")
wrong = '"00000000000000000000000000000000"'
expect_error(lambda: s3.delete_object(Bucket=B, Key="del", IfMatch=wrong), "PreconditionFailed", 412)
expect_error(lambda: s3.delete_object(Bucket=B, Key="del", IfMatchSize=4), "PreconditionFailed", 412)
import datetime
expect_error(lambda: s3.delete_object(Bucket=B, Key="del", IfMatchLastModifiedTime=head["LastModified"]
                                      - datetime.timedelta(seconds=5)), "PreconditionFailed", 412)
assert s3.get_object(Bucket=B, Key="del")["Body"].read() == b"12345"
expect_error(lambda: s3.delete_object(Bucket=B, Key="absent", IfMatch=wrong), "NoSuchKey", 404)
expect_error(lambda: s3.delete_object(Bucket=B, Key="absent", IfMatch="*"), "NoSuchKey", 404)
s3.delete_object(Bucket=B, Key="absent", IfMatchSize=3)
s3.delete_object(Bucket=B, Key="del", IfMatch=d["ETag"], IfMatchSize=5,
                 IfMatchLastModifiedTime=head["LastModified"])
expect_error(lambda: s3.head_object(Bucket=B, Key="del"), "404", 404)
kept = s3.put_object(Bucket=B, Key="kept", Body=b"k")
gone = s3.put_object(Bucket=B, Key="gone", Body=b"g")
r = s3.delete_objects(Bucket=B, Delete={"Objects": [
    {"Key": "kept", "ETag": wrong}, {"Key": "gone", "ETag": gone["ETag"]}, {"Key": "sized", "Size": 3}]})
assert [(e["Key"], e["Code"]) for e in r.get("Errors", [])] == [("kept", "PreconditionFailed")], r
assert sorted(d["Key"] for d in r["Deleted"]) == ["gone", "sized"], r
assert s3.get_object(Bucket=B, Key="kept")["Body"].read() == b"k"
expect_error(lambda: s3.head_object(Bucket=B, Key="gone"), "404", 404)
r = s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": "ghost", "ETag": wrong}]})
assert [(e["Key"], e["Code"]) for e in r.get("Errors", [])] == [("ghost", "NoSuchKey")], r
# Versioned: a conditional delete of a key whose current version is a delete marker adds
# no second marker.
V = B + "-ver"
s3.create_bucket(Bucket=V)
s3.put_bucket_versioning(Bucket=V, VersioningConfiguration={"Status": "Enabled"})
put = s3.put_object(Bucket=V, Key="cw", Body=b"1")
s3.delete_object(Bucket=V, Key="cw")
for cond in (put["ETag"], "*"):
    expect_error(lambda: s3.delete_object(Bucket=V, Key="cw", IfMatch=cond), "NoSuchKey", 404)
    expect_error(lambda: s3.delete_object(Bucket=V, Key="never", IfMatch=cond), "NoSuchKey", 404)
listed = s3.list_object_versions(Bucket=V)
assert len(listed.get("DeleteMarkers", [])) == 1 and len(listed["Versions"]) == 1, listed

print("conditions: ok")
