// ChatGenius browser client: dev login, channels, live messages, and file
// uploads straight to the object store (presign → PUT with progress →
// confirm). Plain modern JavaScript modules, no build step, served by the
// broker. This one holds channels, messages, the page's wiring and boot; see
// api.js, dom.js, uploads.js (with upload-state.js), events.js and state.js.

import { api, signIn, signOut } from './api.js';
import {
  $, NO_CHANNEL, confirmAction, element, focusComposer, humanSize, limitLengths, notify, thumbnailSize, typeIcon,
} from './dom.js';
import { connectEvents } from './events.js';
import { state } from './state.js';
import { Status } from './upload-state.js';
import { addFiles, composerUploads, renderUploads, restoreResumable, resumePicked } from './uploads.js';

/** What the event stream changes on the page (see events.js). */
const view = { upsertMessage, updateFile, removeFile, loadChannels, openChannel };

// ------------------------------------------------------------------ session

async function start() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#skip-link').hidden = false;
  $('#whoami').textContent = `Signed in as ${state.user.username}`;
  await loadChannels();
  // The first frame (`ready`) fixes where the stream starts: pages loaded
  // after it hold everything before it, and the stream everything after.
  await connectEvents(view);
  const remembered = Number(sessionStorage.getItem('cg.channel'));
  const first = state.channels.find((c) => c.id === remembered) ?? state.channels[0];
  if (first) {
    await openChannel(first.id);
    focusComposer();
  } else {
    // Nothing to pick yet: the channel list opens (on a phone) to create one.
    showNav(true);
    $('#channel-name').focus();
  }
  document.body.dataset.ready = 'true';
}

// ----------------------------------------------------------------- channels

/**
 * Opens or closes the channel list behind the Channels button (narrow
 * screens; on wide ones the list is always shown and the button hidden).
 */
function showNav(open) {
  $('#nav-toggle').setAttribute('aria-expanded', String(open));
  $('#app').classList.toggle('nav-open', open);
}

/** Whether the channel list is a panel behind its button right now. */
function navCollapsible() {
  return getComputedStyle($('#nav-toggle')).display !== 'none';
}

/** Closes the channel list once a channel is picked or created. */
function closeNavAfterPick() {
  if ($('#nav-toggle').getAttribute('aria-expanded') === 'true') showNav(false);
}

async function loadChannels() {
  state.channels = (await api('GET', '/channels')).channels;
  renderChannels();
}

function renderChannels() {
  const list = $('#channel-list');
  list.replaceChildren(...state.channels.map((channel) => element('li', {},
    element('button', {
      type: 'button',
      class: 'ellipsis',
      title: channel.name,
      'aria-current': channel.id === state.channelId ? 'true' : undefined,
      onclick: () => {
        closeNavAfterPick();
        openChannel(channel.id).then(focusComposer, (error) => notify(`Could not open the channel: ${error.message}`, { error: true }));
      },
      text: `#\u00a0${channel.name}`,
    }))));
  if (state.channels.length === 0) list.append(element('li', { class: 'empty', text: 'No channels yet.' }));
}

async function openChannel(channelId) {
  state.channelId = channelId;
  // Events of this channel arriving while the page loads land here first.
  state.messages = new Map();
  state.fileUpdates = new Map();
  sessionStorage.setItem('cg.channel', String(channelId));
  const channel = state.channels.find((c) => c.id === channelId);
  // A no-break space keeps the # with the name.
  $('#channel-title').textContent = channel ? `#\u00a0${channel.name}` : 'Channel';
  $('#channel-title').title = channel?.name ?? '';
  renderChannels();
  const [page, members] = await Promise.all([
    api('GET', `/channels/${channelId}/messages?limit=50`),
    api('GET', `/channels/${channelId}/members`),
  ]);
  if (state.channelId !== channelId) return; // another channel was picked meanwhile
  state.names = new Map(members.members.map((m) => [m.user.id, m.user.username]));
  // What arrived live during the load is newer than the page: keep it.
  // So are files updated meanwhile (a preview made after the page was read).
  for (const message of page.messages) {
    if (state.messages.has(message.id)) continue;
    state.messages.set(message.id, { ...message, files: message.files.map((f) => state.fileUpdates.get(f.id) ?? f) });
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
      element('strong', { class: 'ellipsis', title: author, text: author }),
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

/** One attached file: icon, name, size, download, (owner) delete and the server's thumbnail. */
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
    element('span', { class: 'name ellipsis', title: file.file_name, text: file.file_name }),
    element('span', { class: 'size', text: humanSize(file.file_size ?? 0) }),
    download,
    own ? element('button', {
      type: 'button',
      class: 'danger',
      'aria-label': `Delete ${file.file_name}`,
      onclick: (event) => askToDelete(file, event.currentTarget),
      text: 'Delete',
    }) : null,
    status);
  const thumbnail = renderThumbnail(file);
  if (thumbnail) item.append(thumbnail);
  return item;
}

// --------------------------------------------------------------- thumbnails

/**
 * Links to the server's thumbnails (`GET /files/{id}/preview`), by file id:
 * `{ promise, link }`. A message redrawn (a new event, a channel opened
 * again) reuses its link while it is valid, so the browser draws the same
 * picture from its cache instead of fetching it again under a new signature.
 */
