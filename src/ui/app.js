// ChatGenius browser client: dev login, channels, live messages, and file
// uploads straight to the object store (presign → PUT with progress →
// confirm). Plain modern JavaScript, no build step, served by the broker.

const $ = (selector) => document.querySelector(selector);

/** Everything the page knows; the DOM is drawn from it. */
const state = {
  token: sessionStorage.getItem('cg.token'),
  user: JSON.parse(sessionStorage.getItem('cg.user') || 'null'),
  config: null,
  channels: [],
  channelId: null,
  /** user id → username of the current channel's members. */
  names: new Map(),
  /** message id → message, current channel only. */
  messages: new Map(),
  /** Files chosen in the composer (see `newUpload`). */
  uploads: [],
  socket: null,
  socketRetry: 0,
  /** `id` of the last event frame handled: the stream resumes after it. */
  lastEventId: null,
};

// ---------------------------------------------------------------- API calls

/** An error the broker answered with its JSON error body, or a network failure. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'network_error', 'The server could not be reached. Check your connection.');
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error ?? {};
    if (response.status === 401 && state.token) signOut();
    throw new ApiError(response.status, error.code ?? 'unknown', error.message ?? `Request failed (${response.status})`);
  }
  return data;
}

// ------------------------------------------------------------ announcements

/** Tells screen readers (and, unless quiet, sighted users) what happened. */
function notify(text, { error = false, quiet = false } = {}) {
  const region = error ? $('#announce-error') : $('#announce');
  region.textContent = '';
  // A fresh text node after a tick makes repeated messages announce again.
  setTimeout(() => { region.textContent = text; }, 30);
  if (quiet) return;
  const item = document.createElement('li');
  item.className = error ? 'notice error' : 'notice';
  item.textContent = text;
  $('#notices').append(item);
  setTimeout(() => item.remove(), error ? 8000 : 4000);
}

function focusComposer() {
  $('#composer-input').focus();
}

// ----------------------------------------------------------------- helpers

function humanSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** MIME types of common extensions, for files the browser reports none for. */
const EXTENSION_TYPES = {
  txt: 'text/plain', md: 'text/markdown', csv: 'text/csv', json: 'application/json', pdf: 'application/pdf',
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  zip: 'application/zip', mp3: 'audio/mpeg', mp4: 'video/mp4', webm: 'video/webm',
};

function fileType(file) {
  if (file.type) return file.type.toLowerCase();
  const extension = file.name.includes('.') ? file.name.split('.').pop().toLowerCase() : '';
  return EXTENSION_TYPES[extension] ?? 'application/octet-stream';
}

function typeAllowed(type) {
  const [top] = type.split('/');
  return state.config.allowed_file_types.some((pattern) =>
    pattern === '*/*' || pattern === type || (pattern.endsWith('/*') && pattern.slice(0, -2) === top));
}

/** Why the file may not be uploaded, or null. Mirrors the broker's checks. */
function refusal(file) {
  const { max_file_size_bytes: max, max_file_size_mb: maxMb } = state.config;
  if (file.size === 0) return `${file.name} is empty.`;
  if (file.size > max) return `${file.name} is too large (${humanSize(file.size)}); files may be at most ${maxMb} MB.`;
  const type = fileType(file);
  if (!typeAllowed(type)) return `${file.name} is a file type that is not allowed here (${type}).`;
  return null;
}

/** A short badge naming the kind of file (fonts for emoji are not a given). */
function typeIcon(type = '') {
  if (type.startsWith('image/')) return 'IMG';
  if (type.startsWith('video/')) return 'VID';
  if (type.startsWith('audio/')) return 'AUD';
  if (type === 'application/pdf') return 'PDF';
  if (type.startsWith('text/')) return 'TXT';
  if (type === 'application/zip') return 'ZIP';
  return 'FILE';
}

function thumbnailable(type = '') {
  return type.startsWith('image/') && type !== 'image/svg+xml';
}

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// ------------------------------------------------------------------ session

async function signIn(username) {
  const login = await api('POST', '/auth/dev-login', { username });
  state.token = login.token;
  state.user = login.user;
  sessionStorage.setItem('cg.token', login.token);
  sessionStorage.setItem('cg.user', JSON.stringify(login.user));
  await start();
}

function signOut() {
  delete document.body.dataset.ready;
  state.token = null;
  state.user = null;
  sessionStorage.removeItem('cg.token');
  sessionStorage.removeItem('cg.user');
  state.socket?.close();
  state.socket = null;
  state.lastEventId = null;
  $('#app').hidden = true;
  $('#login').hidden = false;
}

