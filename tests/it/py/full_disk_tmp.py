"""A write refused on a full disk leaves nothing in the store's tmp/: each retry of a
multipart completion that could not assemble its object left one more partial body there
until a restart, so freeing room could never catch up (a probe). ROOT is the store's root as
this process can reach it."""
import os
import sys

from botocore.exceptions import ClientError

from common import client, error_code, status

root = sys.argv[1]
s3 = client(retries={"max_attempts": 1})
B = "tmpleft"
s3.create_bucket(Bucket=B)


def leftovers():
    found = []
    for d, _, files in os.walk(os.path.join(root, ".ferry", "tmp")):
        found += [os.path.join(d, f) for f in files]
    return found


up = s3.create_multipart_upload(Bucket=B, Key="mp")["UploadId"]
parts = [os.urandom(5 << 20), os.urandom(5 << 20), os.urandom(1 << 20)]
etags = [s3.upload_part(Bucket=B, Key="mp", UploadId=up, PartNumber=n + 1, Body=p)["ETag"]
         for n, p in enumerate(parts)]
assert not leftovers(), leftovers()
# The disk filled but for 2 MiB, beside the store (another program's file).
filler = os.path.join(root, "filler")
st = os.statvfs(root)
free = st.f_bavail * st.f_frsize
with open(filler, "wb") as f:
    f.write(b"\0" * (free - (2 << 20)))
# Parts 1 and 3: their bytes are copied into a new file, which does not fit.
named = [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 3, "ETag": etags[2]}]
for _ in range(3):
    try:
        s3.complete_multipart_upload(Bucket=B, Key="mp", UploadId=up,
                                     MultipartUpload={"Parts": named})
        raise AssertionError("6 MiB fit in 2")
    except ClientError as e:
        assert (error_code(e), status(e)) == ("XFerryStorageFull", 507), e.response
    assert not leftovers(), leftovers()
# Room again: the same completion goes through, without a restart.
os.remove(filler)
s3.complete_multipart_upload(Bucket=B, Key="mp", UploadId=up, MultipartUpload={"Parts": named})
assert s3.get_object(Bucket=B, Key="mp")["Body"].read() == parts[0] + parts[2]
assert not leftovers(), leftovers()
print("ok")
