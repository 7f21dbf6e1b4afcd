// DOM helpers shared by the client's modules: lookup and construction,
// announcements, focus, sizes and file types. No state of their own.

export const $ = (selector) => document.querySelector(selector);

export function element(tag, props = {}, ...children) {
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

// ------------------------------------------------------------ announcements

/** Notifications shown at once; older ones make way. */
const MAX_NOTICES = 3;

/**
 * Tells screen readers (through the live regions) and, unless quiet, sighted
 * users what happened. The visible notice goes in the page's flow, never over
 * the conversation: under the composer once signed in, else under the header.
 */
export function notify(text, { error = false, quiet = false } = {}) {
  const region = error ? $('#announce-error') : $('#announce');
  region.textContent = '';
  // A fresh text node after a tick makes repeated messages announce again.
  setTimeout(() => { region.textContent = text; }, 30);
  if (quiet) return;
  const item = document.createElement('li');
  item.className = error ? 'notice error' : 'notice';
  item.textContent = text;
  const list = $('#app').hidden ? $('#page-notices') : $('#notices');
  // The same notice again replaces the one still shown instead of stacking.
  for (const shown of list.children) if (shown.textContent === text && shown.className === item.className) shown.remove();
  list.append(item);
  while (list.children.length > MAX_NOTICES) list.firstElementChild.remove();
  setTimeout(() => item.remove(), error ? 8000 : 4000);
}

/** What Send, Attach and Add member say while no channel is open. */
export const NO_CHANNEL = 'Pick or create a channel first.';

/**
 * Asks, in the page's own dialog (`#confirm-dialog`), before something is
 * destroyed; resolves to true when confirmed. The dialog is modal: the focus
 * starts on Cancel, stays inside, Escape cancels, and on closing the focus
 * returns to `returnFocus` (the button that asked).
 */
export function confirmAction({ title, text, confirm, returnFocus }) {
  const dialog = $('#confirm-dialog');
  const cancelButton = dialog.querySelector('.cancel');
  const confirmButton = dialog.querySelector('.confirm-button');
  dialog.querySelector('#confirm-title').textContent = title;
  dialog.querySelector('#confirm-text').textContent = text;
  confirmButton.textContent = confirm;
  return new Promise((resolve) => {
    const choose = (value) => () => dialog.close(value);
    const onCancel = choose('cancel');
    const onConfirm = choose('confirm');
    cancelButton.addEventListener('click', onCancel);
    confirmButton.addEventListener('click', onConfirm);
    dialog.addEventListener('close', () => {
      cancelButton.removeEventListener('click', onCancel);
      confirmButton.removeEventListener('click', onConfirm);
      const confirmed = dialog.returnValue === 'confirm';
      if (!confirmed && returnFocus?.isConnected) returnFocus.focus();
      resolve(confirmed);
    }, { once: true });
    dialog.returnValue = '';
    dialog.showModal();
    cancelButton.focus();
  });
}

/**
 * Fields with `data-max-chars` hold at most that many characters once
 * trimmed, counted as the broker counts them (Unicode scalar values, not
 * UTF-16 units as `maxlength` would); the form refuses to submit beyond.
 */
export function limitLengths(root = document) {
  for (const input of root.querySelectorAll('[data-max-chars]')) {
    const max = Number(input.dataset.maxChars);
    const what = input.dataset.what ?? 'This field';
    const check = () => {
      const count = [...input.value.trim()].length;
      input.setCustomValidity(count > max ? `${what} may be at most ${max} characters (this one has ${count}).` : '');
    };
    input.addEventListener('input', check);
    check();
  }
}

export function focusComposer() {
  $('#composer-input').focus();
}

// ----------------------------------------------------------------- helpers

/**
 * A size in binary units (1 KiB = 1024 B, 1 MiB = 1024 KiB), as the broker
 * counts them (`MAX_FILE_SIZE_MB` and the quotas are MiB).
 */
export function humanSize(bytes) {
  // A no-break space keeps the number with its unit.
  if (bytes < 1024) return `${bytes}\u00a0B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)}\u00a0${units[unit]}`;
}

/** MIME types of common extensions, for files the browser reports none for. */
const EXTENSION_TYPES = {
  txt: 'text/plain', md: 'text/markdown', csv: 'text/csv', json: 'application/json', pdf: 'application/pdf',
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  zip: 'application/zip', mp3: 'audio/mpeg', mp4: 'video/mp4', webm: 'video/webm',
};

export function fileType(file) {
  if (file.type) return file.type.toLowerCase();
  const extension = file.name.includes('.') ? file.name.split('.').pop().toLowerCase() : '';
  return EXTENSION_TYPES[extension] ?? 'application/octet-stream';
}

/** Whether `type` matches one of `patterns` (`GET /config`'s `allowed_file_types`). */
export function typeAllowed(type, patterns) {
  const [top] = type.split('/');
  return patterns.some((pattern) =>
    pattern === '*/*' || pattern === type || (pattern.endsWith('/*') && pattern.slice(0, -2) === top));
}

/** Why the file may not be uploaded under `config` (`GET /config`), or null. Mirrors the broker's checks. */
export function refusal(file, config) {
  const { max_file_size_bytes: max, max_file_size_mb: maxMb } = config;
  if (file.size === 0) return `${file.name} is empty.`;
  if (file.size > max) return `${file.name} is too large (${humanSize(file.size)}); files may be at most ${maxMb}\u00a0MiB.`;
  const type = fileType(file);
  if (!typeAllowed(type, config.allowed_file_types)) return `${file.name} is a file type that is not allowed here (${type}).`;
  return null;
}

/** A short badge naming the kind of file (fonts for emoji are not a given). */
export function typeIcon(type = '') {
  if (type.startsWith('image/')) return 'IMG';
  if (type.startsWith('video/')) return 'VID';
  if (type.startsWith('audio/')) return 'AUD';
  if (type === 'application/pdf') return 'PDF';
  if (type.startsWith('text/')) return 'TXT';
  if (type === 'application/zip') return 'ZIP';
  return 'FILE';
}

/** Image types every browser draws, and the only ones the composer previews from the user's own file (never SVG). */
const THUMBNAIL_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

/** Whether the composer shows a file of `type` as a picture; others show their type badge only. */
export function thumbnailable(type = '') {
  return THUMBNAIL_TYPES.has(String(type).split(';')[0].trim().toLowerCase());
}

/**
 * The box, in CSS pixels, a message's thumbnail is drawn in: the server's
 * thumbnail (`file.preview`; its size, else the image's) fitted into
 * THUMB_BOX, small ones enlarged to `min` on their longest edge (drawn
 * pixelated). `ratio` is the box's width / height (the thumbnail's own, to
 * the pixel), so the box is the same before and after the picture loads.
 * Null when the file has no preview.
 */
export const THUMB_BOX = { width: 320, height: 240, min: 96 };

export function thumbnailSize(file) {
  if (!file.preview) return null;
  const valid = (size) => size && size.width > 0 && size.height > 0;
  const source = valid(file.preview) ? file.preview : valid(file.image) ? file.image : null;
  if (!source) return null;
  const { width, height } = source;
  const fit = Math.min(THUMB_BOX.width / width, THUMB_BOX.height / height);
  const scale = Math.min(fit, Math.max(1, THUMB_BOX.min / Math.max(width, height)));
  const box = { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
  return { ...box, ratio: `${box.width} / ${box.height}`, enlarged: scale > 1 };
}