async function start() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#whoami').textContent = `Signed in as ${state.user.username}`;
  await loadChannels();
  // The first frame (`ready`) fixes where the stream starts: pages loaded
  // after it hold everything before it, and the stream everything after.
  await connectEvents();
  const remembered = Number(sessionStorage.getItem('cg.channel'));
  const first = state.channels.find((c) => c.id === remembered) ?? state.channels[0];
  if (first) {
    await openChannel(first.id);
    focusComposer();
  } else {
    $('#channel-name').focus();
  }
  document.body.dataset.ready = 'true';
}

// ----------------------------------------------------------------- channels

async function loadChannels() {
  state.channels = (await api('GET', '/channels')).channels;
  renderChannels();
}

function renderChannels() {
  const list = $('#channel-list');
  list.replaceChildren(...state.channels.map((channel) => element('li', {},
    element('button', {
      type: 'button',
      'aria-current': channel.id === state.channelId ? 'true' : undefined,
      onclick: () => openChannel(channel.id).then(focusComposer),
      text: `# ${channel.name}`,
    }))));
  if (state.channels.length === 0) list.append(element('li', { class: 'empty', text: 'No channels yet.' }));
}

async function openChannel(channelId) {
  state.channelId = channelId;
  // Events of this channel arriving while the page loads land here first.
  state.messages = new Map();
  sessionStorage.setItem('cg.channel', String(channelId));
  const channel = state.channels.find((c) => c.id === channelId);
  $('#channel-title').textContent = channel ? `# ${channel.name}` : 'Channel';
  renderChannels();
  const [page, members] = await Promise.all([
    api('GET', `/channels/${channelId}/messages?limit=50`),
    api('GET', `/channels/${channelId}/members`),
  ]);
  if (state.channelId !== channelId) return; // another channel was picked meanwhile
  state.names = new Map(members.members.map((m) => [m.user.id, m.user.username]));
  // What arrived live during the load is newer than the page: keep it.
  for (const message of page.messages) {
    if (!state.messages.has(message.id)) state.messages.set(message.id, message);
  }
  const list = $('#messages');
  list.replaceChildren(...[...state.messages.values()].sort((a, b) => a.id - b.id).map(renderMessage));
  restoreResumable();
  list.parentElement.scrollTop = list.parentElement.scrollHeight;
}

// ----------------------------------------------------------------- messages

/** Adds or redraws a message of the current channel. */
function upsertMessage(message) {
  if (message.channel_id !== state.channelId) return;
  state.messages.set(message.id, message);
  const drawn = renderMessage(message);
  const existing = document.getElementById(`message-${message.id}`);
  if (existing) {
    existing.replaceWith(drawn);
    return;
  }
  const list = $('#messages');
  const later = [...list.children].find((li) => Number(li.dataset.id) > message.id);
  list.insertBefore(drawn, later ?? null);
  list.parentElement.scrollTop = list.parentElement.scrollHeight;
}

function renderMessage(message) {
  const own = message.user_id === state.user.id;
  const author = state.names.get(message.user_id) ?? `user ${message.user_id}`;
  const when = new Date(message.created_at);
  return element('li', { id: `message-${message.id}`, class: 'message', 'data-id': message.id },
    element('div', { class: 'meta' },
      element('strong', { text: author }),
      element('time', { datetime: message.created_at, text: when.toLocaleTimeString() }),
      own ? element('button', {
        type: 'button',
        class: 'secondary',
        'aria-label': 'Add file to this message',
        onclick: () => pickFileForMessage(message.id),
        text: 'Add file',
      }) : null),
    message.content ? element('p', { class: 'content', text: message.content }) : null,
    message.files.length ? element('ul', { class: 'attachments', 'aria-label': 'Attachments' },
      ...message.files.map((file) => renderAttachment(file))) : null);
}

