"""A PUT whose client trickles its body (a byte every 0.2 s, never finishing in time): prints
`sending` once its first bytes are out, then the S3 error code the server answers with (or
`no answer` after 120 s). Usage: stalled_put.py /bucket/key"""
import select
import socket
import sys
import time

from common import HOST, code_of, signed_head

path = sys.argv[1]
host, port = HOST.rsplit(":", 1)
sock = socket.create_connection((host, int(port)), timeout=30)
sock.sendall(signed_head("PUT", path, 10 * 1024 * 1024, {}) + b"x" * 65536)
print("sending", flush=True)
deadline = time.time() + 120
while time.time() < deadline:
    readable, _, _ = select.select([sock], [], [], 0.2)
    if readable:
        break
    try:
        sock.sendall(b"x")
    except OSError:
        break
else:
    print("no answer", flush=True)
    sys.exit(1)
data = b""
try:
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if b"</Error>" in data or b"\r\n\r\n" in data and b"Content-Length: 0" in data:
            break
except OSError:
    pass
head, _, body = data.partition(b"\r\n\r\n")
status = head.split(b" ", 2)[1].decode() if head else "reset"
print(status, code_of(body) if body else "", flush=True)
