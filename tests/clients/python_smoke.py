"""Smoke test of the Python client generated from openapi/openapi.json by
openapi-python-client: dev login, channel, presign, the real PUT, confirm,
messages, download and delete, all through the generated code (the PUT and the
download go to the object store with httpx, as a client would).

Usage: python3 python_smoke.py <dir holding the generated package> <base URL>
"""

import sys

sys.path.insert(0, sys.argv[1])

import httpx  # noqa: E402  (installed with openapi-python-client's runtime deps)
from chatgenius_client import AuthenticatedClient, Client  # noqa: E402
from chatgenius_client.api.auth import dev_login  # noqa: E402
from chatgenius_client.api.channels import create_channel  # noqa: E402
from chatgenius_client.api.client import client_config  # noqa: E402
from chatgenius_client.api.files import confirm_upload, delete_file, download_file, get_file, presign_upload  # noqa: E402
from chatgenius_client.api.messages import list_messages, post_message  # noqa: E402
from chatgenius_client.models import (  # noqa: E402
    CreateChannelRequest,
    DevLoginRequest,
    DownloadLinkBody,
    ErrorBody,
    FileInfo,
    PostMessageRequest,
    PresignRequest,
)

base = sys.argv[2]
body = b"generated clients work\n"

config = client_config.sync(client=Client(base_url=base))
assert config.max_file_size_bytes > len(body), config

login = dev_login.sync(client=Client(base_url=base), body=DevLoginRequest(username="pyclient"))
api = AuthenticatedClient(base_url=base, token=login.token)

channel = create_channel.sync(client=api, body=CreateChannelRequest(name="py-general"))
presigned = presign_upload.sync(
    client=api,
    body=PresignRequest(channel_id=channel.id, file_name="hello.txt", content_type="text/plain", size=len(body)),
)
headers = {k: v for k, v in presigned.headers.additional_properties.items() if k != "content-length"}
put = httpx.put(presigned.url, content=body, headers=headers)
assert put.status_code == 200, put.text

confirmed = confirm_upload.sync_detailed(client=api, upload_id=presigned.upload_id)
assert confirmed.status_code == 201, confirmed
file = confirmed.parsed
assert isinstance(file, FileInfo) and file.file_size == len(body), file

message = post_message.sync(client=api, channel_id=channel.id, body=PostMessageRequest(content="from python", file_ids=[file.id]))
page = list_messages.sync(client=api, channel_id=channel.id)
assert page.messages[0].id == message.id and page.messages[0].files[0].id == file.id, page

link = download_file.sync(client=api, file_id=file.id, redirect=False)
assert isinstance(link, DownloadLinkBody), link
downloaded = httpx.get(link.url)
assert downloaded.content == body, downloaded.content

deleted = delete_file.sync_detailed(client=api, file_id=file.id)
assert deleted.status_code == 204, deleted
gone = get_file.sync(client=api, file_id=file.id)
assert isinstance(gone, ErrorBody) and gone.error.code == "not_found", gone

print("python client: dev login, channel, presign, PUT, confirm, message, list, download, delete: ok")
