"""Requests S3 answers with an error rather than doing something else: sub-resources Ferry
does not serve (s3s would route `DELETE /bucket?acl` as DeleteBucket), Object Lock and
encryption it cannot honour, an empty versionId; and the smaller answers found by the
differential probe (aws-chunked is not stored as a Content-Encoding, HEAD honours response
overrides, DeleteObjects names the marker it removed and fails whole on a missing bucket).
Exits non-zero on the first failed assertion."""
import base64
import hashlib
import os
import re
import socket
import sys
import zlib

import requests
from common import HOST, client, code_of, expect_error, signed, signed_head, streamed

s3 = client()
B = "s3-guards"
s3.create_bucket(Bucket=B)
s3.create_bucket(Bucket="s3-guards-empty")
s3.put_object(Bucket=B, Key="k", Body=b"original")


def refused(method, path, body=b"", status=405, code="MethodNotAllowed"):
    st, _, data = signed(method, path, body)
    assert st == status and code_of(data) == code, f"{method} {path}: {st} {data[:300]!r}"


# Sub-resources the plain operations would otherwise swallow: nothing is deleted or written.
for sub in ["acl", "logging", "notification", "object-lock", "versions", "uploads", "policyStatus"]:
    refused("DELETE", f"/s3-guards-empty?{sub}")
s3.head_bucket(Bucket="s3-guards-empty")
for sub in ["acl", "retention", "legal-hold", "torrent", "restore", "partNumber=1"]:
    refused("DELETE", f"/{B}/k?{sub}")
for sub in ["torrent", "attributes", "restore", "select", "uploads"]:
    refused("PUT", f"/{B}/k?{sub}", b"overwritten")
refused("PUT", "/s3-guards-new?torrent")
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"original"
expect_error(lambda: s3.head_bucket(Bucket="s3-guards-new"), "404", 404)
# Parameters that are not sub-resources still reach the operation, as on S3.
st, _, _ = signed("PUT", f"/{B}/k2?x-id=PutObject&bogus", b"v")
assert st == 200, st

# Object Lock and encryption Ferry cannot honour are refused, not dropped.
expect_error(lambda: s3.put_object(Bucket=B, Key="locked", Body=b"x", ObjectLockLegalHoldStatus="ON"),
             "InvalidRequest", 400)
expect_error(lambda: s3.create_multipart_upload(Bucket=B, Key="locked", ObjectLockMode="COMPLIANCE",
                                                ObjectLockRetainUntilDate="2030-01-01T00:00:00Z"),
             "InvalidRequest", 400)
expect_error(lambda: s3.create_bucket(Bucket="s3-guards-locked", ObjectLockEnabledForBucket=True),
             "NotImplemented", 501)
expect_error(lambda: s3.put_object(Bucket=B, Key="kms", Body=b"x", ServerSideEncryption="aws:kms"),
             "NotImplemented", 501)
st, _, data = signed("PUT", f"/{B}/bogus-sse", b"x", headers={"x-amz-server-side-encryption": "rot13"})
assert st == 400 and code_of(data) == "InvalidArgument", (st, data)
r = s3.put_object(Bucket=B, Key="sse", Body=b"x", ServerSideEncryption="AES256")
assert "ServerSideEncryption" not in r, r  # taken, but not claimed
# A copy onto itself that names an encryption or a redirect is a change to S3, not a no-op.
s3.copy_object(Bucket=B, Key="sse", CopySource={"Bucket": B, "Key": "sse"}, ServerSideEncryption="AES256")
s3.copy_object(Bucket=B, Key="sse", CopySource={"Bucket": B, "Key": "sse"}, WebsiteRedirectLocation="/other")
assert s3.get_object(Bucket=B, Key="sse")["Body"].read() == b"x"
for key in ["locked", "kms", "bogus-sse"]:
    expect_error(lambda: s3.head_object(Bucket=B, Key=key), "404", 404)

# An empty versionId is a bad request, not a lookup.
for call in (lambda: s3.get_object(Bucket=B, Key="k", VersionId=""),
             lambda: s3.delete_object(Bucket=B, Key="k", VersionId="")):
    try:
        call()
        raise AssertionError("an empty versionId was taken")
    except Exception as e:  # botocore may refuse it itself (ParamValidationError)
        assert "InvalidArgument" in str(e) or "Invalid" in str(e), e
