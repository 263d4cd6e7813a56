"""A TCP proxy whose first request carrying MARKER lands late: the bytes from the client
that hold MARKER are held HOLD seconds before they are passed on, and passed on even when
the client has given up and closed its connection meanwhile, as a stalled server (or a
proxy in front of it) may still finish a request its client abandoned. Other connections,
and the rest of that one, pass at once.

Usage: late_proxy.py TARGET_PORT MARKER HOLD. Prints the port it listens on."""
import socket
import sys
import threading
import time

target, marker, hold = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3])
held = threading.Event()


def upstream_of(client, up):
    """Client to upstream; then the upstream's write side is closed, its answer read."""
    try:
        while True:
            data = client.recv(65536)
            if not data:
                break
            if marker in data and not held.is_set():
                held.set()
                time.sleep(hold)
            up.sendall(data)
    except OSError:
        pass
    try:
        up.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def downstream_of(up, client):
    try:
        while True:
            data = up.recv(65536)
            if not data:
                break
            try:
                client.sendall(data)
            except OSError:
                pass
    except OSError:
        pass
    for s in (up, client):
        try:
            s.close()
        except OSError:
            pass


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(64)
print(server.getsockname()[1], flush=True)
while True:
    client, _ = server.accept()
    try:
        up = socket.create_connection(("127.0.0.1", target))
    except OSError:
        client.close()
        continue
    threading.Thread(target=upstream_of, args=(client, up), daemon=True).start()
    threading.Thread(target=downstream_of, args=(up, client), daemon=True).start()