/** One attached file: icon, name, size, thumbnail, download and (owner) delete. */
function renderAttachment(file) {
  const own = file.uploaded_by === state.user.id;
  const status = element('span', { class: 'status', role: 'status' });
  const download = element('button', {
    type: 'button',
    class: 'secondary',
    'aria-label': `Download ${file.file_name}`,
    text: 'Download',
  });
  download.addEventListener('click', () => downloadFile(file, download, status));
  const item = element('li', { class: 'attachment', id: `file-${file.id}`, 'data-file-id': file.id },
    element('span', { class: 'type-icon', 'aria-hidden': 'true', text: typeIcon(file.content_type) }),
    element('span', { class: 'name', text: file.file_name }),
    element('span', { class: 'size', text: humanSize(file.file_size ?? 0) }),
    download,
    own ? element('button', {
      type: 'button',
      class: 'danger',
      'aria-label': `Delete ${file.file_name}`,
      onclick: (event) => deleteFile(file, event.currentTarget),
      text: 'Delete',
    }) : null,
    status);
  if (thumbnailable(file.content_type)) loadThumbnail(file, item);
  return item;
}

async function loadThumbnail(file, item) {
  try {
    const link = await api('GET', `/files/download/${file.id}?redirect=false&inline=true`);
    const image = element('img', { class: 'thumb', alt: `Preview of ${file.file_name}`, src: link.url });
    image.addEventListener('error', () => image.replaceWith(element('span', { class: 'error', text: 'Preview unavailable' })));
    item.prepend(image);
  } catch {
    item.prepend(element('span', { class: 'error', text: 'Preview unavailable' }));
  }
}

async function downloadFile(file, button, status) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.textContent = 'Preparing…';
  status.replaceChildren();
  try {
    const link = await api('GET', `/files/download/${file.id}?redirect=false`);
    // The link forces `Content-Disposition: attachment`; the page stays.
    element('a', { href: link.url, rel: 'noopener' }).click();
    notify(`Downloading ${file.file_name}`, { quiet: true });
  } catch (error) {
    const retry = element('button', {
      type: 'button',
      class: 'secondary',
      'aria-label': `Retry downloading ${file.file_name}`,
      text: 'Retry',
      onclick: () => downloadFile(file, button, status).then(() => button.focus()),
    });
    status.replaceChildren(element('span', { class: 'error', text: `Download failed: ${error.message}` }), ' ', retry);
    notify(`Download of ${file.file_name} failed: ${error.message}`, { error: true });
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = 'Download';
  }
}

async function deleteFile(file, button) {
  button.disabled = true;
  try {
    await api('DELETE', `/files/${file.id}`);
    removeFile(file.message_id, file.id);
    notify(`${file.file_name} deleted`);
  } catch (error) {
    button.disabled = false;
    notify(`Could not delete ${file.file_name}: ${error.message}`, { error: true });
  }
  focusComposer();
}

function removeFile(messageId, fileId) {
  const message = state.messages.get(messageId);
  if (message) upsertMessage({ ...message, files: message.files.filter((f) => f.id !== fileId) });
  else document.getElementById(`file-${fileId}`)?.remove();
}

async function sendMessage() {
  if (!state.channelId) return;
  const input = $('#composer-input');
  const attached = composerUploads().filter((u) => u.messageId === null);
  const busy = attached.filter((u) => u.status !== 'done');
  if (busy.length) {
    notify('Wait for the uploads to finish, or remove the ones that failed.', { error: true });
    return;
  }
  const content = input.value.trim();
  const fileIds = attached.map((u) => u.file_info.id);
  if (!content && fileIds.length === 0) return;
  $('#send').disabled = true;
  try {
    const message = await api('POST', `/channels/${state.channelId}/messages`, { content, file_ids: fileIds });
    upsertMessage(message);
    input.value = '';
    for (const upload of attached) upload.release();
    state.uploads = state.uploads.filter((u) => !attached.includes(u));
    renderUploads();
    notify(fileIds.length ? `Message sent with ${fileIds.length} file${fileIds.length > 1 ? 's' : ''}` : 'Message sent', { quiet: true });
  } catch (error) {
    notify(`Message not sent: ${error.message}`, { error: true });
  } finally {
    $('#send').disabled = false;
    focusComposer();
  }
}

// ------------------------------------------------------------------ uploads

/** Parts of one multipart upload in flight at once. */
const PART_CONCURRENCY = 3;
/** Where multipart uploads are remembered so a reloaded page can resume them. */
const RESUME_KEY = 'cg.resume';

/**
 * One file on its way: validated, presigned, PUT straight to the object
 * store with progress, then confirmed. `status` is one of queued, uploading,
 * confirming, done, error, paused (a multipart upload found after a reload,
 * waiting for its file); `stage` remembers where a single-PUT upload failed so
 * a retry resumes there. Files above the server's multipart threshold go up
 * in parts (`multipart`).
 */