st, _, data = signed("GET", f"/{B}/k?versionId=")
assert st == 400 and code_of(data) == "InvalidArgument", (st, data)
st, _, data = signed("DELETE", f"/{B}/k?versionId=")
assert st == 400 and code_of(data) == "InvalidArgument", (st, data)
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"original"
# A version id this store could never have made is refused too, not looked up (AWS:
# InvalidArgument, "Invalid version id specified"); a well-formed unknown one is NoSuchVersion.
for method in ("GET", "DELETE"):
    st, _, data = signed(method, f"/{B}/k?versionId=not-a-version")
    assert st == 400 and code_of(data) == "InvalidArgument", (method, st, data)
st, _, data = signed("GET", f"/{B}/k?versionId={'0' * 32}")
assert st == 404 and code_of(data) == "NoSuchVersion", (st, data)
st, _, data = signed("GET", f"/{B}?versions&key-marker=k&version-id-marker=nope")
assert st == 400 and code_of(data) == "InvalidArgument", (st, data)
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"original"

# PutBucketTagging answers 204 No Content, as S3 does.
r = s3.put_bucket_tagging(Bucket=B, Tagging={"TagSet": [{"Key": "team", "Value": "x"}]})
assert r["ResponseMetadata"]["HTTPStatusCode"] == 204, r["ResponseMetadata"]
s3.delete_bucket_tagging(Bucket=B)

# An aws-chunked body: its framing is not the object's Content-Encoding.
data = b"hello chunked world"
crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
for enc, stored in [("aws-chunked", None), ("aws-chunked,gzip", "gzip")]:
    body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    st, _, resp = signed("PUT", f"/{B}/chunked", body, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                         headers={"Content-Encoding": enc, "x-amz-decoded-content-length": str(len(data)),
                                  "x-amz-trailer": "x-amz-checksum-crc32"})
    assert st == 200, (st, resp)
    got = s3.get_object(Bucket=B, Key="chunked")
    stored_body = got["Body"].read()
    assert stored_body == data, (enc, stored_body)
    assert got.get("ContentEncoding") == stored, (enc, got.get("ContentEncoding"))
    assert s3.head_object(Bucket=B, Key="chunked").get("ContentEncoding") == stored

# The classic signed stream (every chunk signed, no trailer: AWS SDK for Java v1, minio-go
# over http) is a plain upload, for PUT and UploadPart alike.
big = os.urandom(200_000)
st, hdrs, resp = streamed(f"/{B}/streamed", big)
assert st == 200, (st, resp)
assert s3.get_object(Bucket=B, Key="streamed")["Body"].read() == big
assert hdrs["etag"].strip('"') == hashlib.md5(big).hexdigest(), hdrs
up = s3.create_multipart_upload(Bucket=B, Key="streamed-mp")["UploadId"]
st, hdrs, resp = streamed(f"/{B}/streamed-mp?partNumber=1&uploadId={up}", big)
assert st == 200, (st, resp)
s3.complete_multipart_upload(Bucket=B, Key="streamed-mp", UploadId=up, MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": hdrs["etag"]}]})
assert s3.get_object(Bucket=B, Key="streamed-mp")["Body"].read() == big

# The checksum an aws-chunked body declares in `x-amz-trailer` must come in its trailer, once
# and of a known algorithm; otherwise nothing is written (S3's MalformedTrailerError or
# InvalidRequest), rather than an object stored unchecked.
s3.put_object(Bucket=B, Key="trailed", Body=b"before")
c32c = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
for trailer, extra, declared, code in [
    (b"", {}, "x-amz-checksum-crc32", "MalformedTrailerError"),
    (f"x-amz-checksum-crc32c:{c32c}\r\n".encode(), {}, "x-amz-checksum-crc32", "MalformedTrailerError"),
    (f"x-amz-checksum-crc32:{crc}\r\n".encode(), {}, "x-amz-checksum-md5", "InvalidRequest"),
    (f"x-amz-checksum-crc32:{crc}\r\n".encode(), {"x-amz-checksum-crc32": crc}, "x-amz-checksum-crc32",
     "InvalidRequest"),
]:
    body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + trailer + b"\r\n"
    st, _, resp = signed("PUT", f"/{B}/trailed", body, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                         headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
                                  "x-amz-trailer": declared, **extra})
    assert st == 400 and code_of(resp) == code, (trailer, declared, st, resp)
    assert s3.get_object(Bucket=B, Key="trailed")["Body"].read() == b"before", trailer

