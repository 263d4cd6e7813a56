"""An HTTP proxy that fails a share of the requests it forwards to an S3 endpoint.

Usage: fault_proxy.py UPSTREAM_URL RATE SEED STATS_FILE [--corrupt-first N] [--kms]
                      [--refuse-checksums] [--refuse-part-algorithm ALG]

Prints the port it listens on, then serves until killed. Of the requests it receives, a
share RATE fails: half of those are answered 503 SlowDown without reaching the upstream,
the other half are forwarded and then answered 500 InternalError (the upstream may have
done the work; the client does not know). The Host header is passed on unchanged, so
SigV4 signatures made for the proxy's address still verify upstream.

--corrupt-first N: the first N PUT bodies are forwarded with one byte flipped, damage on the
way that the client cannot see, which the upstream or the client's own checks must catch.

--refuse-checksums: a PUT or CreateMultipartUpload that carries an `x-amz-checksum-*` header
is answered 400 InvalidRequest without reaching the upstream, as an S3 implementation that
does not know the header might (counted as "refused").

--refuse-checksums-quietly: as --refuse-checksums, but answered 400 InvalidArgument "Invalid
argument." (a refusal that does not name the checksum, as some servers word one).

--refuse-part-algorithm ALG: an UploadPart checksummed with ALG (a header or a trailer of
that algorithm) is answered 400 InvalidRequest without reaching the upstream, as a server
that takes an upload's algorithm but not its parts' might (counted as "refused").

--hold-gets-while FILE: while FILE exists, a GET of an object waits before it is forwarded
(counted as "held").

--deny-lists-after N: bucket listings (GET of a bucket) after the first N are answered 403
AccessDenied without reaching the upstream, as when credentials are revoked mid-run.

--deny-lists-while FILE: with --deny-lists-after, only while FILE exists (an outage that
ends).

--full-while FILE: while FILE exists, a PUT of an object (or part) is answered 507 XMinioStorageFull without reaching
the upstream, as MinIO answers when its drives are full (counted as "full").

--hold-puts-while FILE --hold-key TEXT: while FILE exists, a PUT of an object whose path
holds TEXT waits before it is forwarded (counted as "held"): one slow object among quick ones.

--hold-parts-while FILE: while FILE exists, an UploadPart request waits before it is forwarded,
as over a link that stalls mid-upload (counted as "held").

--fail-part N: every UploadPart of part number N is answered 500 InternalError without
reaching the upstream (counted as "failed_parts"), a part the upstream never takes.

--mismatch-as-invalid-request: an upstream BadDigest answer is passed on as 400
InvalidRequest "checksum mismatch", as some S3 implementations word a checksum that does not
match (counted as "reworded").

Also counted: UploadPart requests that reach this point ("parts"), and those of them that
carry an `x-amz-checksum-*` header ("parts_checksummed").

--kms: answers look like those of S3 with SSE-KMS, where an object's ETag is not its MD5:
every plain ETag (in GET and HEAD headers and in listings) is replaced by another stable hex
value, and GET and HEAD answers say `x-amz-server-side-encryption: aws:kms`.
"""

import http.client
import json
import os
import hashlib
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

