"""minio-py against Ferry: buckets, objects, listing, and presigned GET and PUT (fetched with
urllib), including an expired presigned URL that must be refused."""
import io
import os
import time
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlparse

from minio import Minio

end = urlparse(os.environ["FERRY_ENDPOINT"])
m = Minio(end.netloc, access_key=os.environ["AWS_ACCESS_KEY_ID"],
          secret_key=os.environ["AWS_SECRET_ACCESS_KEY"], secure=False, region="us-east-1")
m.make_bucket("minio")
assert m.bucket_exists("minio")
data = b"hello from minio-py\n" * 1000
m.put_object("minio", "dir/a.txt", io.BytesIO(data), len(data), content_type="text/plain")
r = m.get_object("minio", "dir/a.txt")
assert r.read() == data
r.close()
r.release_conn()
st = m.stat_object("minio", "dir/a.txt")
assert st.size == len(data) and st.content_type == "text/plain", st
# A streamed upload of unknown length goes multipart in minio-py.
big = os.urandom(12 * 1024 * 1024)
m.put_object("minio", "dir/big.bin", io.BytesIO(big), -1, part_size=5 * 1024 * 1024)
r = m.get_object("minio", "dir/big.bin")
assert r.read() == big
r.close()
r.release_conn()
names = sorted(o.object_name for o in m.list_objects("minio", recursive=True))
assert names == ["dir/a.txt", "dir/big.bin"], names
# Presigned GET and PUT.
url = m.presigned_get_object("minio", "dir/a.txt", expires=timedelta(minutes=5))
assert urllib.request.urlopen(url).read() == data
put_url = m.presigned_put_object("minio", "dir/uploaded.txt", expires=timedelta(minutes=5))
req = urllib.request.Request(put_url, data=b"uploaded by URL", method="PUT")
assert urllib.request.urlopen(req).status == 200
r = m.get_object("minio", "dir/uploaded.txt")
assert r.read() == b"uploaded by URL"
r.close()
r.release_conn()
# An expired presigned URL is refused.
url = m.presigned_get_object("minio", "dir/a.txt", expires=timedelta(seconds=1))
time.sleep(2.5)
try:
    urllib.request.urlopen(url)
    raise AssertionError("an expired presigned URL was accepted")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code
    assert b"AccessDenied" in e.read()
m.remove_object("minio", "dir/a.txt")
assert "dir/a.txt" not in [o.object_name for o in m.list_objects("minio", recursive=True)]
print("OK")
