"""Puts, in buckets `psa` and `psb`, two objects of the same size uploaded in parts of other
sizes (so their ETags cannot be compared): `same` with the same bytes on both sides, `diff`
with one byte changed on `psb`. For `ferry verify --download`."""
from common import client

s3 = client()
size = 11 << 20
data = bytes(i % 251 for i in range(size))
other = data[:-1] + b"\0"
for bucket, first, bodies in [("psa", 5 << 20, {"same": data, "diff": data}),
                              ("psb", 6 << 20, {"same": data, "diff": other})]:
    s3.create_bucket(Bucket=bucket)
    for key, body in bodies.items():
        uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for n, (lo, hi) in enumerate([(0, first), (first, size)], start=1):
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=body[lo:hi])
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
