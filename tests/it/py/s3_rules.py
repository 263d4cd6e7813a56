"""boto3 against a Ferry endpoint: rules S3 enforces that a client meets only at the edges.
Multipart upload listings with a delimiter and markers; the 2 KiB user-metadata limit; the
default Content-Type; which characters tags may have; a part checksummed with another
algorithm than its upload's; unknown copy directives; Range headers S3 ignores; a retried completion. Exits non-zero on the first failed assertion."""
import requests

from common import client, code_of, expect_error, signed

s3 = client()
B = "s3-rules"
s3.create_bucket(Bucket=B)

# ListMultipartUploads: delimiter, key-marker without upload-id-marker, paging.
ids = {}
for key in ["a/1", "a/2", "a/b/3", "a/b/4", "a/c/5", "z"]:
    ids[key] = s3.create_multipart_upload(Bucket=B, Key=key)["UploadId"]
r = s3.list_multipart_uploads(Bucket=B, Prefix="a/", Delimiter="/")
assert [u["Key"] for u in r.get("Uploads", [])] == ["a/1", "a/2"], r
assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["a/b/", "a/c/"], r
assert r.get("Delimiter") == "/", r
for empty_id in ({}, {"UploadIdMarker": ""}):
    r = s3.list_multipart_uploads(Bucket=B, KeyMarker="a/2", **empty_id)
    assert [u["Key"] for u in r["Uploads"]] == ["a/b/3", "a/b/4", "a/c/5", "z"], r
seen, kwargs = [], {"Prefix": "a/", "Delimiter": "/", "MaxUploads": 1}
while True:
    r = s3.list_multipart_uploads(Bucket=B, **kwargs)
    seen += [u["Key"] for u in r.get("Uploads", [])] + [p["Prefix"] for p in r.get("CommonPrefixes", [])]
    if not r["IsTruncated"]:
        break
    kwargs["KeyMarker"] = r["NextKeyMarker"]
    if r.get("NextUploadIdMarker"):
        kwargs["UploadIdMarker"] = r["NextUploadIdMarker"]
    else:
        kwargs.pop("UploadIdMarker", None)
assert seen == ["a/1", "a/2", "a/b/", "a/c/"], seen
expect_error(lambda: s3.list_multipart_uploads(Bucket=B, MaxUploads=-1), "InvalidArgument", 400)
expect_error(lambda: s3.list_parts(Bucket=B, Key="z", UploadId=ids["z"], MaxParts=-1), "InvalidArgument", 400)
for key, uid in ids.items():
    s3.abort_multipart_upload(Bucket=B, Key=key, UploadId=uid)

# User metadata: at most 2 KiB of names and values together.
s3.put_object(Bucket=B, Key="meta-ok", Body=b"", Metadata={"k": "v" * 2000})
expect_error(lambda: s3.put_object(Bucket=B, Key="meta", Body=b"", Metadata={"k": "v" * 3000}),
             "MetadataTooLarge", 400)
expect_error(lambda: s3.create_multipart_upload(Bucket=B, Key="meta", Metadata={"k": "v" * 3000}),
             "MetadataTooLarge", 400)
expect_error(lambda: s3.copy_object(Bucket=B, Key="meta", CopySource={"Bucket": B, "Key": "meta-ok"},
                                    MetadataDirective="REPLACE", Metadata={"k": "v" * 3000}),
             "MetadataTooLarge", 400)

# A copy directive other than COPY or REPLACE is refused, not taken for COPY (which would
# drop the new metadata the client sent).
for directive in ({"MetadataDirective": "REPLACED"}, {"TaggingDirective": "replace"}):
    expect_error(lambda: s3.copy_object(Bucket=B, Key="copied", CopySource={"Bucket": B, "Key": "meta-ok"},
                                        ContentType="text/x-new", **directive), "InvalidArgument", 400)
expect_error(lambda: s3.head_object(Bucket=B, Key="copied"), "404", 404)

