// Smoke test of the TypeScript client generated from openapi/openapi.json by
// openapi-typescript, called through openapi-fetch: dev login, channel,
// presign, the real PUT, confirm, messages, download and delete. Type-checked
// against the generated schema before it runs (tests/clients/run.sh).

import createClient from 'openapi-fetch';
import type { paths } from './schema.js';

declare const process: { argv: string[] };
const base = process.argv[2];
const body = new TextEncoder().encode('generated clients work\n');

function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Error(`failed: ${what}`);
}

const anonymous = createClient<paths>({ baseUrl: base });
const config = await anonymous.GET('/config');
check(config.data && config.data.max_file_size_bytes > body.length, 'client config');

const login = await anonymous.POST('/auth/dev-login', { body: { username: 'tsclient' } });
check(login.data, `dev login: ${JSON.stringify(login.error)}`);
const api = createClient<paths>({ baseUrl: base, headers: { authorization: `Bearer ${login.data.token}` } });

const channel = await api.POST('/channels', { body: { name: 'ts-general' } });
check(channel.data, 'channel');
const channelId = channel.data.id;

const presigned = await api.POST('/files/presign', {
  body: { channel_id: channelId, file_name: 'hello.txt', content_type: 'text/plain', size: body.length },
});
check(presigned.data, `presign: ${JSON.stringify(presigned.error)}`);
const headers = Object.fromEntries(Object.entries(presigned.data.headers).filter(([name]) => name !== 'content-length'));
const put = await fetch(presigned.data.url, { method: presigned.data.method, headers, body });
check(put.ok, `PUT to the store: ${put.status}`);

const confirmed = await api.POST('/files/uploads/{upload_id}/confirm', { params: { path: { upload_id: presigned.data.upload_id } } });
check(confirmed.response.status === 201 && confirmed.data, `confirm: ${JSON.stringify(confirmed.error)}`);
const file = confirmed.data;
check(file.file_size === body.length, 'file size');

const message = await api.POST('/channels/{channel_id}/messages', {
  params: { path: { channel_id: channelId } },
  body: { content: 'from typescript', file_ids: [file.id] },
});
check(message.data, 'message');
const page = await api.GET('/channels/{channel_id}/messages', { params: { path: { channel_id: channelId } } });
check(page.data && page.data.messages[0].id === message.data.id && page.data.messages[0].files[0].id === file.id, 'message list');

const link = await api.GET('/files/download/{file_id}', { params: { path: { file_id: file.id }, query: { redirect: false } } });
check(link.data && 'url' in link.data, `download link: ${JSON.stringify(link.error)}`);
const downloaded = new Uint8Array(await (await fetch(link.data.url)).arrayBuffer());
check(downloaded.length === body.length && downloaded.every((b, i) => b === body[i]), 'downloaded bytes');

const deleted = await api.DELETE('/files/{file_id}', { params: { path: { file_id: file.id } } });
check(deleted.response.status === 204, 'delete');
const gone = await api.GET('/files/{file_id}', { params: { path: { file_id: file.id } } });
check(gone.response.status === 404 && gone.error?.error.code === 'not_found', 'deleted file is gone');

console.log('typescript client: dev login, channel, presign, PUT, confirm, message, list, download, delete: ok');
