"""Shared setup for the Python client scripts: a boto3 client for the server under test."""
import http.client
import os
import xml.etree.ElementTree as ET
from urllib.parse import urlparse

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials


def client(**config):
    return boto3.client(
        "s3",
        endpoint_url=os.environ["FERRY_ENDPOINT"],
        config=Config(**config) if config else None,
    )


def error_code(exc):
    return exc.response.get("Error", {}).get("Code")


def status(exc):
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def expect_error(fn, code, http_status=None):
    from botocore.exceptions import ClientError

    try:
        fn()
    except ClientError as e:
        assert error_code(e) == code, f"expected {code}, got {error_code(e)}: {e.response}"
        if http_status is not None:
            assert status(e) == http_status, f"expected HTTP {http_status}, got {status(e)}"
        return e
    raise AssertionError(f"expected error {code}, but the call succeeded")


END = os.environ.get("FERRY_ENDPOINT", "")
HOST = urlparse(END).netloc
CREDS = Credentials(os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", ""))


class _Signer(S3SigV4Auth):
    """SigV4 with the payload hash given (botocore would hash the body itself, replacing an
    `x-amz-content-sha256` such as `STREAMING-UNSIGNED-PAYLOAD-TRAILER`)."""

    def __init__(self, payload_hash):
        super().__init__(CREDS, "s3", "us-east-1")
        self._payload_hash = payload_hash

    def payload(self, request):
        return self._payload_hash


def signed(method, path, body=b"", headers=None, payload_hash=None, send=None):
    """Signs a request for `path` (sent verbatim) and returns (status, headers, body). `send`
    replaces the body after signing (damage on the way)."""
    req = AWSRequest(method=method, url=END + path, data=body, headers=dict(headers or {}))
    _Signer(payload_hash or __import__("hashlib").sha256(body).hexdigest()).add_auth(req)
    conn = http.client.HTTPConnection(HOST, timeout=30)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for k, v in req.headers.items():
        conn.putheader(k, v)
    if "Content-Length" not in req.headers:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    if send is not None:
        body = send
    if body:
        conn.send(body)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


def streamed(path, data, chunk=65536, headers=None, method="PUT"):
    """Sends `data` as the classic SigV4 signed stream (STREAMING-AWS4-HMAC-SHA256-PAYLOAD:
    aws-chunked, every chunk signed, no trailer), as AWS SDK for Java v1 and minio-go over
    plain http do; returns (status, headers in lower case, body)."""
    import datetime
    import hashlib
    import hmac

    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    length = sum(len(f"{len(c):x};chunk-signature={'0' * 64}\r\n") + len(c) + 2 for c in chunks)
    head = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
            "Content-Length": str(length), **(headers or {})}
    req = AWSRequest(method=method, url=END + path, data=b"", headers=head)
    _Signer(mode).add_auth(req)
    amzdate = req.headers["X-Amz-Date"]
    scope = f"{amzdate[:8]}/us-east-1/s3/aws4_request"
    prev = req.headers["Authorization"].rsplit("Signature=", 1)[1]

    def h(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = h(h(h(h(("AWS4" + CREDS.secret_key).encode(), amzdate[:8]), "us-east-1"), "s3"), "aws4_request")
    body = b""
    for c in chunks:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amzdate, scope, prev,
                             hashlib.sha256(b"").hexdigest(), hashlib.sha256(c).hexdigest()])
        prev = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        body += f"{len(c):x};chunk-signature={prev}\r\n".encode() + c + b"\r\n"
    assert len(body) == length
    conn = http.client.HTTPConnection(HOST, timeout=30)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for k, v in req.headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(body)
    r = conn.getresponse()
    out = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, out


def signed_head(method, path, length, headers):
    """The bytes of a signed request's head for `path` announcing a body of `length` bytes
    (UNSIGNED-PAYLOAD), for tests that drive the connection themselves."""
    req = AWSRequest(method=method, url=END + path, data=b"", headers=dict(headers))
    _Signer("UNSIGNED-PAYLOAD").add_auth(req)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def code_of(data):
    try:
        return ET.fromstring(data).findtext("Code")
    except ET.ParseError:
        return None
