"""A TCP proxy that can be cut: forwards 127.0.0.1:PORT (printed on stdout) to TARGET_PORT,
except while the file CUT exists: then it closes every connection it carries and refuses
new ones, as a database server that restarts or a network that drops does.

Usage: tcp_gate.py TARGET_PORT CUT"""
import os
import socket
import sys
import threading
import time

target, cut = int(sys.argv[1]), sys.argv[2]
live = set()
lock = threading.Lock()


def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.close()
        except OSError:
            pass


def cutter():
    while True:
        if os.path.exists(cut):
            with lock:
                for s in list(live):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
                live.clear()
        time.sleep(0.05)


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(64)
print(server.getsockname()[1], flush=True)
threading.Thread(target=cutter, daemon=True).start()
while True:
    client, _ = server.accept()
    if os.path.exists(cut):
        client.close()
        continue
    try:
        upstream = socket.create_connection(("127.0.0.1", target))
    except OSError:
        client.close()
        continue
    with lock:
        live.update((client, upstream))
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
