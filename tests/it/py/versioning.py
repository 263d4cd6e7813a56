"""Versioning and checksums with boto3 at default settings (flexible checksums on: a CRC32 on
every PUT). One section per run, named by the first argument:

- versions: version ids, IsLatest, delete markers, restore by copy, delete by version id,
  deleting a delete marker, suspension and the null version
- paging: ListObjectVersions with MaxKeys=2 via the paginator and KeyMarker/VersionIdMarker
- checksums: SHA256, CRC32C, CRC64NVME, CRC32 sent and returned; a wrong Content-MD5 or
  checksum is BadDigest; the aws-chunked trailer path

Prints OK; exits non-zero on the first failed assertion."""
import base64
import contextlib
import hashlib
import sys
import zlib

import botocore.httpchecksum
from common import client, expect_error

s3 = client()


def body(bucket, key, **kw):
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


def versions(bucket, **kw):
    """(versions, delete markers) of one unpaged listing."""
    r = s3.list_object_versions(Bucket=bucket, **kw)
    assert not r["IsTruncated"], r
    return r.get("Versions", []), r.get("DeleteMarkers", [])


def header(resp, name):
    return resp["ResponseMetadata"]["HTTPHeaders"].get(name)


def md5_etag(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


def section_versions():
    B = "ver"
    s3.create_bucket(Bucket=B)
    assert "Status" not in s3.get_bucket_versioning(Bucket=B), "never enabled: no Status"
    # A pre-versioning object becomes the "null" version.
    r = s3.put_object(Bucket=B, Key="k", Body=b"v0-null")
    assert r.get("VersionId") in (None, "null"), r
    s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=B)["Status"] == "Enabled"

    # Three overwrites: three new version ids, exactly one latest, each readable by id.
    bodies = [b"v1 first", b"v2 second!", b"v3 third..."]
    ids = [s3.put_object(Bucket=B, Key="k", Body=b)["VersionId"] for b in bodies]
    assert len(set(ids)) == 3 and "null" not in ids and all(ids), ids
    vs, dms = versions(B, Prefix="k")
    assert dms == [], dms
    assert [v["VersionId"] for v in vs] == ids[::-1] + ["null"], ("newest first", vs)
    latest = [v for v in vs if v["IsLatest"]]
    assert len(latest) == 1 and latest[0]["VersionId"] == ids[2], vs
    for v, b in zip(vs, bodies[::-1] + [b"v0-null"]):
        assert v["Key"] == "k" and v["Size"] == len(b) and v["ETag"] == md5_etag(b), (v, b)
    for vid, b in zip(ids, bodies):
        g = s3.get_object(Bucket=B, Key="k", VersionId=vid)
        assert g["Body"].read() == b and g["VersionId"] == vid, (vid, g)
        assert s3.head_object(Bucket=B, Key="k", VersionId=vid)["ContentLength"] == len(b)
    assert body(B, "k", VersionId="null") == b"v0-null"
    g = s3.get_object(Bucket=B, Key="k")
    assert g["Body"].read() == bodies[2] and g["VersionId"] == ids[2], g

    # DELETE without a version id: a delete marker becomes the latest version.
    d = s3.delete_object(Bucket=B, Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] not in ids + ["null"], d
    marker = d["VersionId"]
    e = expect_error(lambda: s3.get_object(Bucket=B, Key="k"), "NoSuchKey", 404)
    assert header(e.response, "x-amz-delete-marker") == "true", e.response
    e = expect_error(lambda: s3.head_object(Bucket=B, Key="k"), "404", 404)
    assert header(e.response, "x-amz-delete-marker") == "true", e.response
    assert header(e.response, "x-amz-version-id") == marker, e.response
    vs, dms = versions(B, Prefix="k")
    assert len(vs) == 4 and not any(v["IsLatest"] for v in vs), vs
    assert [(m["Key"], m["VersionId"], m["IsLatest"]) for m in dms] == [("k", marker, True)], dms
    # A delete marker has no body: asking for it by id is 405 MethodNotAllowed.
    e = expect_error(lambda: s3.get_object(Bucket=B, Key="k", VersionId=marker),
                     "MethodNotAllowed", 405)
    assert header(e.response, "x-amz-delete-marker") == "true", e.response
    # As from S3: when the marker was made, and the one method it allows.
    assert header(e.response, "allow") == "DELETE", e.response
    assert header(e.response, "last-modified").endswith(" GMT"), e.response
    # Old versions are still there by id.
    assert body(B, "k", VersionId=ids[1]) == bodies[1]
    assert "Contents" not in s3.list_objects_v2(Bucket=B), "a deleted key is not listed"

    # Restore by copying an old version onto the key: a new version with the old bytes.
    c = s3.copy_object(Bucket=B, Key="k", CopySource={"Bucket": B, "Key": "k", "VersionId": ids[0]})
    assert c["CopySourceVersionId"] == ids[0], c
    restored = c["VersionId"]
    assert restored not in ids + ["null", marker], c
    assert c["CopyObjectResult"]["ETag"] == md5_etag(bodies[0]), c
    g = s3.get_object(Bucket=B, Key="k")
    assert g["Body"].read() == bodies[0] and g["VersionId"] == restored, g
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=B)["Contents"]] == ["k"]
    vs, dms = versions(B, Prefix="k")
    assert [v["VersionId"] for v in vs] == [restored] + ids[::-1] + ["null"], vs
    assert [m["IsLatest"] for m in dms] == [False], dms

    # Delete one version by id: only that version goes; deleting it again is a no-op.
    d = s3.delete_object(Bucket=B, Key="k", VersionId=ids[1])
    assert d["VersionId"] == ids[1] and not d.get("DeleteMarker"), d
    expect_error(lambda: s3.get_object(Bucket=B, Key="k", VersionId=ids[1]), "NoSuchVersion", 404)
    s3.delete_object(Bucket=B, Key="k", VersionId=ids[1])
    vs, _ = versions(B, Prefix="k")
    assert [v["VersionId"] for v in vs] == [restored, ids[2], ids[0], "null"], vs
    assert body(B, "k") == bodies[0], "the latest version is untouched"

    # A new delete marker, then delete that marker: the previous version is back.
    marker2 = s3.delete_object(Bucket=B, Key="k")["VersionId"]
    expect_error(lambda: s3.get_object(Bucket=B, Key="k"), "NoSuchKey", 404)
    d = s3.delete_object(Bucket=B, Key="k", VersionId=marker2)
    assert d["DeleteMarker"] is True and d["VersionId"] == marker2, d
    g = s3.get_object(Bucket=B, Key="k")
    assert g["Body"].read() == bodies[0] and g["VersionId"] == restored, "previous version back"
    vs, dms = versions(B, Prefix="k")
    assert [m["VersionId"] for m in dms] == [marker], dms
    assert [v["VersionId"] for v in vs if v["IsLatest"]] == [restored], vs
    # Deleting the old (non-latest) marker changes nothing visible.
    s3.delete_object(Bucket=B, Key="k", VersionId=marker)
    vs, dms = versions(B, Prefix="k")
    assert dms == [] and len(vs) == 4, (vs, dms)
    assert body(B, "k") == bodies[0]

    # Suspend: PUT writes the null version, replacing the previous null version.
    s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=B)["Status"] == "Suspended"
    r = s3.put_object(Bucket=B, Key="k", Body=b"s1 suspended")
    assert r.get("VersionId") in (None, "null"), r
    g = s3.get_object(Bucket=B, Key="k")
    assert g["Body"].read() == b"s1 suspended", g
    assert g.get("VersionId") in (None, "null"), g
    vs, _ = versions(B, Prefix="k")
    nulls = [v for v in vs if v["VersionId"] == "null"]
    assert len(nulls) == 1 and nulls[0]["IsLatest"], vs
    assert nulls[0]["Size"] == len(b"s1 suspended") and nulls[0]["ETag"] == md5_etag(b"s1 suspended")
    assert body(B, "k", VersionId="null") == b"s1 suspended", "old null version replaced"
    s3.put_object(Bucket=B, Key="k", Body=b"s2")
    vs, _ = versions(B, Prefix="k")
    assert [v["VersionId"] for v in vs] == ["null", restored, ids[2], ids[0]], vs
    assert [v["IsLatest"] for v in vs] == [True, False, False, False], vs
    assert vs[0]["Size"] == 2
    assert body(B, "k") == b"s2" and body(B, "k", VersionId="null") == b"s2"
    # Versions written while enabled survive suspension.
    assert body(B, "k", VersionId=ids[2]) == bodies[2]
    # A suspended DELETE writes a null delete marker in place of the null version.
    d = s3.delete_object(Bucket=B, Key="k")
    assert d["DeleteMarker"] is True and d.get("VersionId") in (None, "null"), d
    vs, dms = versions(B, Prefix="k")
    assert [v["VersionId"] for v in vs] == [restored, ids[2], ids[0]], vs
    assert [(m["VersionId"], m["IsLatest"]) for m in dms] == [("null", True)], dms
    expect_error(lambda: s3.get_object(Bucket=B, Key="k"), "NoSuchKey", 404)

    # Enabled again: new puts get real ids; the null marker stays in history.
    s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=B)["Status"] == "Enabled"
    vid = s3.put_object(Bucket=B, Key="k", Body=b"again")["VersionId"]
    assert vid not in (None, "null"), vid
    vs, dms = versions(B, Prefix="k")
    assert [v["VersionId"] for v in vs] == [vid, restored, ids[2], ids[0]], vs
    assert [(m["VersionId"], m["IsLatest"]) for m in dms] == [("null", False)], dms