function newUpload(file, { messageId = null, channelId = state.channelId, multipart = null, status = 'queued' } = {}) {
  return {
    key: crypto.randomUUID(),
    file,
    channelId,
    messageId,
    status,
    stage: 'presign',
    progress: 0,
    error: null,
    presigned: null,
    multipart,
    xhrs: new Set(),
    file_info: null,
    preview: file instanceof Blob && thumbnailable(fileType(file)) ? URL.createObjectURL(file) : null,
    release() {
      if (this.preview) URL.revokeObjectURL(this.preview);
    },
  };
}

function addFiles(files, messageId = null) {
  if (!state.channelId) {
    notify('Pick a channel first.', { error: true });
    return;
  }
  for (const file of files) {
    const why = refusal(file);
    if (why) {
      notify(why, { error: true });
      continue;
    }
    const upload = newUpload(file, { messageId });
    state.uploads.push(upload);
    runUpload(upload);
  }
  renderUploads();
}

function uploadBody(upload) {
  const body = {
    channel_id: upload.channelId,
    file_name: upload.file.name,
    content_type: fileType(upload.file),
    size: upload.file.size,
  };
  if (upload.messageId !== null) body.message_id = upload.messageId;
  return body;
}

/** Runs (or resumes) an upload until it is confirmed or fails. */
async function runUpload(upload) {
  upload.status = 'uploading';
  upload.error = null;
  updateUpload(upload);
  notify(`Uploading ${upload.file.name}`, { quiet: true });
  try {
    const inParts = upload.multipart || upload.file.size > state.config.multipart_threshold_bytes;
    upload.file_info = inParts ? await runMultipart(upload) : await runSingle(upload);
    upload.status = 'done';
    upload.progress = 1;
    updateUpload(upload);
    notify(`${upload.file.name} uploaded`);
    if (upload.messageId !== null) {
      state.uploads = state.uploads.filter((u) => u !== upload);
      renderUploads();
      upload.release();
    }
  } catch (error) {
    if (upload.status === 'canceled') return;
    for (const xhr of upload.xhrs) xhr.abort();
    upload.status = 'error';
    upload.error = error.message;
    if (error.code === 'upload_not_pending' || error.code === 'object_missing' || error.code === 'size_mismatch') {
      upload.stage = error.code === 'object_missing' ? 'put' : 'presign';
      if (error.code === 'upload_not_pending' && upload.multipart) {
        forgetResume(upload.multipart.id);
        upload.multipart = null;
      }
    }
    updateUpload(upload);
    notify(`Upload of ${upload.file.name} failed: ${error.message}`, { error: true });
    if (upload.messageId === null) focusComposer();
  }
}

/** One presigned PUT of the whole file, then confirm. */
async function runSingle(upload) {
  const fresh = upload.presigned && Date.parse(upload.presigned.expires_at) - Date.now() > 10_000;
  if (upload.stage === 'presign' || (upload.stage === 'put' && !fresh)) {
    if (upload.presigned) abortOnBroker(upload.presigned.upload_id);
    upload.stage = 'presign';
    upload.presigned = await api('POST', '/files/presign', uploadBody(upload));
    upload.stage = 'put';
  }
  if (upload.stage === 'put') {
    await sendBytes(upload, upload.presigned, upload.file, (loaded) => {
      upload.progress = loaded / upload.file.size;
      updateUpload(upload);
    });
    upload.stage = 'confirm';
  }
  upload.status = 'confirming';
  updateUpload(upload);
  return api('POST', `/files/uploads/${upload.presigned.upload_id}/confirm`);
}

/** Bytes in part `n` (1-based) of a multipart upload. */
function partLength(m, size, n) {
  return n < m.partCount ? m.partSize : size - (m.partCount - 1) * m.partSize;
}

/**
 * A multipart upload: start it (or, resuming, ask the broker what the store
 * already holds), PUT the missing parts a few at a time, then complete.
 * Finished parts' ETags are remembered locally, so a reload loses nothing.
 */
