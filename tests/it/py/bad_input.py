"""Bad input must get the S3 error AWS would give: never a 500, a hang or a dropped
connection before an answer. Raw requests are signed with botocore and sent with http.client,
so paths and headers reach the server exactly as written here."""
import datetime
import http.client
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from urllib.parse import urlparse

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from common import CREDS, HOST, client, code_of, error_code, expect_error, signed

END = os.environ["FERRY_ENDPOINT"]


def expect(status, code, result, what):
    st, headers, data = result
    assert st == status and code_of(data) == code, f"{what}: expected {status} {code}, got {st} {data[:300]!r}"
    # Every error says in words what went wrong and names its request, as S3's do.
    doc = ET.fromstring(data)
    assert doc.findtext("Message"), f"{what}: no <Message> in {data[:300]!r}"
    assert doc.findtext("RequestId") == headers.get("x-amz-request-id"), f"{what}: {data[:300]!r}"


s3 = client()
B = "bad-input"
s3.create_bucket(Bucket=B)

# Malformed XML bodies
expect(400, "MalformedXML", signed("POST", f"/{B}?delete", b"<Delete><Object><Key>x</Key>"), "truncated XML")
expect(400, "MalformedXML", signed("PUT", f"/{B}?versioning", b"not xml at all"), "garbage XML")

# Bad signatures, unknown keys, expired presigned URLs
bad = boto3.client("s3", endpoint_url=END, aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                   aws_secret_access_key="wrong-secret")
e = expect_error(lambda: bad.list_objects_v2(Bucket=B), "SignatureDoesNotMatch", 403)
assert "signature we calculated does not match" in e.response["Error"].get("Message", ""), e.response
unknown = boto3.client("s3", endpoint_url=END, aws_access_key_id="NOSUCHKEY0000000000",
                       aws_secret_access_key="x")
expect_error(lambda: unknown.list_buckets(), "InvalidAccessKeyId", 403)
s3.put_object(Bucket=B, Key="p.txt", Body=b"presigned")
url = s3.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "p.txt"}, ExpiresIn=1)
assert urllib.request.urlopen(url).read() == b"presigned"
time.sleep(2.5)
try:
    urllib.request.urlopen(url)
    raise AssertionError("an expired presigned URL was accepted")
except urllib.error.HTTPError as e:
    assert e.code == 403 and code_of(e.read()) == "AccessDenied", e.code
# A SigV4 presigned URL may be valid for a week at most, and is not signed twice.
v4 = client(signature_version="s3v4")
url = v4.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "p.txt"}, ExpiresIn=604801)
try:
    urllib.request.urlopen(url)
    raise AssertionError("a presigned URL valid for more than a week was accepted")
except urllib.error.HTTPError as e:
    assert e.code == 400 and code_of(e.read()) == "AuthorizationQueryParametersError", e.code
url = v4.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "p.txt"}, ExpiresIn=60)
assert "X-Amz-Signature" in url and urllib.request.urlopen(url).read() == b"presigned"
# A signature cut short or re-cased (pasted through a chat) does not match; nothing is missing.
sig = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Signature"][0]
for mangled in (sig.upper(), sig[:-2], ""):
    try:
        urllib.request.urlopen(url.replace(f"X-Amz-Signature={sig}", f"X-Amz-Signature={mangled}"))
        raise AssertionError(f"a mangled signature {mangled!r} was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 403 and code_of(e.read()) == "SignatureDoesNotMatch", (mangled, e.code)
# Other fields malformed or missing: S3 names what is wrong (s3s said "missing fields").
q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
for field, bad, said in (("X-Amz-Date", "2026", "ISO8601"),
                         ("X-Amz-Credential", "nokey", "mal-formed"),
                         ("X-Amz-SignedHeaders", None, "requires the X-Amz-Algorithm")):
    value = q[field][0]
    old = f"{field}={urllib.parse.quote(value, safe='')}"
    assert old in url, (old, url)
    mangled = url.replace(old, f"{field}={bad}") if bad else url.replace("&" + old, "").replace(old + "&", "")
    try:
        urllib.request.urlopen(mangled)
        raise AssertionError(f"a URL with {field} {bad!r} was accepted")
    except urllib.error.HTTPError as e:
        body = e.read()
        assert e.code == 400 and code_of(body) == "AuthorizationQueryParametersError", (field, e.code, body)
        assert said.encode() in body, (field, body)
try:
    urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "AWS4-HMAC-SHA256 x"}))
    raise AssertionError("a request signed both ways was accepted")
except urllib.error.HTTPError as e:
    assert e.code == 400 and code_of(e.read()) == "InvalidArgument", e.code

# Invalid bucket names and keys
expect(400, "InvalidBucketName", signed("PUT", "/Bad_Bucket"), "uppercase bucket")
expect(400, "InvalidBucketName", signed("PUT", "/ab"), "short bucket")
for key in ["a/../b", "a//b", "../escape", "a/./b", "x%00y"]:
    expect(400, "InvalidArgument", signed("PUT", f"/{B}/{key}", b"x"), f"key {key!r}")
expect(400, "KeyTooLongError", signed("PUT", f"/{B}/" + "k" * 1100, b"x"), "key over 1024 bytes")
assert not os.path.exists(os.path.join(os.environ.get("FERRY_LOCAL_ROOT", "/nonexistent"), "escape"))

# A key the fs store cannot hold is not there: deleting it is done, as S3 answers a delete of
# a missing key (one at a time and in a batch), and touches nothing.
for key in ["a//b", "../escape", "a/./b"]:
    r = s3.delete_object(Bucket=B, Key=key)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204, (key, r)
