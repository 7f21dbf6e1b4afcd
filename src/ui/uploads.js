// Uploads from the composer: validated, presigned, PUT straight to the object
// store with progress (or, above the threshold, in parallel parts that
// survive a reload), then confirmed; and the composer's rows showing them.
// Every change of an upload's status goes through upload-state.js.

import { ApiError, api } from './api.js';
import {
  $, NO_CHANNEL, element, fileType, focusComposer, humanSize, notify, refusal, thumbnailable, typeIcon,
} from './dom.js';
import { state } from './state.js';
import {
  BUSY, Status, UNFINISHED, UploadEvent, can, multipartGone, retryFrom, retryable, transition,
} from './upload-state.js';

/** Parts of one multipart upload in flight at once. */
const PART_CONCURRENCY = 3;
/** Where multipart uploads are remembered so a reloaded page can resume them. */
const RESUME_KEY = 'cg.resume';

/** Moves `upload` on `event`; throws on a transition the state machine refuses. */
function move(upload, event) {
  upload.status = transition(upload, event);
}

/** What a run stops with when its upload was canceled (or failed) meanwhile. */
function canceled() {
  return new ApiError(0, 'canceled', 'Canceled');
}

/**
 * One file on its way: validated, presigned, PUT straight to the object
 * store with progress, then confirmed. `status` is one of upload-state.js's
 * `Status` (paused: a multipart upload found after a reload, waiting for its
 * file); `retryable` says, after a failure, whether Retry may try again;
 * `stage` remembers where a single-PUT upload failed so a retry resumes
 * there. Files above the server's multipart threshold go up in parts
 * (`multipart`).
 */
function newUpload(file, { messageId = null, channelId = state.channelId, multipart = null, status = Status.QUEUED } = {}) {
  return {
    key: crypto.randomUUID(),
    file,
    channelId,
    messageId,
    status,
    retryable: null,
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

/** Checks and starts uploading `files` into the composer (or into message `messageId`). */
export function addFiles(files, messageId = null) {
  if (!state.channelId) {
    notify(NO_CHANNEL, { error: true });
    return;
  }
  for (const file of files) {
    const why = refusal(file, state.config);
    if (why) {
      notify(why, { error: true });
      continue;
    }
    const upload = newUpload(file, { messageId });
    state.uploads.push(upload);
    runUpload(upload, UploadEvent.START);
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

/**
 * Runs (start, retry or resume: `event`) an upload until it is confirmed or
 * fails. Does nothing when the upload's status does not allow `event`.
 */
async function runUpload(upload, event) {
  if (!can(upload, event)) return;
  move(upload, event);
  upload.error = null;
  upload.retryable = null;
  updateUpload(upload);
  notify(`Uploading ${upload.file.name}`, { quiet: true });
  let fileInfo;
  try {
    const inParts = upload.multipart || upload.file.size > state.config.multipart_threshold_bytes;
    fileInfo = inParts ? await runMultipart(upload) : await runSingle(upload);
  } catch (error) {
    failed(upload, error);
    return;
  }
  if (upload.status === Status.CANCELED) {
    // Canceled while the broker recorded it (too late to abort): delete it.
    api('DELETE', `/files/${fileInfo.id}`).catch(() => {});
    return;
  }
  upload.file_info = fileInfo;
  move(upload, UploadEvent.CONFIRMED);
  upload.progress = 1;
  updateUpload(upload);
  notify(`${upload.file.name} uploaded`);
  if (upload.messageId !== null) {
    state.uploads = state.uploads.filter((u) => u !== upload);
    renderUploads();
    upload.release();
  }
}

/** Shows why an upload failed and prepares its retry, unless it was canceled. */
function failed(upload, error) {
  if (!can(upload, UploadEvent.FAIL)) return; // canceled meanwhile
  for (const xhr of upload.xhrs) xhr.abort();
  move(upload, UploadEvent.FAIL);
  upload.error = error.message;
  upload.retryable = retryable(error);
  const from = retryFrom(error);
  if (from) upload.stage = from;
  if (multipartGone(error) && upload.multipart) {
    forgetResume(upload.multipart.id);
    upload.multipart = null;
  }
  updateUpload(upload);
  notify(`Upload of ${upload.file.name} failed: ${error.message}`, { error: true });
  if (upload.messageId === null) focusComposer();
}

/** One presigned PUT of the whole file, then confirm. */
async function runSingle(upload) {
  const fresh = upload.presigned && Date.parse(upload.presigned.expires_at) - Date.now() > 10_000;
  if (upload.stage === 'presign' || (upload.stage === 'put' && !fresh)) {
    if (upload.presigned) abortOnBroker(upload.presigned.upload_id);
    upload.stage = 'presign';
    upload.presigned = await api('POST', '/files/presign', uploadBody(upload));
    if (upload.status === Status.CANCELED) {
      // Canceled while presigning: the cancel did not know this upload yet.
      abortOnBroker(upload.presigned.upload_id);
      throw canceled();
    }
    upload.stage = 'put';
  }
  if (upload.stage === 'put') {
    await sendBytes(upload, upload.presigned, upload.file, (loaded) => {
      upload.progress = loaded / upload.file.size;
      updateUpload(upload);
    });
    upload.stage = 'confirm';
  }
  move(upload, UploadEvent.SENT);
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
    if (upload.status === Status.CANCELED) {
      // Canceled while starting: the cancel did not know this upload yet.
      abortOnBroker(started.upload_id);
      throw canceled();
    }
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
      // Another part failed, or the upload was canceled: no more parts.
      if (upload.status !== Status.UPLOADING) throw canceled();
      await uploadPart(upload, n, todo, showProgress);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PART_CONCURRENCY, todo.length) }, worker));
  move(upload, UploadEvent.SENT);
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
  // A canceled upload is forgotten (removeUpload): not remembered again.
  if (upload.status === Status.CANCELED) throw canceled();
  saveResume(upload);
  showProgress();
}