async function runMultipart(upload) {
  const size = upload.file.size;
  let m = upload.multipart;
  if (!m) {
    const started = await api('POST', '/files/multipart', uploadBody(upload));
    m = {
      id: started.upload_id,
      partSize: started.part_size,
      partCount: started.part_count,
      urls: new Map(started.parts.map((p) => [p.part_number, p])),
      urlsExpire: Date.parse(started.expires_at),
      etags: new Map(),
    };
    upload.multipart = m;
    saveResume(upload);
  } else {
    const listing = await api('POST', `/files/uploads/${m.id}/parts`, { part_numbers: [] });
    m.partSize = listing.part_size;
    m.partCount = listing.part_count;
    m.urls = new Map();
    m.urlsExpire = 0;
    const stored = new Map(listing.uploaded.map((p) => [p.part_number, p]));
    for (const n of [...m.etags.keys()]) {
      if (stored.get(n)?.size !== partLength(m, size, n)) m.etags.delete(n);
    }
    for (const part of listing.uploaded) {
      if (part.etag && part.size === partLength(m, size, part.part_number)) m.etags.set(part.part_number, part.etag);
    }
  }
  m.loaded = new Map();
  const todo = [];
  for (let n = 1; n <= m.partCount; n += 1) if (!m.etags.has(n)) todo.push(n);
  const showProgress = () => {
    let sent = 0;
    for (const n of m.etags.keys()) sent += partLength(m, size, n);
    for (const loaded of m.loaded.values()) sent += loaded;
    upload.progress = Math.min(1, sent / size);
    updateUpload(upload);
  };
  showProgress();
  const worker = async () => {
    for (let n = todo.shift(); n !== undefined; n = todo.shift()) {
      await uploadPart(upload, n, todo, showProgress);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PART_CONCURRENCY, todo.length) }, worker));
  upload.status = 'confirming';
  updateUpload(upload);
  const parts = [...m.etags].sort((a, b) => a[0] - b[0]).map(([part_number, etag]) => ({ part_number, etag }));
  const file = await api('POST', `/files/uploads/${m.id}/complete`, { parts });
  forgetResume(m.id);
  return file;
}

async function uploadPart(upload, n, queued, showProgress) {
  const m = upload.multipart;
  if (!m.urls.has(n) || Date.now() > m.urlsExpire - 10_000) {
    const wanted = [n, ...queued.slice(0, 19)];
    const listing = await api('POST', `/files/uploads/${m.id}/parts`, { part_numbers: wanted });
    if (Date.now() > m.urlsExpire - 10_000) m.urls = new Map();
    m.urlsExpire = Date.parse(listing.expires_at);
    for (const part of listing.parts) m.urls.set(part.part_number, part);
  }
  const from = (n - 1) * m.partSize;
  const bytes = upload.file.slice(from, from + partLength(m, upload.file.size, n));
  const etag = await sendBytes(upload, m.urls.get(n), bytes, (loaded) => {
    m.loaded.set(n, loaded);
    showProgress();
  });
  if (!etag) {
    throw new ApiError(0, 'no_etag', 'The storage did not reveal the part\'s ETag; its CORS rules must expose it.');
  }
  m.loaded.delete(n);
  m.etags.set(n, etag.replaceAll('"', ''));
  saveResume(upload);
  showProgress();
}

/** PUTs `body` to a presigned request, reporting progress; resolves to the ETag. */
function sendBytes(upload, request, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    upload.xhrs.add(xhr);
    const done = () => upload.xhrs.delete(xhr);
    xhr.open(request.method, request.url);
    for (const [name, value] of Object.entries(request.headers)) {
      // Browsers compute these themselves and refuse to be told.
      if (!['content-length', 'host'].includes(name.toLowerCase())) xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded);
    });
    xhr.addEventListener('load', () => {
      done();
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(body.size);
        resolve(xhr.getResponseHeader('ETag'));
        return;
      }
      const expired = xhr.status === 403 && /expired/i.test(xhr.responseText);
      if (expired) {
        upload.stage = 'presign';
        if (upload.multipart) upload.multipart.urlsExpire = 0;
      }
      reject(new ApiError(xhr.status, 'storage_refused', expired
        ? 'The upload link expired; retry to get a new one.'
        : `The storage refused the upload (HTTP ${xhr.status}).`));
    });
    xhr.addEventListener('error', () => {
      done();
      reject(new ApiError(0, 'network_error', 'The upload was interrupted by a network error.'));
    });
    xhr.addEventListener('abort', () => {
      done();
      reject(new ApiError(0, 'canceled', 'Canceled'));
    });
    xhr.send(body);
  });
}

function abortOnBroker(uploadId) {
  if (uploadId) api('DELETE', `/files/uploads/${uploadId}`).catch(() => {});
}

// Multipart uploads survive a reload: what is needed to resume is kept in
// localStorage until the upload completes, is canceled, or is found gone.