# HEAD honours the response-* overrides, as the GET it stands for does.
h = s3.head_object(Bucket=B, Key="k", ResponseContentType="text/x-over",
                   ResponseContentDisposition="attachment; filename=o.txt")
assert h["ContentType"] == "text/x-over" and h["ContentDisposition"] == "attachment; filename=o.txt", h

# An XML body is checked against the Content-MD5 or checksum its request names.
s3.put_object(Bucket=B, Key="keep", Body=b"1")
doc = b'<Delete><Object><Key>keep</Key></Object></Delete>'
md5 = base64.b64encode(hashlib.md5(doc).digest()).decode()
bad_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
for headers, code in [({"Content-MD5": bad_md5}, "BadDigest"), ({"Content-MD5": "not-md5"}, "InvalidDigest"),
                      ({"Content-MD5": md5, "x-amz-checksum-crc32": "AAAAAA=="}, "BadDigest")]:
    st, _, data = signed("POST", f"/{B}?delete", doc, headers=headers)
    assert st == 400 and code_of(data) == code, (headers, st, data)
assert s3.get_object(Bucket=B, Key="keep")["Body"].read() == b"1"
st, _, data = signed("POST", f"/{B}?delete", doc, headers={"Content-MD5": md5})
assert st == 200 and b"<Deleted>" in data, (st, data)
expect_error(lambda: s3.head_object(Bucket=B, Key="keep"), "404", 404)
tagging = b'<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>'
st, _, data = signed("PUT", f"/{B}/k?tagging", tagging, headers={"Content-MD5": bad_md5})
assert st == 400 and code_of(data) == "BadDigest", (st, data)
assert s3.get_object_tagging(Bucket=B, Key="k")["TagSet"] == []

# ... and only once its signature has been checked: a badly signed one is refused at once,
# before its body is read, so nothing unsigned holds the server while a body trickles in (or
# never comes). Only the head is sent here.
head = signed_head("POST", f"/{B}?delete", len(doc), {"Content-MD5": md5})
m = re.search(rb"Signature=([0-9a-f]{64})", head)
wrong = bytes(m.group(1)[:-1]) + (b"0" if m.group(1)[-1:] != b"0" else b"1")
head = head.replace(m.group(1), wrong)
sock = socket.create_connection(("127.0.0.1", int(HOST.rsplit(":", 1)[1])), timeout=8)
sock.sendall(head)
answer = b""
while b"</Error>" not in answer:
    chunk = sock.recv(65536)  # times out if the server waits for the body
    assert chunk, answer
    answer += chunk
sock.close()
assert answer.startswith(b"HTTP/1.1 403") and code_of(answer.split(b"\r\n\r\n", 1)[1]) == \
    "SignatureDoesNotMatch", answer[:400]

# An error answered before the request's body was read closes the connection, so no unread
# byte of the body is taken for the next request on it; a success keeps it.
st, headers, _ = signed("PUT", f"/{B}/k", b"y" * 200000, headers={"If-Match": '"nope"'})
assert st == 412 and headers.get("connection") == "close", (st, headers)
st, headers, _ = signed("PUT", f"/{B}/kept", b"y")
assert st == 200 and headers.get("connection") != "close", (st, headers)

# The case that broke connections: a client that asks `Expect: 100-continue` and, refused
# before the 100, never sends the body (botocore). hyper, on dropping the unread body, reads
# whatever has arrived "in case a tiny body was included", which may be the next request's
# first bytes. The refusal must close the connection, and nothing sent after it is answered.
sock = socket.create_connection(("127.0.0.1", int(HOST.rsplit(":", 1)[1])), timeout=10)
sock.sendall(signed_head("PUT", f"/{B}/k", 3, {"If-None-Match": "*", "Expect": "100-continue"}))
answer = b""
while b"\r\n\r\n" not in answer:
    chunk = sock.recv(65536)
    assert chunk, answer
    answer += chunk
head = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
assert head.startswith("http/1.1 412") and "\r\nconnection: close" in head, head
try:
    sock.sendall(signed_head("GET", f"/{B}/k", 0, {}))
    rest = b""
    while chunk := sock.recv(65536):
        rest += chunk
except (BrokenPipeError, ConnectionResetError):
    rest = b""
assert b"HTTP/1.1" not in rest, rest[:300]
sock.close()

# A made-up continuation token is refused, and so is one from another bucket's listing.
expect_error(lambda: s3.list_objects_v2(Bucket=B, ContinuationToken="AAAA"), "InvalidArgument", 400)
s3.create_bucket(Bucket="s3-guards-other")
for k in ("a", "b"):
    s3.put_object(Bucket="s3-guards-other", Key=k, Body=b"1")
