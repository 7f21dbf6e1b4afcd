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

/** Tells screen readers (and, unless quiet, sighted users) what happened. */
export function notify(text, { error = false, quiet = false } = {}) {
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

export function focusComposer() {
  $('#composer-input').focus();
}

// ----------------------------------------------------------------- helpers

export function humanSize(bytes) {
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
  if (file.size > max) return `${file.name} is too large (${humanSize(file.size)}); files may be at most ${maxMb} MB.`;
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

export function thumbnailable(type = '') {
  return type.startsWith('image/') && type !== 'image/svg+xml';
}