/**
 * PUTs `body` to a presigned request, reporting progress; resolves to the
 * ETag. Refuses to start unless the upload is uploading.
 */
function sendBytes(upload, request, body, onProgress) {
  return new Promise((resolve, reject) => {
    if (upload.status !== Status.UPLOADING) {
      reject(canceled());
      return;
    }
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
      // An expired link: the retry presigns again (`retryFrom`), or asks for fresh part URLs.
      const expired = xhr.status === 403 && /expired/i.test(xhr.responseText);
      if (expired && upload.multipart) upload.multipart.urlsExpire = 0;
      reject(expired
        ? new ApiError(xhr.status, 'link_expired', 'The upload link expired; retry to get a new one.')
        : new ApiError(xhr.status, 'storage_refused', `The storage refused the upload (HTTP ${xhr.status}).`));
    });
    xhr.addEventListener('error', () => {
      done();
      reject(new ApiError(0, 'network_error', 'The upload was interrupted by a network error.'));
    });
    xhr.addEventListener('abort', () => {
      done();
      reject(canceled());
    });
    xhr.send(body);
  });
}

function abortOnBroker(uploadId) {
  if (uploadId) api('DELETE', `/files/uploads/${uploadId}`).catch(() => {});
}

// ------------------------------------------------------------ resume storage
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
export function restoreResumable() {
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
    const upload = newUpload(file, { messageId: entry.message_id, channelId: entry.channel_id, multipart, status: Status.PAUSED });
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

/** The file picked after Resume (`#resume-file-input`): continues that upload. */
export function resumePicked(file) {
  const upload = resuming;
  resuming = null;
  if (upload && file) resumeWith(upload, file);
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
  runUpload(upload, UploadEvent.RESUME);
}

/** Cancels an upload in progress (or removes a finished one) from the composer. */
async function removeUpload(upload) {
  if (!can(upload, UploadEvent.CANCEL)) return;
  const wasDone = upload.status === Status.DONE;
  move(upload, UploadEvent.CANCEL);
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

// ------------------------------------------------------------ composer rows

/** The composer's uploads: this channel's. */
export function composerUploads() {
  return state.uploads.filter((u) => u.channelId === state.channelId);
}

export function renderUploads() {
  const list = $('#previews');
  list.replaceChildren(...composerUploads().map(renderUpload));
  showAttachBusy();
}

/** The paperclip shows (and tells) when uploads are under way. */
function showAttachBusy() {
  const busy = state.uploads.some((u) => BUSY.includes(u.status));
  const attach = $('#attach');
  attach.classList.toggle('busy', busy);
  attach.setAttribute('aria-busy', String(busy));
  attach.title = busy ? 'Attach files (uploads in progress)' : 'Attach files';
}

/** The composer's row for one file (FilePreview + FileUploadProgress). */
function renderUpload(upload) {
  const name = upload.file.name;
  const badge = () => element('span', { class: 'type-icon', 'aria-hidden': 'true', text: typeIcon(fileType(upload.file)) });
  const row = element('li', { class: 'preview', id: `upload-${upload.key}`, 'data-status': upload.status },
    // Only the image types browsers draw get a picture; one that fails to draw falls back to the badge.
    upload.preview ? element('img', {
      class: 'thumb',
      src: upload.preview,
      alt: `Preview of ${name}`,
      onerror: (event) => event.currentTarget.replaceWith(badge()),
    }) : badge(),
    element('span', { class: 'info' },
      element('span', { class: 'name ellipsis', title: name, text: name }),
      element('span', { class: 'size', text: humanSize(upload.file.size) }),
      element('span', { class: 'state' }),
      element('span', { class: 'error' })),
    element('span', { class: 'actions' },
      element('button', {
        type: 'button',
        class: 'secondary retry',
        hidden: true,
        'aria-label': `Retry uploading ${name}`,
        onclick: () => runUpload(upload, UploadEvent.RETRY),
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
  progress.hidden = upload.status === Status.DONE || upload.status === Status.ERROR;
  const parts = upload.multipart ? ` (${upload.multipart.partCount} parts)` : '';
  const label = {
    [Status.QUEUED]: 'Waiting…',
    [Status.UPLOADING]: `Uploading… ${percent}%${parts}`,
    [Status.CONFIRMING]: 'Checking…',
    [Status.DONE]: upload.messageId === null ? 'Ready to send' : 'Added to the message',
    [Status.ERROR]: 'Upload failed',
    [Status.PAUSED]: `Paused at ${percent}%: pick the same file again to resume`,
  }[upload.status] ?? '';
  row.querySelector('.state').textContent = label;
  row.querySelector('.error').textContent = upload.error ?? '';
  // Only a failure a retry can mend offers Retry.
  row.querySelector('.retry').hidden = !can(upload, UploadEvent.RETRY);
  row.querySelector('.resume').hidden = !can(upload, UploadEvent.RESUME);
  const remove = row.querySelector('.remove');
  const inFlight = UNFINISHED.includes(upload.status);
  remove.textContent = inFlight ? 'Cancel' : 'Remove';
  remove.setAttribute('aria-label', `${inFlight ? 'Cancel upload of' : 'Remove'} ${name}`);
}