other = s3.list_objects_v2(Bucket="s3-guards-other", MaxKeys=1)["NextContinuationToken"]
assert s3.list_objects_v2(Bucket="s3-guards-other", ContinuationToken=other)["Contents"][0]["Key"] == "b"
expect_error(lambda: s3.list_objects_v2(Bucket=B, ContinuationToken=other), "InvalidArgument", 400)

# DeleteObjects: a missing bucket fails the request; removing a marker names it.
expect_error(lambda: s3.delete_objects(Bucket="s3-guards-missing", Delete={"Objects": [{"Key": "a"}]}),
             "NoSuchBucket", 404)
V = "s3-guards-versioned"
s3.create_bucket(Bucket=V)
s3.put_bucket_versioning(Bucket=V, VersioningConfiguration={"Status": "Enabled"})
s3.put_object(Bucket=V, Key="m", Body=b"1")
marker = s3.delete_object(Bucket=V, Key="m")["VersionId"]
r = s3.delete_objects(Bucket=V, Delete={"Objects": [{"Key": "m", "VersionId": marker}]})
d = r["Deleted"][0]
assert d.get("DeleteMarker") is True and d.get("DeleteMarkerVersionId") == marker, r
assert s3.get_object(Bucket=V, Key="m")["Body"].read() == b"1"

# Configurations Ferry does not keep read as S3's "none" answers, so tools that read a
# bucket's whole state (Terraform, Cyberduck, s3cmd info) get through.
for call, code in [
    (s3.get_bucket_cors, "NoSuchCORSConfiguration"),
    (s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration"),
    (s3.get_bucket_policy, "NoSuchBucketPolicy"),
    (s3.get_bucket_website, "NoSuchWebsiteConfiguration"),
    (s3.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError"),
    (s3.get_object_lock_configuration, "ObjectLockConfigurationNotFoundError"),
    (s3.get_bucket_ownership_controls, "OwnershipControlsNotFoundError"),
    (s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration"),
    (s3.get_bucket_replication, "ReplicationConfigurationNotFoundError"),
]:
    expect_error(lambda: call(Bucket=B), code, 404)
    expect_error(lambda: call(Bucket="s3-guards-missing"), "NoSuchBucket", 404)
# Deleting one the bucket does not have succeeds (teardown scripts and Terraform do it).
for call in [s3.delete_bucket_cors, s3.delete_bucket_lifecycle, s3.delete_bucket_policy,
             s3.delete_bucket_website, s3.delete_bucket_encryption, s3.delete_public_access_block,
             s3.delete_bucket_ownership_controls, s3.delete_bucket_replication]:
    assert call(Bucket=B)["ResponseMetadata"]["HTTPStatusCode"] == 204, call
    expect_error(lambda: call(Bucket="s3-guards-missing"), "NoSuchBucket", 404)
for call in [s3.get_object_retention, s3.get_object_legal_hold]:
    expect_error(lambda: call(Bucket=B, Key="k"), "InvalidRequest", 400)
assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=B)
assert s3.get_bucket_request_payment(Bucket=B)["Payer"] == "BucketOwner"
assert "Status" not in s3.get_bucket_accelerate_configuration(Bucket=B)
n = s3.get_bucket_notification_configuration(Bucket=B)
assert not any(k.endswith("Configurations") for k in n), n
# An empty configuration turns notifications off (what they are); one that sends is 501.
s3.put_bucket_notification_configuration(Bucket=B, NotificationConfiguration={})
expect_error(lambda: s3.put_bucket_notification_configuration(Bucket="s3-guards-missing", NotificationConfiguration={}),
             "NoSuchBucket", 404)
expect_error(lambda: s3.put_bucket_notification_configuration(Bucket=B, NotificationConfiguration={
    "QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:123456789012:q", "Events": ["s3:ObjectCreated:*"]}]}),
    "NotImplemented", 501)
for acl in (s3.get_bucket_acl(Bucket=B), s3.get_object_acl(Bucket=B, Key="k")):
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"], acl
    assert acl["Grants"][0]["Grantee"]["ID"] == acl["Owner"]["ID"], acl