r = s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": "a//b"}, {"Key": "../escape"}]})
assert sorted(d["Key"] for d in r.get("Deleted", [])) == ["../escape", "a//b"] and not r.get("Errors"), r
expect_error(lambda: s3.delete_object(Bucket="no-such-bucket-x", Key="a//b"), "NoSuchBucket", 404)

# Keys that cannot map to paths on the fs store
s3.put_object(Bucket=B, Key="file", Body=b"1")
expect_error(lambda: s3.put_object(Bucket=B, Key="file/child", Body=b"2"), "XFerryKeyConflict", 400)
s3.put_object(Bucket=B, Key="dir/child", Body=b"3")
expect_error(lambda: s3.put_object(Bucket=B, Key="dir", Body=b"4"), "XFerryKeyConflict", 400)
s3.put_object(Bucket=B, Key="folder/", Body=b"")
assert s3.head_object(Bucket=B, Key="folder/")["ContentLength"] == 0

# Bodies: over the limit, shorter than declared
st, _, data = signed("PUT", f"/{B}/huge", b"", {"Content-Length": "6000000000"}, "UNSIGNED-PAYLOAD")
assert st == 400 and code_of(data) == "EntityTooLarge", (st, data)
req = AWSRequest(method="PUT", url=f"{END}/{B}/short", data=b"", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
sock = socket.create_connection((urlparse(END).hostname, urlparse(END).port), timeout=30)
head = f"PUT /{B}/short HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000\r\n"
head += "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() != "content-length")
sock.sendall(head.encode() + b"\r\n" + b"only ten b")
sock.shutdown(socket.SHUT_WR)
reply = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    reply += chunk
sock.close()
assert b" 500 " not in reply.split(b"\r\n")[0], reply[:200]
expect_error(lambda: s3.head_object(Bucket=B, Key="short"), "404", 404)
time.sleep(0.5)
assert "short" not in [o["Key"] for o in s3.list_objects_v2(Bucket=B).get("Contents", [])]

# A body whose SHA-256 is not the signed one (damaged on the way): refused as AWS does, and
# nothing is stored.
damaged = signed("PUT", f"/{B}/sha", b"this body", send=b"that body")
expect(400, "XAmzContentSHA256Mismatch", damaged, "payload hash")
expect_error(lambda: s3.head_object(Bucket=B, Key="sha"), "404", 404)

# Part numbers out of range
uid = s3.create_multipart_upload(Bucket=B, Key="mp")["UploadId"]
for n in (0, 10001):
    expect(400, "InvalidArgument", signed("PUT", f"/{B}/mp?partNumber={n}&uploadId={uid}", b"x"), f"part {n}")
expect(404, "NoSuchUpload", signed("PUT", f"/{B}/mp?partNumber=1&uploadId=00ff", b"x"), "unknown upload")
expect(404, "NoSuchUpload", signed("PUT", f"/{B}/mp?partNumber=1&uploadId=..%2F..%2Fx", b"x"), "upload id path")

# Range past the end, negative max-keys, bad continuation token
e = expect_error(lambda: s3.get_object(Bucket=B, Key="file", Range="bytes=5-9"), "InvalidRange", 416)
size = s3.head_object(Bucket=B, Key="file")["ContentLength"]
got = e.response["ResponseMetadata"]["HTTPHeaders"].get("content-range")
assert got == f"bytes */{size}", f"a 416 names the object size in Content-Range, got {got!r}"
expect(400, "InvalidArgument", signed("GET", f"/{B}?list-type=2&max-keys=-1"), "negative max-keys")
expect(400, "InvalidArgument", signed("GET", f"/{B}?list-type=2&continuation-token=%21%21%21"), "bad token")

# A request head over the limit is refused with 431, not read without bound.
conn = http.client.HTTPConnection(HOST, timeout=30)
conn.request("GET", f"/{B}", headers={"x-big": "v" * (200 * 1024)})
r = conn.getresponse()
assert r.status == 431, r.status
conn.close()

# Still serving.
assert s3.get_object(Bucket=B, Key="file")["Body"].read() == b"1"
print("OK")

# Errors from the store (NoSuchKey, NoSuchBucket) name their request in the document too.
e = expect_error(lambda: s3.get_object(Bucket=B, Key="no-such-key-here"), "NoSuchKey", 404)
assert e.response["Error"].get("RequestId") or e.response.get("ResponseMetadata", {}).get("RequestId"), e.response
st, headers, data = signed("GET", f"/{B}/no-such-key-here")
assert st == 404 and ET.fromstring(data).findtext("RequestId") == headers.get("x-amz-request-id"), (st, data)
print("request ids: ok")

# ... and what they are about, as S3 names it (minio-py's S3Error.object_name / bucket_name).
e = expect_error(lambda: s3.get_object(Bucket=B, Key="dir/no such & <key>"), "NoSuchKey", 404)
assert e.response["Error"].get("Key") == "dir/no such & <key>", e.response
e = expect_error(lambda: s3.list_objects_v2(Bucket="no-such-bucket-y"), "NoSuchBucket", 404)
assert e.response["Error"].get("BucketName") == "no-such-bucket-y", e.response
e = expect_error(lambda: s3.list_parts(Bucket=B, Key="mp", UploadId="00ff"), "NoSuchUpload", 404)
assert e.response["Error"].get("UploadId") == "00ff", e.response
# A copy's NoSuchKey is about its source, which the path does not name: not the destination.
e = expect_error(lambda: s3.copy_object(Bucket=B, Key="copy-target", CopySource={"Bucket": B, "Key": "no-source"}),
                 "NoSuchKey", 404)
assert e.response["Error"].get("Key") != "copy-target", e.response
print("subjects: ok")