# A Range S3 does not act on (several ranges, another unit, malformed, inverted) is ignored
# where the signature does not cover it (a presigned URL in a browser or video player): the
# whole object, 200. A well-formed range past the end is still 416.
s3.put_object(Bucket=B, Key="ten", Body=b"0123456789")
url = s3.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "ten"})
head_url = s3.generate_presigned_url("head_object", Params={"Bucket": B, "Key": "ten"})
for rng in ["bytes=0-1,4-5", "items=0-1", "bytes=abc", "bytes=5-2"]:
    for method, where in ((requests.get, url), (requests.head, head_url)):
        r = method(where, headers={"Range": rng})
        assert r.status_code == 200, (rng, method, r.status_code, r.text)
        assert "Content-Range" not in r.headers, (rng, r.headers)
        assert method is requests.head or r.content == b"0123456789", (rng, r.content)
r = requests.get(url, headers={"Range": "bytes=2-3"})
assert (r.status_code, r.content) == (206, b"23"), (r.status_code, r.content)
assert requests.get(url, headers={"Range": "bytes=20-"}).status_code == 416
# Signed (boto3 signs every header it sends; a URL presigned with the range in it): the same,
# once the signature is checked; a wrong signature is still refused.
s3.put_object(Bucket=B, Key="ten", Body=b"0123456789", Metadata={"m": "1"}, ContentType="text/x-ten")
for rng in ["bytes=0-0,2-3", "chars=0-1", "bytes=abc", "bytes=5-2"]:
    r = s3.get_object(Bucket=B, Key="ten", Range=rng)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200, (rng, r["ResponseMetadata"])
    assert r["Body"].read() == b"0123456789" and "ContentRange" not in r, (rng, r)
    assert (r["ContentType"], r["Metadata"]) == ("text/x-ten", {"m": "1"}), r
    h = s3.head_object(Bucket=B, Key="ten", Range=rng)
    assert h["ResponseMetadata"]["HTTPStatusCode"] == 200 and h["ContentLength"] == 10, (rng, h)
status, headers, body = signed("GET", f"/{B}/ten?response-content-type=x%2Fy", headers={"Range": "bytes=1-2,4-5"})
assert (status, body, headers.get("content-type")) == (200, b"0123456789", "x/y"), (status, headers, body)
expect_error(lambda: s3.get_object(Bucket=B, Key="ten", Range="bytes=0-0,2-3", IfMatch='"nope"'),
             "PreconditionFailed", 412)
signed_range = s3.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "ten", "Range": "bytes=0-1,4-5"})
r = requests.get(signed_range, headers={"Range": "bytes=0-1,4-5"})
assert (r.status_code, r.content) == (200, b"0123456789"), (r.status_code, r.content)
r = requests.get(signed_range.replace("Signature=", "Signature=0"), headers={"Range": "bytes=0-1,4-5"})
assert r.status_code == 403 and code_of(r.content) == "SignatureDoesNotMatch", (r.status_code, r.content)
r = requests.get(f"{url.split('?')[0]}", headers={"Range": "bytes=0-1,4-5"})
assert r.status_code == 403 and code_of(r.content) == "AccessDenied", (r.status_code, r.content)

# A completion retried after its answer was lost gets the same answer, as from S3; once the
# object it made is overwritten, or for another key, the upload is gone (NoSuchUpload).
uid = s3.create_multipart_upload(Bucket=B, Key="retried")["UploadId"]
part = s3.upload_part(Bucket=B, Key="retried", UploadId=uid, PartNumber=1, Body=b"p" * 10)
done = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
first = s3.complete_multipart_upload(Bucket=B, Key="retried", UploadId=uid, MultipartUpload=done)
again = s3.complete_multipart_upload(Bucket=B, Key="retried", UploadId=uid, MultipartUpload=done)
assert again["ETag"] == first["ETag"] and again["ETag"].endswith('-1"'), (first, again)
# Naming other parts is not a retry: it must not be told the first completion's object is its.
other = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}, {"PartNumber": 2, "ETag": part["ETag"]}]}
expect_error(lambda: s3.complete_multipart_upload(Bucket=B, Key="retried", UploadId=uid, MultipartUpload=other),
             "NoSuchUpload", 404)
expect_error(lambda: s3.complete_multipart_upload(Bucket=B, Key="other", UploadId=uid, MultipartUpload=done),
             "NoSuchUpload", 404)
s3.put_object(Bucket=B, Key="retried", Body=b"newer")
expect_error(lambda: s3.complete_multipart_upload(Bucket=B, Key="retried", UploadId=uid, MultipartUpload=done),
             "NoSuchUpload", 404)
