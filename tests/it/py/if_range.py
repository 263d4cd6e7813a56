"""If-Range: a range is served only while the validator still names the object; otherwise
the whole object (200), so a resumed download never joins two versions' bytes."""
from common import client, signed

s3 = client()
s3.create_bucket(Bucket="ifrange")
s3.put_object(Bucket="ifrange", Key="k", Body=b"0123456789")
head = s3.head_object(Bucket="ifrange", Key="k")
etag = head["ETag"]
date = head["ResponseMetadata"]["HTTPHeaders"]["last-modified"]


def get(validator, rng="bytes=0-1"):
    status, headers, body = signed("GET", "/ifrange/k", headers={"Range": rng, "If-Range": validator})
    return status, body


assert get(etag) == (206, b"01"), get(etag)
assert get(date) == (206, b"01"), get(date)
assert get('"deadbeef"') == (200, b"0123456789"), get('"deadbeef"')
assert get("W/" + etag) == (200, b"0123456789"), get("W/" + etag)
assert get("Mon, 01 Jan 2001 00:00:00 GMT") == (200, b"0123456789")
# A range past the end with a stale validator is the whole object, not 416.
assert get('"deadbeef"', "bytes=100-200") == (200, b"0123456789")
print("ok")
