"""A write load that records every acknowledged operation, for crash tests.

usage: load.py put|delete BUCKET COUNT ACKLOG [PREFIX]
Each acknowledged PUT (key, md5) or DELETE (key) is appended to ACKLOG and fsynced before the
next request, so after a kill -9 of the server the log lists exactly what was acknowledged.
Runs until COUNT operations are done or the server goes away."""
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import BotoCoreError, ClientError
from common import client

mode, bucket, count, acklog = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
prefix = sys.argv[5] if len(sys.argv) > 5 else "k/"
s3 = client(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10)
log = open(acklog, "a")
# Every operation is logged as attempted before it is sent: one the server applied but never
# acknowledged (killed in between) may or may not have happened, and the checks allow both.
attempts = open(acklog + ".attempted", "a")
lock = __import__("threading").Lock()
gone = __import__("threading").Event()


def body(i):
    return (f"{prefix}object {i} ".encode() * (1 + i % 50))[: 100 + (i * 37) % 20000]


def one(i):
    key = f"{prefix}{i:05d}"
    if gone.is_set():
        return False
    with lock:
        attempts.write(key + "\n")
        attempts.flush()
    try:
        if mode == "put":
            data = body(i)
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            line = f"{key} {hashlib.md5(data).hexdigest()}\n"
        else:
            s3.delete_object(Bucket=bucket, Key=key)
            line = f"{key}\n"
    except BotoCoreError:
        gone.set()  # the server went away: stop, so the test is not left waiting
        return False
    except ClientError:
        return False
    with lock:
        log.write(line)
        log.flush()
        os.fsync(log.fileno())
    return True


with ThreadPoolExecutor(8) as pool:
    results = list(pool.map(one, range(count)))
print(sum(results))