assert s3.get_object(Bucket=B, Key="retried")["Body"].read() == b"newer"

# An object stored without a Content-Type is served as binary/octet-stream.
s3.put_object(Bucket=B, Key="untyped", Body=b"1")
assert s3.head_object(Bucket=B, Key="untyped")["ContentType"] == "binary/octet-stream"
assert s3.get_object(Bucket=B, Key="untyped")["ContentType"] == "binary/octet-stream"

# Tags: letters, digits, spaces and _ . : / = + - @ only; no aws: prefix; no repeats.
s3.put_object_tagging(Bucket=B, Key="untyped", Tagging={"TagSet": [{"Key": "Größe é", "Value": "a+b=c/d@e:f_g.h-i"}]})
for bad in [{"Key": "a^b", "Value": "1"}, {"Key": "k", "Value": "v*x"}, {"Key": "aws:x", "Value": "1"}]:
    expect_error(lambda: s3.put_object_tagging(Bucket=B, Key="untyped", Tagging={"TagSet": [bad]}),
                 "InvalidTag", 400)
expect_error(lambda: s3.put_bucket_tagging(Bucket=B, Tagging={"TagSet": [{"Key": "k", "Value": "1"},
                                                                        {"Key": "k", "Value": "2"}]}),
             "InvalidTag", 400)
expect_error(lambda: s3.put_object(Bucket=B, Key="t", Body=b"", Tagging="a%5Eb=1"), "InvalidTag", 400)

# A part checksummed with another algorithm than its upload's is refused.
uid = s3.create_multipart_upload(Bucket=B, Key="algo", ChecksumAlgorithm="SHA256")["UploadId"]
expect_error(lambda: s3.upload_part(Bucket=B, Key="algo", UploadId=uid, PartNumber=1, Body=b"x",
                                    ChecksumAlgorithm="CRC32"), "InvalidRequest", 400)