expect_error(lambda: s3.get_object_acl(Bucket=B, Key="missing"), "NoSuchKey", 404)
# The one ACL Ferry has (the owner's) can be set; a shared or public one cannot.
s3.put_bucket_acl(Bucket=B, ACL="private")
s3.put_object_acl(Bucket=B, Key="k", ACL="bucket-owner-full-control")
acl = s3.get_object_acl(Bucket=B, Key="k")
s3.put_object_acl(Bucket=B, Key="k", AccessControlPolicy={"Grants": acl["Grants"], "Owner": acl["Owner"]})
# Refused as a bucket with ACLs disabled refuses them: 400, which clients do not retry.
expect_error(lambda: s3.put_bucket_acl(Bucket=B, ACL="public-read"), "AccessControlListNotSupported", 400)
expect_error(lambda: s3.put_object_acl(Bucket=B, Key="k", GrantRead="uri=http://acs.amazonaws.com/groups/global/AllUsers"),
             "AccessControlListNotSupported", 400)
expect_error(lambda: s3.put_object_acl(Bucket=B, Key="missing", ACL="private"), "NoSuchKey", 404)
# The same ACLs given as a write's headers (`s3cmd put -P`, `aws s3 cp --acl public-read`)
# are refused too, not taken and then not honoured; nothing is written.
public = "uri=http://acs.amazonaws.com/groups/global/AllUsers"
for write in (
    lambda: s3.put_object(Bucket=B, Key="pub", Body=b"x", ACL="public-read"),
    lambda: s3.put_object(Bucket=B, Key="pub", Body=b"x", GrantRead=public),
    lambda: s3.create_multipart_upload(Bucket=B, Key="pub", ACL="public-read-write"),
    lambda: s3.copy_object(Bucket=B, Key="pub", CopySource={"Bucket": B, "Key": "k"}, ACL="public-read"),
    lambda: s3.create_bucket(Bucket="s3-guards-public", ACL="public-read"),
    lambda: s3.create_bucket(Bucket="s3-guards-public", GrantRead=public),
):
    expect_error(write, "AccessControlListNotSupported", 400)
expect_error(lambda: s3.head_object(Bucket=B, Key="pub"), "404", 404)
expect_error(lambda: s3.head_bucket(Bucket="s3-guards-public"), "404", 404)
s3.put_object(Bucket=B, Key="owned", Body=b"x", ACL="private")
s3.put_object(Bucket=B, Key="owned", Body=b"x", ACL="bucket-owner-full-control")

# An unfinished multipart upload does not keep a bucket: it goes with it.
s3.create_bucket(Bucket="s3-guards-mpu")
uid = s3.create_multipart_upload(Bucket="s3-guards-mpu", Key="big")["UploadId"]
s3.upload_part(Bucket="s3-guards-mpu", Key="big", UploadId=uid, PartNumber=1, Body=b"p" * 1024)
s3.delete_bucket(Bucket="s3-guards-mpu")
expect_error(lambda: s3.head_bucket(Bucket="s3-guards-mpu"), "404", 404)
s3.create_bucket(Bucket="s3-guards-mpu")
assert not s3.list_multipart_uploads(Bucket="s3-guards-mpu").get("Uploads"), "the upload outlived its bucket"
expect_error(lambda: s3.list_parts(Bucket="s3-guards-mpu", Key="big", UploadId=uid), "NoSuchUpload", 404)
# ...but a delete refused for a file put there behind Ferry's back keeps the uploads.
uid = s3.create_multipart_upload(Bucket="s3-guards-mpu", Key="big")["UploadId"]
with open(os.path.join(sys.argv[1], "s3-guards-mpu", "stray.txt"), "wb") as f:
    f.write(b"posix")
expect_error(lambda: s3.delete_bucket(Bucket="s3-guards-mpu"), "BucketNotEmpty", 409)
assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="s3-guards-mpu")["Uploads"]] == [uid]

# Browser-form uploads (POST Object with a POST policy): taken within the policy and Ferry's
# 16 MiB bound on a file s3s holds in memory; refused outside them.
v4 = client(signature_version="s3v4")
post = v4.generate_presigned_post(B, "form/upload.txt", Fields={"Content-Type": "text/plain"},
                                  Conditions=[{"Content-Type": "text/plain"}, ["content-length-range", 1, 64 << 20]])