UPSTREAM = urlparse(sys.argv[1])
RATE = float(sys.argv[2])
RNG = random.Random(int(sys.argv[3]))
LOCK = threading.Lock()
STATS = sys.argv[4]
FLAGS = sys.argv[5:]
CORRUPT_FIRST = int(FLAGS[FLAGS.index("--corrupt-first") + 1]) if "--corrupt-first" in FLAGS else 0
KMS = "--kms" in FLAGS
REFUSE_CHECKSUMS = "--refuse-checksums" in FLAGS
REFUSE_QUIETLY = "--refuse-checksums-quietly" in FLAGS
REFUSE_PART_ALGORITHM = (
    FLAGS[FLAGS.index("--refuse-part-algorithm") + 1].lower() if "--refuse-part-algorithm" in FLAGS else None
)
MISMATCH_AS_INVALID = "--mismatch-as-invalid-request" in FLAGS
FULL_WHILE = FLAGS[FLAGS.index("--full-while") + 1] if "--full-while" in FLAGS else None
DENY_LISTS_WHILE = FLAGS[FLAGS.index("--deny-lists-while") + 1] if "--deny-lists-while" in FLAGS else None
HOLD_PARTS_WHILE = FLAGS[FLAGS.index("--hold-parts-while") + 1] if "--hold-parts-while" in FLAGS else None
HOLD_GETS_WHILE = FLAGS[FLAGS.index("--hold-gets-while") + 1] if "--hold-gets-while" in FLAGS else None
HOLD_PUTS_WHILE = FLAGS[FLAGS.index("--hold-puts-while") + 1] if "--hold-puts-while" in FLAGS else None
HOLD_KEY = FLAGS[FLAGS.index("--hold-key") + 1] if "--hold-key" in FLAGS else ""
FAIL_PART = FLAGS[FLAGS.index("--fail-part") + 1] if "--fail-part" in FLAGS else None
DENY_LISTS_AFTER = int(FLAGS[FLAGS.index("--deny-lists-after") + 1]) if "--deny-lists-after" in FLAGS else None
PLAIN_ETAG = re.compile(rb"<ETag>(&quot;|&#34;|\")([0-9a-fA-F]{32})(&quot;|&#34;|\")</ETag>")
COUNTS = {
    "forwarded": 0,
    "failed_before": 0,
    "failed_after": 0,
    "corrupted": 0,
    "refused": 0,
    "parts": 0,
    "parts_checksummed": 0,
    "reworded": 0,
    "lists": 0,
    "denied": 0,
    "full": 0,
    "held": 0,
    "failed_parts": 0,
}


def count(what):
    """Counts an outcome and rewrites the stats file (the test reads it at the end)."""
    with LOCK:
        COUNTS[what] += 1
        write_stats()


def write_stats():
    """Rewrites the stats file; the caller holds LOCK."""
    with open(STATS + ".tmp", "w") as f:
        json.dump(COUNTS, f)
    os.replace(STATS + ".tmp", STATS)


ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Error><Code>{code}</Code><Message>{message}</Message></Error>"
)