def section_paging():
    B = "pages"
    s3.create_bucket(Bucket=B)
    # Per key, newest first: what ListObjectVersions must return.
    expect = {}
    keys = [f"p/{j}" for j in range(7)]
    # Null versions on some keys (pages will end on them, so "null" becomes a marker).
    for j, k in enumerate(keys):
        if j % 2 == 0:
            s3.put_object(Bucket=B, Key=k, Body=b"null")
            expect[k] = [("v", "null")]
    s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
    for j, k in enumerate(keys):
        for i in range(1 + j % 4):
            vid = s3.put_object(Bucket=B, Key=k, Body=b"y" * i)["VersionId"]
            expect.setdefault(k, []).insert(0, ("v", vid))
        if j % 3 == 0:
            vid = s3.delete_object(Bucket=B, Key=k)["VersionId"]
            expect[k].insert(0, ("m", vid))
    other = ("other", s3.put_object(Bucket=B, Key="other", Body=b"outside the prefix")["VersionId"])
    total = sum(len(v) for v in expect.values())
    assert total >= 20, total
    want = {(k, vid) for k, vs in expect.items() for _, vid in vs}

    # The whole listing in one page, as the reference.
    vs, dms = versions(B, Prefix="p/")
    got = {(v["Key"], v["VersionId"]) for v in vs} | {(m["Key"], m["VersionId"]) for m in dms}
    assert got == want, (got ^ want)
    for k, entries in expect.items():
        assert [v["VersionId"] for v in vs if v["Key"] == k] == \
            [vid for t, vid in entries if t == "v"], (k, vs)
        assert [m["VersionId"] for m in dms if m["Key"] == k] == \
            [vid for t, vid in entries if t == "m"], (k, dms)
        latest = [e["VersionId"] for e in vs + dms if e["Key"] == k and e["IsLatest"]]
        assert latest == [entries[0][1]], (k, latest)

    # In the document, versions and delete markers are one list in key order, newest first
    # within a key, as S3 writes it (minio-go, so `mc ls --versions`, keeps document order).
    raw = []
    hook = lambda http_response, **kw: raw.append(http_response.content)
    s3.meta.events.register("after-call.s3.ListObjectVersions", hook)
    s3.list_object_versions(Bucket=B, Prefix="p/")
    s3.meta.events.unregister("after-call.s3.ListObjectVersions", hook)
    import xml.etree.ElementTree as ET
    doc = []
    for el in ET.fromstring(raw[0]):
        tag = el.tag.rsplit("}", 1)[-1]
        if tag in ("Version", "DeleteMarker"):
            ns = el.tag[:-len(tag)]
            doc.append(("m" if tag == "DeleteMarker" else "v", el.find(ns + "Key").text,
                        el.find(ns + "VersionId").text))
    assert doc == [(t, k, vid) for k in sorted(expect) for t, vid in expect[k]], doc

    # The paginator, two entries a page.
    seen = []
    pages = 0
    for page in s3.get_paginator("list_object_versions").paginate(
            Bucket=B, Prefix="p/", PaginationConfig={"PageSize": 2}):
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        assert len(entries) <= 2, page
        seen += [(e["Key"], e["VersionId"]) for e in entries]
        pages += 1
    assert len(seen) == len(set(seen)) == total, (len(seen), len(set(seen)), total)
    assert set(seen) == want
    assert pages >= total // 2, pages

    # The same by hand with KeyMarker / VersionIdMarker, over the whole bucket.
    seen = []
    kw = {}
    last_key = ""
    while True:
        r = s3.list_object_versions(Bucket=B, MaxKeys=2, **kw)
        assert r["MaxKeys"] == 2, r
        entries = r.get("Versions", []) + r.get("DeleteMarkers", [])
        assert 1 <= len(entries) <= 2, r
        for e in sorted(entries, key=lambda e: e["Key"]):
            assert e["Key"] >= last_key, ("keys in order", e, last_key)
            last_key = e["Key"]
        seen += [(e["Key"], e["VersionId"]) for e in entries]
        if not r["IsTruncated"]:
            break
        assert len(entries) == 2, ("a truncated page is full", r)
        kw = {"KeyMarker": r["NextKeyMarker"]}
        if r.get("NextVersionIdMarker"):
            kw["VersionIdMarker"] = r["NextVersionIdMarker"]
        assert len(seen) <= total + 1, "paging does not terminate"
    assert len(seen) == len(set(seen)) == total + 1, (len(seen), len(set(seen)), total + 1)
    assert set(seen) == want | {other}, set(seen) ^ (want | {other})

    # Delimiter: the keys under p/ roll up into one common prefix.
    r = s3.list_object_versions(Bucket=B, Delimiter="/")
    assert r.get("CommonPrefixes") == [{"Prefix": "p/"}], r
    assert [v["Key"] for v in r.get("Versions", [])] == ["other"], r
    assert s3.get_bucket_versioning(Bucket=B)["Status"] == "Enabled"


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def crc64nvme(data, crc=0):
    mask = 0xFFFFFFFFFFFFFFFF
    crc ^= mask
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x9A6C9329AC4BC9B5 & -(crc & 1))
    return (crc ^ mask) & mask