function savedResumes() {
  try {
    return JSON.parse(localStorage.getItem(RESUME_KEY) ?? '[]');
  } catch {
    return [];
  }
}

function saveResume(upload) {
  const m = upload.multipart;
  const entry = {
    user_id: state.user.id,
    upload_id: m.id,
    channel_id: upload.channelId,
    message_id: upload.messageId,
    name: upload.file.name,
    size: upload.file.size,
    type: fileType(upload.file),
    last_modified: upload.file.lastModified,
    part_size: m.partSize,
    part_count: m.partCount,
    etags: Object.fromEntries(m.etags),
  };
  const others = savedResumes().filter((e) => e.upload_id !== m.id);
  localStorage.setItem(RESUME_KEY, JSON.stringify([...others, entry]));
}

function forgetResume(uploadId) {
  localStorage.setItem(RESUME_KEY, JSON.stringify(savedResumes().filter((e) => e.upload_id !== uploadId)));
}

/** Paused rows for this channel's unfinished multipart uploads. */
function restoreResumable() {
  const known = new Set(state.uploads.map((u) => u.multipart?.id));
  for (const entry of savedResumes()) {
    if (entry.user_id !== state.user.id || entry.channel_id !== state.channelId || known.has(entry.upload_id)) continue;
    const file = { name: entry.name, size: entry.size, type: entry.type, lastModified: entry.last_modified };
    const multipart = {
      id: entry.upload_id,
      partSize: entry.part_size,
      partCount: entry.part_count,
      urls: new Map(),
      urlsExpire: 0,
      etags: new Map(Object.entries(entry.etags).map(([n, etag]) => [Number(n), etag])),
    };
    const upload = newUpload(file, { messageId: entry.message_id, channelId: entry.channel_id, multipart, status: 'paused' });
    upload.progress = [...multipart.etags.keys()].reduce((sum, n) => sum + partLength(multipart, entry.size, n), 0) / entry.size;
    state.uploads.push(upload);
  }
  renderUploads();
}

/** A paused upload continues once the user picks the same file again. */
let resuming = null;
function pickFileToResume(upload) {
  resuming = upload;
  $('#resume-file-input').click();
}

function resumeWith(upload, file) {
  const same = file.name === upload.file.name && file.size === upload.file.size && file.lastModified === upload.file.lastModified;
  if (!same) {
    notify(`That is not ${upload.file.name} (${humanSize(upload.file.size)}); pick the same file to resume.`, { error: true });
    return;
  }
  upload.file = file;
  upload.preview = thumbnailable(fileType(file)) ? URL.createObjectURL(file) : null;
  renderUploads();
  runUpload(upload);
}

/** Cancels an upload in progress (or removes a finished one) from the composer. */
async function removeUpload(upload) {
  const wasDone = upload.status === 'done';
  upload.status = 'canceled';
  for (const xhr of upload.xhrs) xhr.abort();
  state.uploads = state.uploads.filter((u) => u !== upload);
  renderUploads();
  upload.release();
  focusComposer();
  const uploadId = upload.multipart?.id ?? upload.presigned?.upload_id;
  if (upload.multipart) forgetResume(upload.multipart.id);
  try {
    if (wasDone) await api('DELETE', `/files/${upload.file_info.id}`);
    else if (uploadId) await api('DELETE', `/files/uploads/${uploadId}`);
  } catch {
    // Whatever is left is swept when the upload expires.
  }
  notify(wasDone ? `${upload.file.name} removed` : `Upload of ${upload.file.name} canceled`);
}

/** The composer's uploads: this channel's. */
function composerUploads() {
  return state.uploads.filter((u) => u.channelId === state.channelId);
}

function renderUploads() {
  const list = $('#previews');
  list.replaceChildren(...composerUploads().map(renderUpload));
  showAttachBusy();
}

/** The paperclip shows (and tells) when uploads are under way. */
function showAttachBusy() {
  const busy = state.uploads.some((u) => ['queued', 'uploading', 'confirming'].includes(u.status));
  const attach = $('#attach');
  attach.classList.toggle('busy', busy);
  attach.setAttribute('aria-busy', String(busy));
  attach.title = busy ? 'Attach files (uploads in progress)' : 'Attach files';
}

