"""boto3 against a Ferry endpoint: the checksum types of multipart uploads as S3 defines them.
An upload is COMPOSITE (a checksum of the part checksums, `value-N`) or FULL_OBJECT (the
CRC of every byte, whatever the part sizes); CRC64NVME is always FULL_OBJECT, SHA-1 and
SHA-256 always COMPOSITE. A completion may name the whole object's checksum, and one that
does not match is refused with the upload left open. Exits non-zero on the first failure."""
import base64
import struct
import zlib

from common import client, expect_error
from botocore.exceptions import ClientError

s3 = client()
B = "checksum-types"
s3.create_bucket(Bucket=B)
parts = [bytes([i % 251 for i in range(5 * 1024 * 1024)]), b"tail of the object" * 300]
whole = b"".join(parts)


def crc32(data):
    return base64.b64encode(struct.pack(">I", zlib.crc32(data))).decode()


# What CreateMultipartUpload answers, and the combinations S3 refuses.
r = s3.create_multipart_upload(Bucket=B, Key="sha", ChecksumAlgorithm="SHA256")
assert r.get("ChecksumType") == "COMPOSITE", r
s3.abort_multipart_upload(Bucket=B, Key="sha", UploadId=r["UploadId"])
r = s3.create_multipart_upload(Bucket=B, Key="nvme", ChecksumAlgorithm="CRC64NVME")
assert r.get("ChecksumType") == "FULL_OBJECT", r
s3.abort_multipart_upload(Bucket=B, Key="nvme", UploadId=r["UploadId"])
expect_error(lambda: s3.create_multipart_upload(
    Bucket=B, Key="bad", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT"), "InvalidRequest", 400)
expect_error(lambda: s3.create_multipart_upload(
    Bucket=B, Key="bad", ChecksumAlgorithm="CRC64NVME", ChecksumType="COMPOSITE"), "InvalidRequest", 400)
assert not s3.list_multipart_uploads(Bucket=B).get("Uploads")


def upload(key, kind):
    r = s3.create_multipart_upload(Bucket=B, Key=key, ChecksumAlgorithm="CRC32", ChecksumType=kind)
    assert r.get("ChecksumType") == kind, r
    uid = r["UploadId"]
    done = []
    for n, data in enumerate(parts, 1):
        p = s3.upload_part(Bucket=B, Key=key, UploadId=uid, PartNumber=n, Body=data,
                           ChecksumAlgorithm="CRC32")
        assert p["ChecksumCRC32"] == crc32(data), p
        done.append({"PartNumber": n, "ETag": p["ETag"], "ChecksumCRC32": p["ChecksumCRC32"]})
    listed = s3.list_parts(Bucket=B, Key=key, UploadId=uid)
    assert (listed.get("ChecksumAlgorithm"), listed.get("ChecksumType")) == ("CRC32", kind), listed
    return uid, done


# FULL_OBJECT: a wrong part or whole-object value is refused and nothing is committed.
uid, done = upload("full", "FULL_OBJECT")
bad = [dict(done[0], ChecksumCRC32=crc32(b"another part"))] + done[1:]
expect_error(lambda: s3.complete_multipart_upload(
    Bucket=B, Key="full", UploadId=uid, MultipartUpload={"Parts": bad}), "InvalidPart", 400)
expect_error(lambda: s3.complete_multipart_upload(
    Bucket=B, Key="full", UploadId=uid, MultipartUpload={"Parts": done},
    ChecksumCRC32=crc32(b"something else"), ChecksumType="FULL_OBJECT"), "BadDigest", 400)
expect_error(lambda: s3.head_object(Bucket=B, Key="full"), "404", 404)
r = s3.complete_multipart_upload(Bucket=B, Key="full", UploadId=uid, MultipartUpload={"Parts": done},
                                 ChecksumCRC32=crc32(whole), ChecksumType="FULL_OBJECT")
assert (r.get("ChecksumCRC32"), r.get("ChecksumType")) == (crc32(whole), "FULL_OBJECT"), r
h = s3.head_object(Bucket=B, Key="full", ChecksumMode="ENABLED")
assert (h.get("ChecksumCRC32"), h.get("ChecksumType")) == (crc32(whole), "FULL_OBJECT"), h
g = s3.get_object(Bucket=B, Key="full", ChecksumMode="ENABLED")
assert g["Body"].read() == whole

# COMPOSITE: the checksum of the part checksums, with the part count.
uid, done = upload("composite", "COMPOSITE")
# S3 wants each part's checksum named (of the upload's algorithm), and says which is missing.
for parts_named in ([{k: v for k, v in p.items() if k != "ChecksumCRC32"} for p in done],
                    [done[0], {"PartNumber": 2, "ETag": done[1]["ETag"], "ChecksumSHA256": "AAAA"}]):
    try:
        s3.complete_multipart_upload(Bucket=B, Key="composite", UploadId=uid,
                                     MultipartUpload={"Parts": parts_named})
        raise AssertionError("completed without the part checksums")
    except ClientError as e:
        err = e.response["Error"]
        assert err["Code"] == "InvalidRequest", err
        assert "crc32 checksum" in err["Message"] and "missing for part" in err["Message"], err
missing = [{k: v for k, v in p.items() if k != "ChecksumCRC32"} for p in done]
try:
    s3.complete_multipart_upload(Bucket=B, Key="composite", UploadId=uid,
                                 MultipartUpload={"Parts": [done[0], missing[1]]})
except ClientError as e:
    assert "missing for part 2 in the request" in e.response["Error"]["Message"], e.response
else:
    raise AssertionError("completed without part 2's checksum")
# A part never uploaded is InvalidPart, checksum named or not.
expect_error(lambda: s3.complete_multipart_upload(
    Bucket=B, Key="composite", UploadId=uid,
    MultipartUpload={"Parts": [done[0], {"PartNumber": 7, "ETag": done[1]["ETag"]}]}), "InvalidPart", 400)
# ListParts names who began the upload, and the first page's marker.
listed = s3.list_parts(Bucket=B, Key="composite", UploadId=uid)
assert listed.get("Initiator", {}).get("ID") and listed.get("Owner", {}).get("ID"), listed
assert listed.get("PartNumberMarker") == 0, listed
r = s3.complete_multipart_upload(Bucket=B, Key="composite", UploadId=uid,
                                 MultipartUpload={"Parts": done})
raw = b"".join(base64.b64decode(p["ChecksumCRC32"]) for p in done)
want = f"{crc32(raw)}-{len(parts)}"
assert (r.get("ChecksumCRC32"), r.get("ChecksumType")) == (want, "COMPOSITE"), r
h = s3.head_object(Bucket=B, Key="composite", ChecksumMode="ENABLED")
assert (h.get("ChecksumCRC32"), h.get("ChecksumType")) == (want, "COMPOSITE"), h
print("checksum types: ok")

# GetObjectAttributes: the fields asked for, the checksum with its type, the part count.
a = s3.get_object_attributes(Bucket=B, Key="full", ObjectAttributes=["ETag", "Checksum", "ObjectParts", "ObjectSize", "StorageClass"])
h = s3.head_object(Bucket=B, Key="full")
# S3 sends this ETag unquoted, unlike every other.
assert a["ETag"] == h["ETag"].strip('"'), (a["ETag"], h["ETag"])
assert a["ObjectSize"] == len(whole) and a["StorageClass"] == "STANDARD", a
assert a["Checksum"] == {"ChecksumCRC32": crc32(whole), "ChecksumType": "FULL_OBJECT"}, a["Checksum"]
assert a["ObjectParts"]["TotalPartsCount"] == 2, a["ObjectParts"]
a = s3.get_object_attributes(Bucket=B, Key="composite", ObjectAttributes=["ObjectSize"])
assert a["ObjectSize"] == len(whole) and "ETag" not in a and "Checksum" not in a, a
s3.put_object(Bucket=B, Key="single", Body=b"one piece")
a = s3.get_object_attributes(Bucket=B, Key="single", ObjectAttributes=["ETag", "ObjectParts"])
assert "ObjectParts" not in a and a["ETag"] == s3.head_object(Bucket=B, Key="single")["ETag"].strip('"'), a
expect_error(lambda: s3.get_object_attributes(Bucket=B, Key="missing", ObjectAttributes=["ETag"]), "NoSuchKey", 404)
print("object attributes: ok")

# UploadPartCopy answers the part's checksum in an upload that keeps them, as UploadPart does,
# and a client completes the upload with it.
s3.put_object(Bucket=B, Key="copy-source", Body=whole)
uid = s3.create_multipart_upload(Bucket=B, Key="copied", ChecksumAlgorithm="CRC32")["UploadId"]
r = s3.upload_part_copy(Bucket=B, Key="copied", UploadId=uid, PartNumber=1,
                        CopySource={"Bucket": B, "Key": "copy-source"},
                        CopySourceRange=f"bytes=0-{len(parts[0]) - 1}")
assert r["CopyPartResult"].get("ChecksumCRC32") == crc32(parts[0]), r["CopyPartResult"]
p2 = s3.upload_part(Bucket=B, Key="copied", UploadId=uid, PartNumber=2, Body=parts[1], ChecksumAlgorithm="CRC32")
s3.complete_multipart_upload(Bucket=B, Key="copied", UploadId=uid, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"], "ChecksumCRC32": r["CopyPartResult"]["ChecksumCRC32"]},
    {"PartNumber": 2, "ETag": p2["ETag"], "ChecksumCRC32": p2["ChecksumCRC32"]}]})
assert s3.get_object(Bucket=B, Key="copied")["Body"].read() == whole