def corrupt(body):
    """Flips a byte of one of the first CORRUPT_FIRST PUT bodies."""
    with LOCK:
        if not body or COUNTS["corrupted"] >= CORRUPT_FIRST:
            return body
        COUNTS["corrupted"] += 1
        write_stats()
    damaged = bytearray(body)
    damaged[len(damaged) // 2] ^= 0xFF
    return bytes(damaged)


def kms_etag(md5_hex):
    """The stand-in for an SSE-KMS ETag: stable, hex, and not the MD5."""
    return hashlib.md5(b"kms:" + md5_hex.lower().encode()).hexdigest()


def kms_headers(headers):
    """Rewrites a GET or HEAD answer's headers as SSE-KMS would have them."""
    out = []
    for k, v in headers:
        if k.lower() == "etag" and re.fullmatch(r'"?[0-9a-fA-F]{32}"?', v):
            v = '"%s"' % kms_etag(v.strip('"'))
        out.append((k, v))
    out.append(("x-amz-server-side-encryption", "aws:kms"))
    return out


def kms_listing(data):
    """Rewrites the plain ETags of a listing."""
    return PLAIN_ETAG.sub(
        lambda m: b"<ETag>"
        + m.group(1)
        + kms_etag(m.group(2).decode()).encode()
        + m.group(3)
        + b"</ETag>",
        data,
    )


def roll():
    with LOCK:
        r = RNG.random()
    if r < RATE / 2:
        return "before"
    if r < RATE:
        return "after"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def fail(self, status, code, message="injected fault"):
        body = ERROR.format(code=code, message=message).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def handle_any(self):
        try:
            self.forward()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a test killed it)

    def forward(self):
        fault = roll()
        body = self.read_body()
        path = urlparse(self.path)
        if DENY_LISTS_AFTER is not None and self.command == "GET" and path.path.strip("/").count("/") == 0 \
                and "location" not in path.query and "versioning" not in path.query:
            with LOCK:
                n = COUNTS["lists"]
            count("lists")
            if n >= DENY_LISTS_AFTER and (DENY_LISTS_WHILE is None or os.path.exists(DENY_LISTS_WHILE)):
                count("denied")
                self.fail(403, "AccessDenied", "Access Denied")
                return
        if HOLD_GETS_WHILE and self.command == "GET" and "/" in path.path.strip("/") \
                and os.path.exists(HOLD_GETS_WHILE):
            count("held")
            while os.path.exists(HOLD_GETS_WHILE):
                time.sleep(0.02)
        if HOLD_PUTS_WHILE and self.command == "PUT" and HOLD_KEY in path.path \
                and os.path.exists(HOLD_PUTS_WHILE):
            count("held")
            while os.path.exists(HOLD_PUTS_WHILE):
                time.sleep(0.02)
        if FULL_WHILE and self.command == "PUT" and "/" in path.path.strip("/") and os.path.exists(FULL_WHILE):
            count("full")
            self.fail(507, "XMinioStorageFull", "Storage backend has reached its minimum free drive threshold.")
            return
        if (
            (REFUSE_CHECKSUMS or REFUSE_QUIETLY)
            and (self.command == "PUT" or self.path.endswith("?uploads"))
            and any(k.lower().startswith("x-amz-checksum-") for k in self.headers.keys())
        ):
            count("refused")
            if REFUSE_QUIETLY:
                self.fail(400, "InvalidArgument", "Invalid argument.")
            else:
                self.fail(400, "InvalidRequest", "x-amz-checksum-crc32c is not supported")
            return
        if (
            REFUSE_PART_ALGORITHM
            and self.command == "PUT"
            and "partNumber=" in self.path
            and any(
                k.lower() == f"x-amz-checksum-{REFUSE_PART_ALGORITHM}"
                or (k.lower() in ("x-amz-sdk-checksum-algorithm", "x-amz-trailer")
                    and REFUSE_PART_ALGORITHM in v.lower())
                for k, v in self.headers.items()
            )
        ):
            count("refused")
            self.fail(400, "InvalidRequest", f"parts checksummed with {REFUSE_PART_ALGORITHM} are not supported")
            return
        if FAIL_PART and self.command == "PUT" and re.search(rf"[?&]partNumber={FAIL_PART}(&|$)", self.path):
            count("failed_parts")
            self.fail(500, "InternalError", "We encountered an internal error. Please try again.")
            return
        if fault == "before":
            count("failed_before")
            self.fail(503, "SlowDown")
            return
        if self.command == "PUT":
            if "partNumber=" in self.path and "x-amz-copy-source" not in self.headers:
                if HOLD_PARTS_WHILE and os.path.exists(HOLD_PARTS_WHILE):
                    count("held")
                    while os.path.exists(HOLD_PARTS_WHILE):
                        time.sleep(0.02)
                count("parts")
                if any(k.lower().startswith("x-amz-checksum-") for k in self.headers.keys()):
                    count("parts_checksummed")
            body = corrupt(body)
        conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if fault == "after":
            count("failed_after")
            self.fail(500, "InternalError")
            return
        count("forwarded")
        if MISMATCH_AS_INVALID and resp.status == 400 and b"<Code>BadDigest</Code>" in data:
            count("reworded")
            self.fail(400, "InvalidRequest", "checksum mismatch")
            return
        headers = resp.getheaders()
        if KMS and self.command in ("GET", "HEAD") and resp.status in (200, 206):
            if b"<ListBucketResult" in data[:512] or b"<ListVersionsResult" in data[:512]:
                data = kms_listing(data)
            elif any(k.lower() == "etag" for k, _ in headers):
                headers = kms_headers(headers)
        self.send_response(resp.status)
        for k, v in headers:
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        else:
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
