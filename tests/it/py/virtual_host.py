"""Virtual-host style requests (BUCKET.DOMAIN) against a server started with --domain. The
connection goes to the loopback address; the Host header carries the bucket."""
import hashlib
import http.client
import os
import sys
from urllib.parse import urlparse

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from common import client

domain = sys.argv[1]
end = urlparse(os.environ["FERRY_ENDPOINT"])
creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])


def vhost(method, bucket, path, body=b""):
    host = f"{bucket}.{domain}:{end.port}"
    req = AWSRequest(method=method, url=f"http://{host}{path}", data=body)
    req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection(end.hostname, end.port, timeout=30)
    headers = dict(req.headers)
    headers["Host"] = host
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


s3 = client()
s3.create_bucket(Bucket="vhost")
st, _b = vhost("PUT", "vhost", "/hello.txt", b"virtual host")
assert st == 200, st
assert s3.get_object(Bucket="vhost", Key="hello.txt")["Body"].read() == b"virtual host"
st, body = vhost("GET", "vhost", "/hello.txt")
assert (st, body) == (200, b"virtual host"), (st, body)
st, body = vhost("GET", "vhost", "/?list-type=2")
assert st == 200 and b"<Key>hello.txt</Key>" in body, body

# SigV2 on a virtual host: a one-segment path is a key, signed as `/BUCKET/KEY`.
from botocore.auth import HmacV1Auth


def vhost_v2(method, bucket, path):
    host = f"{bucket}.{domain}:{end.port}"
    req = AWSRequest(method=method, url=f"http://{host}{path}")
    req.auth_path = f"/{bucket}{path}"
    HmacV1Auth(creds).add_auth(req)
    conn = http.client.HTTPConnection(end.hostname, end.port, timeout=30)
    headers = dict(req.headers)
    headers["Host"] = host
    conn.request(method, path, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


st, body = vhost_v2("GET", "vhost", "/hello.txt")
assert (st, body) == (200, b"virtual host"), (st, body)


def path_style(host, path):
    """A path-style GET sent to the server under another name (its host name, an alias)."""
    req = AWSRequest(method="GET", url=f"http://{host}{path}")
    req.headers["x-amz-content-sha256"] = hashlib.sha256(b"").hexdigest()
    S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection(end.hostname, end.port, timeout=30)
    headers = dict(req.headers)
    headers["Host"] = host
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


# Names outside the domain mean path style (they were taken for a bucket: NoSuchBucket).
for host in (f"myhost:{end.port}", f"alias.example.com:{end.port}", "myhost", f"localhost:{end.port}"):
    st, body = path_style(host, "/vhost/hello.txt")
    assert (st, body) == (200, b"virtual host"), (host, st, body)
    st, body = path_style(host, "/vhost?list-type=2")
    assert st == 200 and b"<Key>hello.txt</Key>" in body, (host, st, body)
# A fully qualified name's trailing dot changes nothing.
st, body = path_style(f"vhost.{domain}.:{end.port}", "/hello.txt")
assert (st, body) == (200, b"virtual host"), (st, body)
# The domain itself is path style too.
st, body = path_style(f"{domain}:{end.port}", "/vhost/hello.txt")
assert (st, body) == (200, b"virtual host"), (st, body)
print("OK")