def b64(raw):
    return base64.b64encode(raw).decode()


@contextlib.contextmanager
def trailers_over_http():
    """botocore sends checksums as aws-chunked trailers only over https; over plain http it
    signs the payload and sends the checksum as a header. Make it believe the endpoint is https
    so the trailer path (STREAMING-UNSIGNED-PAYLOAD-TRAILER) is exercised."""
    real = botocore.httpchecksum.urlparse

    def https(url):
        return real(url.replace("http://", "https://", 1))

    botocore.httpchecksum.urlparse = https
    try:
        yield
    finally:
        botocore.httpchecksum.urlparse = real


def section_checksums():
    B = "sums"
    s3.create_bucket(Bucket=B)
    assert crc32c(b"123456789") == 0xE3069283
    assert crc64nvme(b"123456789") == 0xAE8B14860A799888
    data = b"checksummed body \xe9\x00\xff" * 3001
    sha256 = b64(hashlib.sha256(data).digest())
    crc32 = b64(zlib.crc32(data).to_bytes(4, "big"))
    c32c = b64(crc32c(data).to_bytes(4, "big"))
    c64 = b64(crc64nvme(data).to_bytes(8, "big"))

    # Default settings: boto3 adds a CRC32 on its own.
    r = s3.put_object(Bucket=B, Key="default", Body=data)
    assert r.get("ChecksumCRC32") == crc32, r
    h = s3.head_object(Bucket=B, Key="default", ChecksumMode="ENABLED")
    assert h.get("ChecksumCRC32") == crc32, h

    # SHA256: boto3 computes it; GET with ChecksumMode makes boto3 verify the body too.
    r = s3.put_object(Bucket=B, Key="sha256", Body=data, ChecksumAlgorithm="SHA256")
    assert r.get("ChecksumSHA256") == sha256, r
    h = s3.head_object(Bucket=B, Key="sha256", ChecksumMode="ENABLED")
    assert h.get("ChecksumSHA256") == sha256, h
    g = s3.get_object(Bucket=B, Key="sha256", ChecksumMode="ENABLED")
    assert g.get("ChecksumSHA256") == sha256, g
    assert g["Body"].read() == data
    h = s3.head_object(Bucket=B, Key="sha256")
    assert "ChecksumSHA256" not in h, ("only returned when asked for", h)

    # CRC32C and CRC64NVME: botocore needs awscrt to compute these, so pass the values
    # (computed above) with the algorithm; the server must verify and keep them.
    for key, algo, field, value in [("crc32c", "CRC32C", "ChecksumCRC32C", c32c),
                                    ("crc64", "CRC64NVME", "ChecksumCRC64NVME", c64)]:
        r = s3.put_object(Bucket=B, Key=key, Body=data, ChecksumAlgorithm=algo, **{field: value})
        assert r.get(field) == value, (algo, r)
        h = s3.head_object(Bucket=B, Key=key, ChecksumMode="ENABLED")
        assert h.get(field) == value, (algo, h)
        assert body(B, key) == data

    # Wrong values are refused with BadDigest, and nothing is stored.
    wrong_md5 = b64(hashlib.md5(b"something else").digest())
    expect_error(lambda: s3.put_object(Bucket=B, Key="bad-md5", Body=data, ContentMD5=wrong_md5),
                 "BadDigest", 400)
    wrong = {
        "ChecksumSHA256": b64(hashlib.sha256(b"x").digest()),
        "ChecksumCRC32": b64(zlib.crc32(b"x").to_bytes(4, "big")),
        "ChecksumCRC32C": b64(crc32c(b"x").to_bytes(4, "big")),
        "ChecksumCRC64NVME": b64(crc64nvme(b"x").to_bytes(8, "big")),
    }
    for field, value in wrong.items():
        expect_error(lambda: s3.put_object(Bucket=B, Key="bad-sum", Body=data, **{field: value}),
                     "BadDigest", 400)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=B).get("Contents", [])]
    assert "bad-md5" not in listed and "bad-sum" not in listed, listed
    # A right Content-MD5 is accepted.
    s3.put_object(Bucket=B, Key="good-md5", Body=data, ContentMD5=b64(hashlib.md5(data).digest()))
    assert body(B, "good-md5") == data

    # The aws-chunked trailer path, into a versioned bucket.
    s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
    with trailers_over_http():
        for algo, field, value in [(None, "ChecksumCRC32", crc32),
                                   ("SHA256", "ChecksumSHA256", sha256)]:
            kw = {"ChecksumAlgorithm": algo} if algo else {}
            r = s3.put_object(Bucket=B, Key="trailer", Body=data, **kw)
            assert r.get(field) == value, (algo, r)
            assert r.get("VersionId") not in (None, "null"), r
            h = s3.head_object(Bucket=B, Key="trailer", VersionId=r["VersionId"],
                               ChecksumMode="ENABLED")
            assert h.get(field) == value and h["ContentLength"] == len(data), (algo, h)
            assert body(B, "trailer", VersionId=r["VersionId"]) == data
        # A multipart upload with per-part CRC32 trailers.
        part = b"p" * (5 * 1024 * 1024)
        up = s3.create_multipart_upload(Bucket=B, Key="mp", ChecksumAlgorithm="CRC32")
        parts = []
        for n, chunk in enumerate([part, data], 1):
            r = s3.upload_part(Bucket=B, Key="mp", UploadId=up["UploadId"], PartNumber=n,
                               Body=chunk, ChecksumAlgorithm="CRC32")
            assert r.get("ChecksumCRC32") == b64(zlib.crc32(chunk).to_bytes(4, "big")), r
            parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
        s3.complete_multipart_upload(Bucket=B, Key="mp", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": parts})
    assert body(B, "mp") == part + data
    assert len(versions(B, Prefix="trailer")[0]) == 2

    # A version brought back (its delete marker removed) keeps what it had: its multipart
    # ETag, checksum and Last-Modified, on HEAD and on GET alike, not re-indexed as a file
    # changed behind Ferry's back.
    before = s3.head_object(Bucket=B, Key="mp", ChecksumMode="ENABLED")
    marker = s3.delete_object(Bucket=B, Key="mp")["VersionId"]
    s3.delete_object(Bucket=B, Key="mp", VersionId=marker)
    got = s3.get_object(Bucket=B, Key="mp", ChecksumMode="ENABLED")
    assert got["Body"].read() == part + data
    after = s3.head_object(Bucket=B, Key="mp", ChecksumMode="ENABLED")
    for h in (got, after):
        for field in ("ETag", "LastModified", "ChecksumCRC32", "VersionId"):
            assert h.get(field) == before.get(field), (field, before.get(field), h.get(field))
    assert before["ETag"].endswith('-2"'), before["ETag"]


SECTIONS = {"versions": section_versions, "paging": section_paging, "checksums": section_checksums}
if len(sys.argv) != 2 or sys.argv[1] not in SECTIONS:
    sys.exit(f"usage: versioning.py {{{'|'.join(SECTIONS)}}}")
SECTIONS[sys.argv[1]]()
print("OK")
