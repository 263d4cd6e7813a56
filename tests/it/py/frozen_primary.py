"""Against a namespace bucket whose primary has stopped answering (SIGSTOP): every call gets
an answer well within the client's read timeout, with no retries, so a hang shows as a
ReadTimeoutError. Writes fail with 503; a GET of a key written before is served by the next
read target. argv: bucket, key written before, its expected body."""
import sys

from botocore.exceptions import ClientError

from common import client, error_code, status

bucket, old_key, old_body = sys.argv[1], sys.argv[2], sys.argv[3].encode()
s3 = client(read_timeout=40, connect_timeout=5, retries={"max_attempts": 1, "mode": "standard"})

import time
for n in range(3):
    t0 = time.time()
    try:
        s3.put_object(Bucket=bucket, Key=f"frozen/{n}", Body=b"x" * 100)
        raise AssertionError("a PUT to a frozen primary succeeded")
    except ClientError as e:
        assert status(e) == 503 and error_code(e) == "ServiceUnavailable", e.response
        print("put", n, error_code(e), round(time.time() - t0, 1), e.response["Error"].get("Message", ""))

got = s3.get_object(Bucket=bucket, Key=old_key)["Body"].read()
assert got == old_body, got
print("get served by the next read target")
