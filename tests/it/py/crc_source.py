"""Fills BUCKET on a Ferry endpoint with objects that carry a CRC of all their bytes: `big`
uploaded in 5 MiB parts as a CRC32 FULL_OBJECT upload, `one` a single 9 MiB PUT with a CRC32 (boto3 computes CRC32C and
CRC64NVME only with awscrt), and `comp` in the same parts with a COMPOSITE CRC32. Prints {key: [algorithm, checksum]} as JSON."""
import base64
import json
import struct
import sys
import zlib

from common import client

s3 = client()
bucket = sys.argv[1]
s3.create_bucket(Bucket=bucket)
data = bytes((i * 31 + 7) % 251 for i in range(13 * 1024 * 1024 + 333))
up = s3.create_multipart_upload(Bucket=bucket, Key="big", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
done = []
step = 5 * 1024 * 1024
for n, at in enumerate(range(0, len(data), step), 1):
    p = s3.upload_part(Bucket=bucket, Key="big", UploadId=up["UploadId"], PartNumber=n,
                       Body=data[at:at + step], ChecksumAlgorithm="CRC32")
    done.append({"PartNumber": n, "ETag": p["ETag"], "ChecksumCRC32": p["ChecksumCRC32"]})
r = s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": done})
want = base64.b64encode(struct.pack(">I", zlib.crc32(data))).decode()
assert r["ChecksumCRC32"] == want and r["ChecksumType"] == "FULL_OBJECT", r
one = s3.put_object(Bucket=bucket, Key="one", Body=data[:9 * 1024 * 1024], ChecksumAlgorithm="CRC32")
# `comp`: the same bytes in the same parts, with a COMPOSITE CRC32 (of the part CRCs, "-3").
up = s3.create_multipart_upload(Bucket=bucket, Key="comp", ChecksumAlgorithm="CRC32", ChecksumType="COMPOSITE")
done = []
for n, at in enumerate(range(0, len(data), step), 1):
    p = s3.upload_part(Bucket=bucket, Key="comp", UploadId=up["UploadId"], PartNumber=n,
                       Body=data[at:at + step], ChecksumAlgorithm="CRC32")
    done.append({"PartNumber": n, "ETag": p["ETag"], "ChecksumCRC32": p["ChecksumCRC32"]})
comp = s3.complete_multipart_upload(Bucket=bucket, Key="comp", UploadId=up["UploadId"],
                                    MultipartUpload={"Parts": done})
assert comp["ChecksumCRC32"].endswith("-3") and comp["ChecksumType"] == "COMPOSITE", comp
print(json.dumps({"big": ["CRC32", r["ChecksumCRC32"]], "one": ["CRC32", one["ChecksumCRC32"]],
                  "comp": ["CRC32", comp["ChecksumCRC32"]]}))