/** The composer's row for one file (FilePreview + FileUploadProgress). */
function renderUpload(upload) {
  const name = upload.file.name;
  const row = element('li', { class: 'preview', id: `upload-${upload.key}`, 'data-status': upload.status },
    upload.preview ? element('img', { class: 'thumb', src: upload.preview, alt: `Preview of ${name}` })
      : element('span', { class: 'type-icon', 'aria-hidden': 'true', text: typeIcon(fileType(upload.file)) }),
    element('span', { class: 'info' },
      element('span', { class: 'name', text: name }),
      element('span', { class: 'size', text: humanSize(upload.file.size) }),
      element('span', { class: 'state' }),
      element('span', { class: 'error' })),
    element('span', { class: 'actions' },
      element('button', {
        type: 'button',
        class: 'secondary retry',
        hidden: true,
        'aria-label': `Retry uploading ${name}`,
        onclick: () => runUpload(upload),
        text: 'Retry',
      }),
      element('button', {
        type: 'button',
        class: 'secondary resume',
        hidden: true,
        'aria-label': `Resume uploading ${name}`,
        onclick: () => pickFileToResume(upload),
        text: 'Resume',
      }),
      element('button', {
        type: 'button',
        class: 'danger remove',
        onclick: () => removeUpload(upload),
      })),
    element('progress', { max: '100', value: '0', 'aria-label': `Upload progress of ${name}` }));
  fillUpload(row, upload);
  return row;
}

/** Redraws an upload's changing parts in place (focus stays where it is). */
function updateUpload(upload) {
  const row = document.getElementById(`upload-${upload.key}`);
  if (row) fillUpload(row, upload);
  showAttachBusy();
}

function fillUpload(row, upload) {
  const name = upload.file.name;
  const percent = Math.round(upload.progress * 100);
  row.dataset.status = upload.status;
  const progress = row.querySelector('progress');
  progress.value = percent;
  progress.setAttribute('aria-valuetext', `${percent}%`);
  progress.hidden = upload.status === 'done' || upload.status === 'error';
  const parts = upload.multipart ? ` (${upload.multipart.partCount} parts)` : '';
  const label = {
    queued: 'Waiting…',
    uploading: `Uploading… ${percent}%${parts}`,
    confirming: 'Checking…',
    done: upload.messageId === null ? 'Ready to send' : 'Added to the message',
    error: 'Upload failed',
    paused: `Paused at ${percent}%: pick the same file again to resume`,
  }[upload.status] ?? '';
  row.querySelector('.state').textContent = label;
  row.querySelector('.error').textContent = upload.error ?? '';
  row.querySelector('.retry').hidden = upload.status !== 'error';
  row.querySelector('.resume').hidden = upload.status !== 'paused';
  const remove = row.querySelector('.remove');
  const inFlight = ['uploading', 'confirming', 'queued', 'paused'].includes(upload.status);
  remove.textContent = inFlight ? 'Cancel' : 'Remove';
  remove.setAttribute('aria-label', `${inFlight ? 'Cancel upload of' : 'Remove'} ${name}`);
}

/** "Add file" on one's own message: upload straight into it. */
let targetMessage = null;
function pickFileForMessage(messageId) {
  targetMessage = messageId;
  $('#message-file-input').click();
}

// ------------------------------------------------------------------- events

/**
 * Opens the event stream, resuming after the last event seen; resolves on
 * the first frame (or when the attempt fails). Reconnects with backoff and
 * shows "Reconnecting…" while the stream is down.
 */
function connectEvents() {
  if (!state.token) return Promise.resolve();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const after = state.lastEventId === null ? '' : `?after=${state.lastEventId}`;
  const socket = new WebSocket(`${scheme}://${location.host}/ws${after}`, ['bearer', state.token]);
  state.socket = socket;
  return new Promise((opened) => {
    socket.addEventListener('message', (frame) => {
      let event;
      try {
        event = JSON.parse(frame.data);
      } catch (error) {
        console.warn('bad event', error);
        return;
      }
      if (event.type === 'ready' || event.type === 'resync_required') {
        state.socketRetry = 0;
        $('#connection').hidden = true;
        const resync = event.type === 'resync_required' && state.lastEventId !== null;
        state.lastEventId = event.id;
        if (resync) reload().catch(() => {});
        opened();
        return;
      }
      // At least once: a frame already handled (same or older id) is dropped.
      if (state.lastEventId !== null && event.id <= state.lastEventId) return;
      state.lastEventId = event.id;
      handleEvent(event);
    });
    socket.addEventListener('close', () => {
      opened();
      if (state.socket !== socket || !state.token) return;
      $('#connection').hidden = false;
      // A socket ends with its token: an expired session signs out (api() does on 401).
      api('GET', '/auth/me').catch(() => {});
      state.socketRetry += 1;
      const backoff = Math.min(10_000, 250 * 2 ** state.socketRetry);
      setTimeout(connectEvents, backoff / 2 + Math.random() * backoff / 2);
    });
  });
}

