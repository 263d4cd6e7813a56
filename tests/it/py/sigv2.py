"""SigV2 (boto3's `signature_version='s3'`, and its presigned URLs for the global endpoint)
on path-style bucket requests: botocore signs the resource `/bucket/` and sends `/bucket`."""
import urllib.error
import urllib.request

from common import client

v4 = client()
v4.create_bucket(Bucket="twosig")
v4.put_object(Bucket="twosig", Key="r/ten", Body=b"0123456789")

v2 = client(signature_version="s3", retries={"max_attempts": 1})
keys = [o["Key"] for o in v2.list_objects_v2(Bucket="twosig")["Contents"]]
assert keys == ["r/ten"], keys
assert [o["Key"] for o in v2.list_objects(Bucket="twosig", Prefix="r/")["Contents"]] == ["r/ten"]
v2.head_bucket(Bucket="twosig")
v2.get_bucket_location(Bucket="twosig")
v2.get_bucket_versioning(Bucket="twosig")
assert v2.get_object(Bucket="twosig", Key="r/ten")["Body"].read() == b"0123456789"
v2.put_object(Bucket="twosig", Key="one", Body=b"1")
v2.create_bucket(Bucket="twosig-made")
v2.delete_bucket(Bucket="twosig-made")

for op, params in [
    ("list_objects_v2", {"Bucket": "twosig"}),
    ("get_bucket_location", {"Bucket": "twosig"}),
    ("get_object", {"Bucket": "twosig", "Key": "r/ten"}),
]:
    url = v2.generate_presigned_url(op, Params=params)
    assert "AWSAccessKeyId=" in url, url
    try:
        got = urllib.request.urlopen(url).status
    except urllib.error.HTTPError as e:
        got = f"{e.code} {e.read()[:200]!r}"
    assert got == 200, (op, got)

# Signers that sign the path as they send it (rclone's v2_auth, s3curl) are taken too.
import http.client
import os
from urllib.parse import urlparse

from botocore.auth import HmacV1Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

end = urlparse(os.environ["FERRY_ENDPOINT"])
creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
for path in ["/twosig", "/twosig?location", "/twosig?versioning"]:
    req = AWSRequest(method="GET", url=f"http://{end.netloc}{path}")
    req.auth_path = path.split("?")[0]
    HmacV1Auth(creds).add_auth(req)
    conn = http.client.HTTPConnection(end.hostname, end.port, timeout=30)
    conn.request("GET", path, headers=dict(req.headers))
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (path, r.status, body)

# A wrong secret is still refused.
bad = client(signature_version="s3", retries={"max_attempts": 1})
bad._request_signer._credentials.secret_key = "wrong" + bad._request_signer._credentials.secret_key
try:
    bad.list_objects_v2(Bucket="twosig")
    raise AssertionError("a wrong SigV2 signature was taken")
except Exception as e:  # noqa: BLE001
    assert "SignatureDoesNotMatch" in str(e), e
print("OK")