const previewLinks = new Map();
/** A link with less than this left is asked for afresh. */
const LINK_MARGIN_MS = 60_000;

function previewLink(file) {
  const cached = previewLinks.get(file.id);
  if (cached && (!cached.link || Date.parse(cached.link.expires_at) - Date.now() > LINK_MARGIN_MS)) return cached;
  const entry = { link: null };
  const { url } = file.preview;
  entry.promise = api('GET', `${url}${url.includes('?') ? '&' : '?'}redirect=false`).then((link) => {
    entry.link = link;
    return link;
  }, (error) => {
    previewLinks.delete(file.id);
    throw error;
  });
  previewLinks.set(file.id, entry);
  return entry;
}

/**
 * The picture of an image attachment: the server's thumbnail (`file.preview`,
 * at most 320 px, made after the upload), never the original. Its box is
 * reserved from the thumbnail's size before it loads (width and height, and
 * the exact aspect ratio), so nothing moves when it arrives. Null while the
 * file has no preview (not made yet, impossible, or not an image): the type
 * badge stands alone until `file_updated` brings one. A thumbnail that cannot
 * be had or drawn is removed, and the badge stays.
 */
function renderThumbnail(file) {
  const size = thumbnailSize(file);
  if (!size) return null;
  const image = element('img', {
    class: size.enlarged ? 'thumb pixelated' : 'thumb',
    alt: `Preview of ${file.file_name}`,
    width: size.width,
    height: size.height,
    decoding: 'async',
  });
  // Through the CSSOM (the page's CSP refuses style attributes). An explicit
  // ratio (not `auto`): the box stays the same before and after the picture
  // loads, also where the message is narrower than the box.
  image.style.aspectRatio = size.ratio;
  const frame = element('div', { class: 'thumb-frame' }, image);
  const entry = previewLink(file);
  image.addEventListener('error', () => {
    frame.remove();
    // A link that does not draw is not reused: a later redraw asks afresh.
    if (previewLinks.get(file.id) === entry) previewLinks.delete(file.id);
  });
  if (entry.link) image.src = entry.link.url;
  else entry.promise.then((link) => { image.src = link.url; }, () => frame.remove());
  return frame;
}

/**
 * A file changed on the server (`file_updated`: its preview was made, or
 * found impossible): the state takes it, and its attachment, where shown,
 * gets its thumbnail in place (nothing else is redrawn, so the focus stays
 * where it is; a conversation read at its end stays at its end).
 */
function updateFile(file) {
  state.fileUpdates.set(file.id, file);
  for (const message of state.messages.values()) {
    if (message.files.some((f) => f.id === file.id)) {
      state.messages.set(message.id, { ...message, files: message.files.map((f) => (f.id === file.id ? { ...f, ...file } : f)) });
    }
  }
  const item = document.getElementById(`file-${file.id}`);
  if (!item) return;
  const scroller = $('#messages').parentElement;
  const atEnd = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 8;
  const thumbnail = renderThumbnail(file);
  const shown = item.querySelector('.thumb-frame');
  if (shown && thumbnail) shown.replaceWith(thumbnail);
  else if (shown) shown.remove();
  else if (thumbnail) item.append(thumbnail);
  if (atEnd) scroller.scrollTop = scroller.scrollHeight;
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

/** Delete asks first (in the page's dialog); nothing is sent unless confirmed. */
async function askToDelete(file, button) {
  const confirmed = await confirmAction({
    title: 'Delete this file?',
    text: `${file.file_name} (${humanSize(file.file_size ?? 0)}) will be removed from the message for everyone. This cannot be undone.`,
    confirm: 'Delete',
    returnFocus: button,
  });
  if (confirmed) await deleteFile(file, button);
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
  if (!state.channelId) {
    notify(NO_CHANNEL, { error: true });
    return;
  }
  const input = $('#composer-input');
  const attached = composerUploads().filter((u) => u.messageId === null);
  const busy = attached.filter((u) => u.status !== Status.DONE);
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

/** "Add file" on one's own message: upload straight into it. */
let targetMessage = null;
function pickFileForMessage(messageId) {
  targetMessage = messageId;
  $('#message-file-input').click();
}

// ------------------------------------------------------------------- wiring

function wire() {
  limitLengths();
  $('#nav-toggle').addEventListener('click', () => {
    showNav($('#nav-toggle').getAttribute('aria-expanded') !== 'true');
  });
  // Escape closes the open channel list and returns to its button.
  $('#sidebar').addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || !navCollapsible() || !$('#app').classList.contains('nav-open')) return;
    showNav(false);
    $('#nav-toggle').focus();
  });
  $('#login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn($('#username').value.trim())
      .then(start)
      .catch((error) => notify(`Sign-in failed: ${error.message}`, { error: true }));
  });
  $('#channel-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('#channel-name');
    try {
      const channel = await api('POST', '/channels', { name: input.value.trim() });
      input.value = '';
      closeNavAfterPick();
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
    if (!state.channelId) {
      notify(NO_CHANNEL, { error: true });
      return;
    }
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
  $('#attach').addEventListener('click', () => {
    if (!state.channelId) {
      notify(NO_CHANNEL, { error: true });
      return;
    }
    $('#file-input').click();
  });
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
    const [file] = event.target.files;
    resumePicked(file);
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
