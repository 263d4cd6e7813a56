"""Run inside a mount namespace whose DATA/stores/local is a small tmpfs (see
gateway::a_server_starts_on_a_full_disk): fills the store through S3 until writes are refused,
stops the server, starts it again on the still-full disk, and checks it serves reads and
deletes. Usage: full_disk_restart.py FERRY_BIN DATA_DIR"""
import json
import os
import signal
import subprocess
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ferry, data = sys.argv[1], sys.argv[2]
env = dict(os.environ, FERRY_ACCESS_KEY="AKIAFULLRESTART00000", FERRY_SECRET_KEY="full-restart-secret-000000000000000000",
           FERRY_ADMIN_TOKEN="full-restart-token")


def start():
    try:
        os.remove(os.path.join(data, "serve.json"))
    except FileNotFoundError:
        pass
    log = open(os.path.join(data, "..", "serve.log"), "a")
    p = subprocess.Popen([ferry, "serve", "--data", data, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                         env=env, stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(600):
        if p.poll() is not None:
            raise AssertionError(f"ferry serve exited with {p.returncode}: " + open(os.path.join(data, "..", "serve.log")).read()[-2000:])
        try:
            info = json.load(open(os.path.join(data, "serve.json")))
            return p, boto3.client("s3", endpoint_url=info["s3"], region_name="us-east-1",
                                   aws_access_key_id=env["FERRY_ACCESS_KEY"], aws_secret_access_key=env["FERRY_SECRET_KEY"],
                                   config=Config(retries={"max_attempts": 1}))
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    raise AssertionError("ferry serve did not start")


p, s3 = start()
s3.create_bucket(Bucket="full")
keys = []
# Empty objects last: rows for the index (its write-ahead log) until even those find no room.
for size in (1 << 20, 64 << 10, 1 << 10, 0):
    body = os.urandom(size)
    while True:
        key = f"k{len(keys):05}"
        try:
            s3.put_object(Bucket="full", Key=key, Body=body)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "XFerryStorageFull", e.response
            break
        keys.append(key)
p.send_signal(signal.SIGTERM)
p.wait(60)
# Again on the still-full disk: it starts, serves reads, and deletes make room.
p, s3 = start()
assert len(s3.get_object(Bucket="full", Key=keys[0])["Body"].read()) == 1 << 20
for k in keys[:3]:
    s3.delete_object(Bucket="full", Key=k)
s3.put_object(Bucket="full", Key="after", Body=b"x" * 1024)
p.send_signal(signal.SIGTERM)
p.wait(60)
print("ok")