r = requests.post(post["url"], data=post["fields"], files={"file": ("upload.txt", b"from a form")})
assert r.status_code == 204, (r.status_code, r.text)
got = s3.get_object(Bucket=B, Key="form/upload.txt")
assert got["Body"].read() == b"from a form" and got["ContentType"] == "text/plain", got
# The answer names the object as AWS does: its ETag (quoted), version and URL as headers,
# and with success_action_status=201 in the XML too (s3s wrote a bare ETag and a path).
etag_hdr = '"' + hashlib.md5(b"from a form").hexdigest() + '"'
assert r.headers.get("ETag") == etag_hdr, r.headers
assert r.headers.get("Location", "").endswith("/" + B + "/form/upload.txt"), r.headers
assert r.headers["Location"].startswith("http://"), r.headers
p201 = v4.generate_presigned_post(B, "form/a b.txt", Fields={"success_action_status": "201"},
                                  Conditions=[{"success_action_status": "201"}])
r = requests.post(p201["url"], data=p201["fields"], files={"file": ("x.txt", b"created")})
assert r.status_code == 201, (r.status_code, r.text)
body_etag = '"' + hashlib.md5(b"created").hexdigest() + '"'
assert "<ETag>" + body_etag.replace('"', "&quot;") + "</ETag>" in r.text or "<ETag>" + body_etag + "</ETag>" in r.text, r.text
assert "<Location>http://" in r.text and "/form/a%20b.txt</Location>" in r.text, r.text
assert r.headers.get("Location", "").endswith("/form/a%20b.txt"), r.headers
r = requests.post(post["url"], data=post["fields"], files={"file": ("big.bin", b"b" * ((16 << 20) + 1))})
assert r.status_code == 400 and code_of(r.content) == "EntityTooLarge", (r.status_code, r.text)
locked = v4.generate_presigned_post(B, "form/locked.txt", Fields={"x-amz-object-lock-legal-hold": "ON"},
                                    Conditions=[{"x-amz-object-lock-legal-hold": "ON"}])
r = requests.post(locked["url"], data=locked["fields"], files={"file": ("l.txt", b"lock me")})
assert r.status_code == 400 and code_of(r.content) == "InvalidRequest", (r.status_code, r.text)
expect_error(lambda: s3.head_object(Bucket=B, Key="form/locked.txt"), "404", 404)
tampered = dict(post["fields"], key="elsewhere.txt")
r = requests.post(post["url"], data=tampered, files={"file": ("e.txt", b"evil")})
assert r.status_code == 403 and code_of(r.content) == "AccessDenied", (r.status_code, r.text)
assert "Invalid according to Policy: Policy condition" in r.text, r.text
expect_error(lambda: s3.head_object(Bucket=B, Key="elsewhere.txt"), "404", 404)
# The form fields S3 names without `x-amz-` (s3s maps only the prefixed ones): a public `acl`
# is refused as `x-amz-acl` is, an unknown one is a bad argument, `tagging` is kept, and a
# key's `${filename}` is the uploaded file's name.
def form(key, fields, name="f.txt", body=b"form body"):
    p = v4.generate_presigned_post(B, key, Fields=fields, Conditions=[{k: v} for k, v in fields.items()])
    return requests.post(p["url"], data=p["fields"], files={"file": (name, body)})
r = form("form/public.txt", {"acl": "public-read"})
assert r.status_code == 400 and code_of(r.content) == "AccessControlListNotSupported", (r.status_code, r.text)
expect_error(lambda: s3.head_object(Bucket=B, Key="form/public.txt"), "404", 404)
r = form("form/bogus.txt", {"acl": "bogus-acl"})
assert r.status_code == 400 and code_of(r.content) == "InvalidArgument", (r.status_code, r.text)
expect_error(lambda: s3.head_object(Bucket=B, Key="form/bogus.txt"), "404", 404)
r = form("form/private.txt", {"acl": "private"})
assert r.status_code == 204, (r.status_code, r.text)
tagging = "<Tagging><TagSet><Tag><Key>team</Key><Value>a b</Value></Tag><Tag><Key>k2</Key><Value>v2</Value></Tag></TagSet></Tagging>"
r = form("form/tagged.txt", {"tagging": tagging})
assert r.status_code == 204, (r.status_code, r.text)
tags = sorted((t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket=B, Key="form/tagged.txt")["TagSet"])
assert tags == [("k2", "v2"), ("team", "a b")], tags
r = form("form/badtags.txt", {"tagging": "<Tagging><TagSet>"})
assert r.status_code == 400 and code_of(r.content) == "MalformedXML", (r.status_code, r.text)
expect_error(lambda: s3.head_object(Bucket=B, Key="form/badtags.txt"), "404", 404)
p = v4.generate_presigned_post(B, "form/up/${filename}", Conditions=[["starts-with", "$key", "form/up/"]])
r = requests.post(p["url"], data=p["fields"], files={"file": ("hello.txt", b"named by the file")})
assert r.status_code == 204, (r.status_code, r.text)
assert s3.get_object(Bucket=B, Key="form/up/hello.txt")["Body"].read() == b"named by the file"
expect_error(lambda: s3.head_object(Bucket=B, Key="form/up/${filename}"), "404", 404)
# The form is read twice (its fields here, then by s3s): a file of many reads arrives whole.
# Carriage returns end most pieces the server reads: s3s joined such a piece with the next
# and refused the upload when the two passed 64 KiB ("failed to read file stream").
big = b"\r" * (9 << 20)
r = form("form/big.bin", {"tagging": tagging}, name="big.bin", body=big)
assert r.status_code == 204, (r.status_code, r.text)
assert hashlib.sha256(s3.get_object(Bucket=B, Key="form/big.bin")["Body"].read()).digest() == hashlib.sha256(big).digest()

