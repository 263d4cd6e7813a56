"""Against a namespace bucket whose primary refuses connections (stopped), reading from the
secondary after it: writes fail with 503, and what they left on the secondary (it took the
body while the primary refused it) is never served: GET, HEAD and tags of such a key, and a
listing that would show it, answer 503 rather than bytes the client was told were not
stored (an rclone re-run took them for copied). A key the secondary owes nothing is served.
argv: bucket, a key written before (body "v1"), a key the secondary is not owed."""
import sys

from botocore.exceptions import ClientError

from common import client, error_code, status

bucket, key, other = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = client(retries={"max_attempts": 1, "mode": "standard"})


def unavailable(what, call):
    try:
        r = call()
        raise AssertionError(f"{what} was answered: {r}")
    except ClientError as e:
        assert status(e) == 503, (what, e.response)


for k, body in [(key, b"v2 refused"), ("phantom/new", b"refused too")]:
    unavailable(f"PUT {k}", lambda: s3.put_object(Bucket=bucket, Key=k, Body=body))

unavailable("GET of an overwrite the primary refused", lambda: s3.get_object(Bucket=bucket, Key=key))
unavailable("HEAD of a new key the primary refused", lambda: s3.head_object(Bucket=bucket, Key="phantom/new"))
unavailable("tags of it", lambda: s3.get_object_tagging(Bucket=bucket, Key="phantom/new"))
unavailable("a listing that holds it", lambda: s3.list_objects_v2(Bucket=bucket))
unavailable("a listing under its prefix", lambda: s3.list_objects_v2(Bucket=bucket, Prefix="phantom/"))

# Keys the secondary owes nothing are still served from it.
assert s3.get_object(Bucket=bucket, Key=other)["Body"].read() == b"steady"
page = s3.list_objects_v2(Bucket=bucket, Prefix=other)
assert [o["Key"] for o in page.get("Contents", [])] == [other], page
print("fallback reads ok")