p = s3.upload_part(Bucket=B, Key="algo", UploadId=uid, PartNumber=1, Body=b"x", ChecksumAlgorithm="SHA256")
r = s3.complete_multipart_upload(Bucket=B, Key="algo", UploadId=uid, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": p["ETag"], "ChecksumSHA256": p["ChecksumSHA256"]}]})
assert r.get("ChecksumSHA256", "").endswith("-1"), r
# Storage classes: every one S3 knows is taken, others are refused; a copy onto itself that
# names one is a change (what `aws s3 cp --storage-class` does).
r = s3.put_object(Bucket=B, Key="cold", Body=b"c", StorageClass="STANDARD_IA")
assert r["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id"), r["ResponseMetadata"]
expect_error(lambda: s3.put_object(Bucket=B, Key="cold", Body=b"c", StorageClass="BOGUS"), "InvalidStorageClass", 400)
s3.copy_object(Bucket=B, Key="cold", CopySource={"Bucket": B, "Key": "cold"}, StorageClass="GLACIER_IR")
expect_error(lambda: s3.copy_object(Bucket=B, Key="cold", CopySource={"Bucket": B, "Key": "cold"}),
             "InvalidRequest", 400)
# ListBuckets with a prefix, in pages.
for name in ("lb-b", "lb-a", "lb-c"):
    s3.create_bucket(Bucket=name)
names, kwargs = [], {"Prefix": "lb-", "MaxBuckets": 2}
while True:
    r = s3.list_buckets(**kwargs)
    names += [b["Name"] for b in r["Buckets"]]
    if not r.get("ContinuationToken"):
        break
    kwargs["ContinuationToken"] = r["ContinuationToken"]
assert names == ["lb-a", "lb-b", "lb-c"], names
# A tag needs a Key and a Value (boto3 checks that itself; a raw request shows the server
# does too): MalformedXML, as AWS answers a body that does not match its schema.
s3.put_object(Bucket=B, Key="tagged", Body=b"t")
import base64, hashlib
for tag in ("<Key>k</Key>", "<Value>v</Value>"):
    body = f"<Tagging><TagSet><Tag>{tag}</Tag></TagSet></Tagging>".encode()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    st, _, data = signed("PUT", f"/{B}/tagged?tagging", body, {"Content-MD5": md5})
    assert (st, code_of(data)) == (400, "MalformedXML"), (tag, st, data)
assert s3.get_object_tagging(Bucket=B, Key="tagged")["TagSet"] == []
body = b"<Tagging><TagSet><Tag><Key>k</Key><Value></Value></Tag></TagSet></Tagging>"
md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
st, _, data = signed("PUT", f"/{B}/tagged?tagging", body, {"Content-MD5": md5})
assert st == 200, (st, data)
assert s3.get_object_tagging(Bucket=B, Key="tagged")["TagSet"] == [{"Key": "k", "Value": ""}]
# ListMultipartUploads with encoding-type=url encodes the keys and prefixes it returns (and
# says so), as object listings do; boto3 asks for it and decodes only when told.
odd = "sp ace/\u00e9+x"
uid = s3.create_multipart_upload(Bucket=B, Key=odd)["UploadId"]
st, _, data = signed("GET", f"/{B}?uploads&encoding-type=url&prefix=sp%20ace%2F")
assert st == 200, (st, data)
assert b"<Key>sp%20ace/%C3%A9%2Bx</Key>" in data and b"<EncodingType>url</EncodingType>" in data, data
assert b"<Prefix>sp%20ace/</Prefix>" in data, data
r = s3.list_multipart_uploads(Bucket=B, Prefix="sp ace/")
assert [u["Key"] for u in r["Uploads"]] == [odd], r
s3.abort_multipart_upload(Bucket=B, Key=odd, UploadId=uid)

# ListObjects (v1) names NextMarker only with a delimiter, as S3 does; without one, clients
# page from the last key.
for k in ("v1a", "v1b"):
    s3.put_object(Bucket=B, Key=k, Body=b"1")
page = s3.list_objects(Bucket=B, Prefix="v1", MaxKeys=1)
assert page["IsTruncated"] and "NextMarker" not in page, page
page = s3.list_objects(Bucket=B, Prefix="v1", MaxKeys=1, Delimiter="/")
assert page["IsTruncated"] and page["NextMarker"] == "v1a", page

# CompleteMultipartUpload names the object by an absolute URL, as S3 does.
uid = s3.create_multipart_upload(Bucket=B, Key="loc/a b")["UploadId"]
part = s3.upload_part(Bucket=B, Key="loc/a b", UploadId=uid, PartNumber=1, Body=b"p")
done = s3.complete_multipart_upload(Bucket=B, Key="loc/a b", UploadId=uid,
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
assert done["Location"].startswith("http://") and done["Location"].endswith(f"/{B}/loc/a%20b"), done

# A bucket is made in the endpoint's region: another LocationConstraint is refused as S3
# refuses it, not taken and reported as this region afterwards.
expect_error(lambda: s3.create_bucket(Bucket="elsewhere", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}),
             "IllegalLocationConstraintException", 400)
expect_error(lambda: s3.head_bucket(Bucket="elsewhere"), "404", 404)
# A client set up for another region (which Ferry takes signatures for) names that region as
# the constraint, as `aws s3 mb` does from a profile: taken, as it was before the check.
eu = client(region_name="eu-west-1")
eu.create_bucket(Bucket="from-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
eu.head_bucket(Bucket="from-eu")
expect_error(lambda: eu.create_bucket(Bucket="elsewhere", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"}),
             "IllegalLocationConstraintException", 400)
# MFA Delete Ferry cannot check: refused, not dropped.
expect_error(lambda: s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"},
                                              MFA="123456 654321"), "NotImplemented", 501)
assert "Status" not in s3.get_bucket_versioning(Bucket=B), s3.get_bucket_versioning(Bucket=B)

# A carriage return in a key is written `&#13;` in XML answers: a raw one is read back as a
# line feed by every XML parser (s3cmd's listing named a key that is not there).
import xml.etree.ElementTree as ET
s3.create_bucket(Bucket="s3-rules-cr")
for k in ["cr\rx", "crlf\r\ny", "lf\nz"]:
    s3.put_object(Bucket="s3-rules-cr", Key=k, Body=b"1")
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
for query in ["?list-type=2", "", "?versions"]:
    st, _h, body = signed("GET", "/s3-rules-cr" + query)
    assert st == 200, (st, body)
    keys = sorted(e.text for e in ET.fromstring(body).iter(NS + "Key"))
    assert keys == sorted(["cr\rx", "crlf\r\ny", "lf\nz"]), (query, keys)
print("s3 rules: ok")
