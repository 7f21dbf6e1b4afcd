"""Live upload ids for the fuzzer's upload operations, printed as KEY=value
lines: a presigned upload whose object is in the store (confirm), one without
(abort), and a multipart upload with every part uploaded (parts, complete).
Usage: seed.py BASE_URL TOKEN"""
import json
import sys
import urllib.request

base, token = sys.argv[1], sys.argv[2]
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
    "0000000a4944415478da63600000000200014873c0710000000049454e44ae426082"
)


def call(method, url, body=None, headers=None, raw=False):
    data = body if raw else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req) as resp:
        return resp.read(), resp.headers


def api(method, path, body):
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    return json.loads(call(method, base + path, body, auth)[0])


def put(signed, body):
    headers = {k: v for k, v in signed["headers"].items() if k != "content-length"}
    return call("PUT", signed["url"], body, headers, raw=True)[1]


channel = api("POST", "/channels", {"name": "fuzz uploads"})["id"]
presign = {"channel_id": channel, "file_name": "pixel.png", "content_type": "image/png", "size": len(PNG)}
confirm = api("POST", "/files/presign", presign)
put(confirm, PNG)
abort = api("POST", "/files/presign", presign)
size = 6 * 1024 * 1024
body = PNG + bytes(size - len(PNG))
multipart = api(
    "POST",
    "/files/multipart",
    {"channel_id": channel, "file_name": "big.png", "content_type": "image/png", "size": size},
)
offset = 0
for part in multipart["parts"]:
    length = int(part["headers"]["content-length"])
    put(part, body[offset : offset + length])
    offset += length
print(f"CONFIRM_UPLOAD_ID={confirm['upload_id']}")
print(f"ABORT_UPLOAD_ID={abort['upload_id']}")
print(f"MULTIPART_UPLOAD_ID={multipart['upload_id']}")