/** Reloads channels and the open channel (after `resync_required`). */
async function reload() {
  await loadChannels();
  if (state.channelId && state.channels.some((c) => c.id === state.channelId)) await openChannel(state.channelId);
}

function handleEvent(event) {
  switch (event.type) {
    case 'message_created':
    case 'message_updated':
      upsertMessage(event.message);
      break;
    case 'file_upload_complete': {
      const message = state.messages.get(event.message_id);
      if (message && !message.files.some((f) => f.id === event.file.id)) {
        upsertMessage({ ...message, files: [...message.files, event.file] });
      }
      break;
    }
    case 'file_deleted':
      if (event.channel_id === state.channelId) removeFile(event.message_id, event.file_id);
      break;
    case 'member_joined':
    case 'member_left':
      if (event.user_id === state.user.id) {
        loadChannels().catch(() => {});
      } else if (event.channel_id === state.channelId) {
        api('GET', `/channels/${state.channelId}/members`)
          .then((page) => { state.names = new Map(page.members.map((m) => [m.user.id, m.user.username])); })
          .catch(() => {});
      }
      break;
    default:
      break;
  }
}

// ------------------------------------------------------------------- wiring

function wire() {
  $('#login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn($('#username').value.trim()).catch((error) => notify(`Sign-in failed: ${error.message}`, { error: true }));
  });
  $('#channel-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('#channel-name');
    try {
      const channel = await api('POST', '/channels', { name: input.value.trim() });
      input.value = '';
      await loadChannels();
      await openChannel(channel.id);
      notify(`Channel ${channel.name} created`);
      focusComposer();
    } catch (error) {
      notify(`Could not create the channel: ${error.message}`, { error: true });
    }
  });
  $('#member-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('#member-name');
    if (!state.channelId) return;
    try {
      await api('POST', `/channels/${state.channelId}/members`, { username: input.value.trim() });
      notify(`${input.value.trim()} added to the channel`);
      input.value = '';
    } catch (error) {
      notify(`Could not add the member: ${error.message}`, { error: true });
    }
  });
  $('#composer').addEventListener('submit', (event) => {
    event.preventDefault();
    sendMessage();
  });
  $('#attach').addEventListener('click', () => $('#file-input').click());
  $('#file-input').addEventListener('change', (event) => {
    addFiles([...event.target.files]);
    event.target.value = '';
    focusComposer();
  });
  $('#message-file-input').addEventListener('change', (event) => {
    const messageId = targetMessage;
    targetMessage = null;
    if (messageId !== null) addFiles([...event.target.files], messageId);
    event.target.value = '';
  });
  $('#resume-file-input').addEventListener('change', (event) => {
    const upload = resuming;
    resuming = null;
    const [file] = event.target.files;
    if (upload && file) resumeWith(upload, file);
    event.target.value = '';
  });
  $('#composer-input').addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files ?? [])];
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });

  // Drag and drop anywhere over the conversation.
  const zone = $('#composer');
  let depth = 0;
  const main = $('#main');
  main.addEventListener('dragenter', (event) => {
    if (![...event.dataTransfer.types].includes('Files')) return;
    event.preventDefault();
    depth += 1;
    zone.classList.add('dragging');
  });
  main.addEventListener('dragover', (event) => {
    if ([...event.dataTransfer.types].includes('Files')) event.preventDefault();
  });
  main.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.classList.remove('dragging');
  });
  main.addEventListener('drop', (event) => {
    event.preventDefault();
    depth = 0;
    zone.classList.remove('dragging');
    addFiles([...event.dataTransfer.files]);
    focusComposer();
  });
}

async function boot() {
  wire();
  state.config = await api('GET', '/config');
  if (state.token && state.user) {
    try {
      await start();
      return;
    } catch {
      signOut();
    }
  }
  $('#login').hidden = false;
  $('#username').focus();
}

boot().catch((error) => notify(`The app could not start: ${error.message}`, { error: true }));

// For the tests and the curious: the state, read-only by convention.
window.chatgenius = { state };
