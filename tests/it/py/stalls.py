"""Clients that stop, against a server started with a short --client-timeout. Prints one line
per case: `silent closed`, `head closed`, `idle closed`, `body 400 RequestTimeout`, `lock ok`
(a PUT of a key waits out, not forever, a stalled conditional PUT of it), `xml 400
RequestTimeout` (a signed XML body that stops coming is given up, as any body is), or what happened instead (`... open` when the server kept
the connection for 30 s)."""
import base64
import hashlib
import socket
import threading

from common import HOST, client, code_of, signed_head

host, port = HOST.rsplit(":", 1)


def connect():
    return socket.create_connection((host, int(port)), timeout=30)


def closed(sock):
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return "closed"
    except socket.timeout:
        return "open"
    except OSError:
        return "closed"


def answer(sock):
    data = b""
    try:
        while b"\r\n\r\n" not in data or (b"<Error>" in data and b"</Error>" not in data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return "open"
    except OSError:
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return "closed"
    return f"{head.split(b' ', 2)[1].decode()} {code_of(body) or ''}".strip()


s = connect()
print("silent", closed(s), flush=True)

s = connect()
s.sendall(b"PUT /stalls/k HTTP/1.1\r\nHost: x\r\n")
print("head", closed(s), flush=True)

s = connect()
s.sendall(signed_head("GET", "/", 0, {}))
answer(s)
print("idle", closed(s), flush=True)

s3 = client()
s3.create_bucket(Bucket="stalls")
s = connect()
s.sendall(signed_head("PUT", "/stalls/k", 1000, {}) + b"x" * 10)
print("body", answer(s), flush=True)

s = connect()
s.sendall(signed_head("PUT", "/stalls/k", 1000, {"If-None-Match": "*"}) + b"x" * 10)
done = {}


def put():
    try:
        s3.put_object(Bucket="stalls", Key="k", Body=b"y" * 10)
        done["r"] = "ok"
    except Exception as e:  # noqa: BLE001
        done["r"] = f"failed: {e}"


t = threading.Thread(target=put)
t.start()
t.join(40)
print("lock", done.get("r", "waiting"), flush=True)

s = connect()
md5 = base64.b64encode(hashlib.md5(b"x" * 1000).digest()).decode()
s.sendall(signed_head("POST", "/stalls?delete", 1000, {"Content-MD5": md5}) + b"<Delete>")
s.settimeout(20)
said = "open"
data = b""
try:
    while b"</Error>" not in data:
        more = s.recv(65536)
        if not more:
            break
        data += more
except socket.timeout:
    pass
except OSError:
    said = "closed"
if data:
    head, _, body = data.partition(b"\r\n\r\n")
    said = f"{head.split(b' ', 2)[1].decode()} {code_of(body) or ''}".strip()
print("xml", said, flush=True)

# Browser forms without credentials, each trickling a byte of its fields every half second
# (never silent for --client-timeout): they held the few form slots for as long as they
# trickled, and a signed browser upload waited behind them. Their fields have
# --client-timeout in all now, and the upload goes through.
import time  # noqa: E402

import requests  # noqa: E402

stop = threading.Event()


def trickle():
    s = connect()
    b = "----trickle"
    s.sendall(
        f"POST /stalls HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: multipart/form-data; boundary={b}\r\n"
        f"Content-Length: 100000000\r\n\r\n--{b}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n".encode()
    )
    try:
        while not stop.is_set():
            s.sendall(b"x")
            time.sleep(0.5)
    except OSError:
        pass


trickles = [threading.Thread(target=trickle, daemon=True) for _ in range(8)]
for t in trickles:
    t.start()
time.sleep(1)
form = client(signature_version="s3v4").generate_presigned_post("stalls", "form.txt")
try:
    r = requests.post(form["url"], data=form["fields"], files={"file": ("f.txt", b"from a form")}, timeout=25)
    print("form", "ok" if r.status_code == 204 else f"{r.status_code}", flush=True)
except requests.exceptions.Timeout:
    print("form waiting", flush=True)
stop.set()
