"""minio-py against Ferry: buckets, objects, stat, listing, multipart, bulk delete, and
presigned GET and PUT URLs fetched with urllib, including an expired and a tampered URL that
must be refused with S3 errors. Prints OK; exits non-zero on the first failed assertion."""
import hashlib
import io
import os
import re
import time
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlparse

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

end = urlparse(os.environ["FERRY_ENDPOINT"])
m = Minio(end.netloc, access_key=os.environ["AWS_ACCESS_KEY_ID"],
          secret_key=os.environ["AWS_SECRET_ACCESS_KEY"], secure=False, region="us-east-1")
B = "minio"


def read(bucket, key, **kw):
    r = m.get_object(bucket, key, **kw)
    try:
        return r.read()
    finally:
        r.close()
        r.release_conn()


def http_error(url, method="GET", data=None):
    """The status, S3 error code and body of a request that must fail."""
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req) as r:
            raise AssertionError(f"{method} {url} succeeded with HTTP {r.status}")
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")
        code = re.search(r"<Code>([^<]*)</Code>", body)
        return e.code, code.group(1) if code else None, body


assert not m.bucket_exists(B)
m.make_bucket(B)
assert m.bucket_exists(B)
assert B in [b.name for b in m.list_buckets()]
try:
    m.make_bucket(B)
    raise AssertionError("make_bucket of an existing bucket succeeded")
except S3Error as e:
    assert e.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"), e

data = b"hello from minio-py\n" * 1000
w = m.put_object(B, "dir/a.txt", io.BytesIO(data), len(data), content_type="text/plain",
                 metadata={"x-amz-meta-owner": "alice"})
assert w.etag == hashlib.md5(data).hexdigest(), w.etag
assert read(B, "dir/a.txt") == data
assert read(B, "dir/a.txt", offset=6, length=4) == data[6:10]
st = m.stat_object(B, "dir/a.txt")
assert st.size == len(data), st.size
assert st.content_type == "text/plain", st.content_type
assert st.etag == hashlib.md5(data).hexdigest(), st.etag
assert st.metadata.get("x-amz-meta-owner") == "alice", dict(st.metadata)
try:
    m.stat_object(B, "dir/missing.txt")
    raise AssertionError("stat of a missing object succeeded")
except S3Error as e:
    assert e.code in ("NoSuchKey", "ResponseNotFound"), e.code

# A streamed upload of unknown length goes multipart in minio-py (three 5 MiB parts).
big = os.urandom(12 * 1024 * 1024)
w = m.put_object(B, "dir/big.bin", io.BytesIO(big), -1, part_size=5 * 1024 * 1024)
assert w.etag.endswith("-3"), w.etag
assert read(B, "dir/big.bin") == big
assert m.stat_object(B, "dir/big.bin").size == len(big)

odd = "sub dir/é ü 漢字+&=?.txt"
m.put_object(B, odd, io.BytesIO(b"odd"), 3)
assert read(B, odd) == b"odd"

names = sorted(o.object_name for o in m.list_objects(B, recursive=True))
assert names == ["dir/a.txt", "dir/big.bin", odd], names
top = sorted((o.object_name, o.is_dir) for o in m.list_objects(B))
assert top == [("dir/", True), ("sub dir/", True)], top
sizes = {o.object_name: o.size for o in m.list_objects(B, prefix="dir/")}
assert sizes == {"dir/a.txt": len(data), "dir/big.bin": len(big)}, sizes

# Presigned GET (with a response header override) and PUT, fetched with urllib.
url = m.presigned_get_object(B, "dir/a.txt", expires=timedelta(minutes=5))
with urllib.request.urlopen(url) as r:
    assert r.status == 200 and r.read() == data
url = m.presigned_get_object(B, odd, expires=timedelta(minutes=5),
                             response_headers={"response-content-type": "application/x-odd"})
with urllib.request.urlopen(url) as r:
    assert r.read() == b"odd"
    assert r.headers["Content-Type"] == "application/x-odd", r.headers["Content-Type"]
put_url = m.presigned_put_object(B, "dir/uploaded.txt", expires=timedelta(minutes=5))
req = urllib.request.Request(put_url, data=b"uploaded by URL", method="PUT")
with urllib.request.urlopen(req) as r:
    assert r.status == 200, r.status
assert read(B, "dir/uploaded.txt") == b"uploaded by URL"
assert m.stat_object(B, "dir/uploaded.txt").size == len(b"uploaded by URL")

# A presigned URL for a missing key is a 404, not an auth failure.
status, code, body = http_error(m.presigned_get_object(B, "dir/nope", expires=timedelta(minutes=5)))
assert (status, code) == (404, "NoSuchKey"), (status, code, body)

# A tampered signature is refused, and so is a URL reused for another key.
url = m.presigned_get_object(B, "dir/a.txt", expires=timedelta(minutes=5))
sig = re.search(r"X-Amz-Signature=([0-9a-f]{64})", url).group(1)
bad = url.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
status, code, body = http_error(bad)
assert (status, code) == (403, "SignatureDoesNotMatch"), (status, code, body)
status, code, body = http_error(url.replace("/dir/a.txt?", "/dir/big.bin?"))
assert (status, code) == (403, "SignatureDoesNotMatch"), (status, code, body)
# A presigned GET URL does not authorize a PUT.
status, code, body = http_error(url, method="PUT", data=b"overwrite")
assert (status, code) == (403, "SignatureDoesNotMatch"), (status, code, body)
assert read(B, "dir/a.txt") == data

# An expired presigned URL is refused: 403 AccessDenied, "Request has expired".
url = m.presigned_get_object(B, "dir/a.txt", expires=timedelta(seconds=1))
put_url = m.presigned_put_object(B, "dir/late.txt", expires=timedelta(seconds=1))
time.sleep(2)
status, code, body = http_error(url)
assert (status, code) == (403, "AccessDenied"), (status, code, body)
assert "expired" in body.lower(), body
status, code, body = http_error(put_url, method="PUT", data=b"too late")
assert (status, code) == (403, "AccessDenied"), (status, code, body)
assert "dir/late.txt" not in [o.object_name for o in m.list_objects(B, recursive=True)]

# Errors that carry headers of their own (a delete marker's NoSuchKey, InvalidRange's
# Content-Range) are still XML: minio-py read "non-XML response" and no code from them.
from minio.commonconfig import ENABLED
from minio.versioningconfig import VersioningConfig
V = "minio-versioned"
m.make_bucket(V)
m.set_bucket_versioning(V, VersioningConfig(ENABLED))
m.put_object(V, "k", io.BytesIO(b"thirteen byte"), 13)
try:
    m.get_object(V, "k", offset=1000, length=5)
    raise AssertionError("a range past the end was served")
except S3Error as e:
    assert e.code == "InvalidRange", e
m.remove_object(V, "k")
for call in (lambda: m.get_object(V, "k"), lambda: m.get_object_tags(V, "k")):
    try:
        call()
        raise AssertionError("a deleted key was served")
    except S3Error as e:
        assert e.code == "NoSuchKey", e

# Deletes: one, then the rest in bulk; then the bucket.
m.remove_object(B, "dir/a.txt")
assert "dir/a.txt" not in [o.object_name for o in m.list_objects(B, recursive=True)]
rest = [o.object_name for o in m.list_objects(B, recursive=True)]
assert len(rest) == 3, rest
errors = list(m.remove_objects(B, [DeleteObject(n) for n in rest]))
assert errors == [], errors
assert list(m.list_objects(B, recursive=True)) == []
m.remove_bucket(B)
assert not m.bucket_exists(B)
print("OK")