# A version that would come back under a key that is now another object's parent (the fs
# store keeps a key's current version at its path) is refused, and nothing changes.
s3.put_object(Bucket=V, Key="p/q", Body=b"old q")
hide = s3.delete_object(Bucket=V, Key="p/q")["VersionId"]
s3.put_object(Bucket=V, Key="p", Body=b"file p")
expect_error(lambda: s3.delete_object(Bucket=V, Key="p/q", VersionId=hide), "XFerryKeyConflict", 400)
expect_error(lambda: s3.get_object(Bucket=V, Key="p/q"), "NoSuchKey", 404)
assert s3.get_object(Bucket=V, Key="p")["Body"].read() == b"file p"
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=V).get("Contents", [])]
assert keys == ["m", "p"], keys
# Once `p` is gone the marker can go, and `p/q` is back.
for v in s3.list_object_versions(Bucket=V, Prefix="p")["Versions"]:
    if v["Key"] == "p":
        s3.delete_object(Bucket=V, Key="p", VersionId=v["VersionId"])
s3.delete_object(Bucket=V, Key="p/q", VersionId=hide)
assert s3.get_object(Bucket=V, Key="p/q")["Body"].read() == b"old q"
# An empty object copies (rclone sets a file's modification time with a copy onto itself,
# s3cmd sync copies duplicates): the copy is empty too, not a 500.
s3.put_object(Bucket=B, Key="empty", Body=b"")
s3.copy_object(Bucket=B, Key="empty2", CopySource={"Bucket": B, "Key": "empty"})
assert s3.get_object(Bucket=B, Key="empty2")["Body"].read() == b""
s3.copy_object(Bucket=B, Key="empty", CopySource={"Bucket": B, "Key": "empty"},
               MetadataDirective="REPLACE", Metadata={"mtime": "1700000000"})
assert s3.head_object(Bucket=B, Key="empty")["Metadata"] == {"mtime": "1700000000"}
up = s3.create_multipart_upload(Bucket=B, Key="empty-mpu")
p = s3.upload_part_copy(Bucket=B, Key="empty-mpu", UploadId=up["UploadId"], PartNumber=1,
                        CopySource={"Bucket": B, "Key": "empty"})
s3.complete_multipart_upload(Bucket=B, Key="empty-mpu", UploadId=up["UploadId"],
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["CopyPartResult"]["ETag"]}]})
assert s3.get_object(Bucket=B, Key="empty-mpu")["Body"].read() == b""
# A failed GET precondition (answered by s3s before Ferry) says why and names the request.
for h in ({"If-Match": '"nope"'}, {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}):
    st, _, data = signed("GET", f"/{B}/k", headers=h)
    assert st == 412 and code_of(data) == "PreconditionFailed", (st, data)
    assert b"<Message>" in data and b"<RequestId>" in data, data
# A versioning status that is not one is named as sent, not as Rust prints an Option.
st, _, data = signed("PUT", f"/{B}?versioning",
                     b"<VersioningConfiguration><Status>Foo</Status></VersioningConfiguration>")
