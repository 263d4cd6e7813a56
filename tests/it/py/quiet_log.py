"""Client mistakes the server must answer without logging them as its own errors: a
malformed XML body (whose content must not reach the log) and an operation Ferry does not
implement (501)."""
from common import client, signed

s3 = client()
s3.put_object(Bucket="quiet", Key="k", Body=b"x")
bad = b"<Tagging><TagSet><Tag><Key>a</Key><Value>TAGCONTENTNOTFORLOGS</Value></Tag>" * 200 + b"<oops"
st, _, body = signed("PUT", "/quiet/k?tagging", bad)
assert st == 400 and b"MalformedXML" in body, (st, body)
lifecycle = (b'<LifecycleConfiguration><Rule><ID>r</ID><Status>Enabled</Status><Filter></Filter>'
             b'<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>')
st, _, body = signed("PUT", "/quiet?lifecycle", lifecycle,
                     headers={"Content-MD5": __import__("base64").b64encode(
                         __import__("hashlib").md5(lifecycle).digest()).decode()})
assert st == 501, (st, body)
print("ok")