assert st == 400 and code_of(data) == "MalformedXML", (st, data)
assert b"Foo" in data and b"Some(" not in data, data
# A metadata header sent twice is one value joined with commas (as S3 keeps it), and the
# signature, made over the joined value as SigV4 joins repeated headers, holds.
import http.client
from botocore.awsrequest import AWSRequest
from common import END, _Signer
req = AWSRequest(method="PUT", url=f"{END}/{B}/twice", data=b"x", headers={"x-amz-meta-d": "1,2"})
_Signer(hashlib.sha256(b"x").hexdigest()).add_auth(req)
conn = http.client.HTTPConnection(HOST, timeout=30)
conn.putrequest("PUT", f"/{B}/twice", skip_accept_encoding=True)
for k, v in req.headers.items():
    if k.lower() == "x-amz-meta-d":
        conn.putheader(k, "1")
        conn.putheader(k, "2")
    else:
        conn.putheader(k, v)
conn.putheader("Content-Length", "1")
conn.endheaders()
conn.send(b"x")
r = conn.getresponse()
assert r.status == 200, (r.status, r.read())
conn.close()
assert s3.head_object(Bucket=B, Key="twice")["Metadata"] == {"d": "1,2"}
# Storage classes are kept as written and named back (S3 says nothing for STANDARD); a copy
# gets the class it names, STANDARD without one; other kinds of bucket's classes are refused.
s3.put_object(Bucket=B, Key="cls/ia", Body=b"infrequent", StorageClass="STANDARD_IA")
h = s3.head_object(Bucket=B, Key="cls/ia")
assert h.get("StorageClass") == "STANDARD_IA", h
assert s3.get_object(Bucket=B, Key="cls/ia").get("StorageClass") == "STANDARD_IA"
s3.put_object(Bucket=B, Key="cls/std", Body=b"standard")
assert "StorageClass" not in s3.head_object(Bucket=B, Key="cls/std")
up = s3.create_multipart_upload(Bucket=B, Key="cls/mpu", StorageClass="ONEZONE_IA")["UploadId"]
e = s3.upload_part(Bucket=B, Key="cls/mpu", UploadId=up, PartNumber=1, Body=b"part")["ETag"]
assert s3.list_parts(Bucket=B, Key="cls/mpu", UploadId=up)["StorageClass"] == "ONEZONE_IA"
expect_error(lambda: s3.list_parts(Bucket=B, Key="cls/mpu", UploadId=up, PartNumberMarker=-1),
             "InvalidArgument", 400)
ups = s3.list_multipart_uploads(Bucket=B, Prefix="cls/")["Uploads"]
assert [u["StorageClass"] for u in ups] == ["ONEZONE_IA"], ups
s3.complete_multipart_upload(Bucket=B, Key="cls/mpu", UploadId=up,
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
s3.copy_object(Bucket=B, Key="cls/copied", CopySource={"Bucket": B, "Key": "cls/ia"})
s3.copy_object(Bucket=B, Key="cls/cold", CopySource={"Bucket": B, "Key": "cls/ia"}, StorageClass="GLACIER")
s3.copy_object(Bucket=B, Key="cls/ia", CopySource={"Bucket": B, "Key": "cls/ia"}, StorageClass="STANDARD_IA",
               MetadataDirective="REPLACE", Metadata={"m": "1"})
classes = {o["Key"]: o["StorageClass"] for o in s3.list_objects_v2(Bucket=B, Prefix="cls/")["Contents"]}
assert classes == {"cls/ia": "STANDARD_IA", "cls/std": "STANDARD", "cls/mpu": "ONEZONE_IA",
                   "cls/copied": "STANDARD", "cls/cold": "GLACIER"}, classes
v1 = {o["Key"]: o["StorageClass"] for o in s3.list_objects(Bucket=B, Prefix="cls/")["Contents"]}
assert v1 == classes, v1
attrs = s3.get_object_attributes(Bucket=B, Key="cls/mpu", ObjectAttributes=["StorageClass"])
assert attrs["StorageClass"] == "ONEZONE_IA", attrs
expect_error(lambda: s3.put_object(Bucket=B, Key="cls/x", Body=b"x", StorageClass="EXPRESS_ONEZONE"),
             "InvalidStorageClass", 400)
# A checksum header that is not base64 of its algorithm's length is a bad request, as on S3,
# not a digest that did not match.
for name, value in [("x-amz-checksum-crc32", "notbase64!!"), ("x-amz-checksum-sha256", "AAAAAA==")]:
    st, _, data = signed("PUT", f"/{B}/badsum", b"body", {name: value})
    assert st == 400 and code_of(data) == "InvalidRequest", (name, st, data[:300])
expect_error(lambda: s3.head_object(Bucket=B, Key="badsum"), "404", 404)
print("s3 guards: ok")
