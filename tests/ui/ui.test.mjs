// Browser tests of the embedded client: a real broker (the debug binary, on
// its embedded default of SQLite + in-process S3) driven through Debian's
// Chromium by playwright-core. Run by tests/run.sh; alone:
//   cargo build && (cd tests/ui && npm ci && npm test)
// Screenshots of the main states land in target/ui-artifacts/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { deflateSync } from 'node:zlib';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const broker = process.env.BROKER_BIN ?? join(root, 'target/debug/chatgenius-files');
const artifacts = join(root, 'target/ui-artifacts');
const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const MAX_MB = 20;
const MIB = 1024 * 1024;

let base;
let dataDir;
let child;
let browser;
let ports;

/** A port nobody listens on right now. */
function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

function brokerEnv(extra = {}) {
  return {
    ...process.env,
    DATA_DIR: dataDir,
    MAX_FILE_SIZE_MB: String(MAX_MB),
    MULTIPART_THRESHOLD_MB: '6',
    MULTIPART_PART_SIZE_MB: '5',
    DEV_LOGIN_RATE_PER_MIN: '1000',
    RUST_LOG: 'warn',
    ...extra,
  };
}

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), 'cgf-ui-'));
  ports = { http: await freePort(), s3: await freePort() };
  base = `http://127.0.0.1:${ports.http}`;
  await startBroker();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  child?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

// ----------------------------------------------------------------- helpers

/** Starts the broker on the suite's ports and data (and `extra` settings); resolves once it is healthy. */
async function startBroker(extra = {}) {
  child = spawn(broker, ['serve'], {
    env: brokerEnv({ BIND_ADDR: `127.0.0.1:${ports.http}`, EMBEDDED_S3_ADDR: `127.0.0.1:${ports.s3}`, ...extra }),
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  for (let i = 0; i < 100; i += 1) {
    const up = await fetch(`${base}/health`).then((r) => r.ok, () => false);
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail('the broker did not start');
}

/** Stops the broker at once (pages see their socket drop) and starts it again with `extra` settings. */
async function restartBroker(extra = {}) {
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGKILL');
  await exited;
  await startBroker(extra);
}

/** A request to the broker's API as the holder of `token`. */
async function apiAs(token, method, path, body) {
  const init = { method, headers: { authorization: `Bearer ${token}` } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const response = await fetch(`${base}${path}`, init);
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${await response.clone().text()}`);
  return response.json();
}

const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
  'base64',
);

/** CRC-32 of `bytes`, as PNG chunks carry it. */
function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A `width`×`height` RGB PNG that looks like something: a sky, a sun and a hill. */
function photoPng(width, height) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const framed = Buffer.alloc(body.length + 8);
    framed.writeUInt32BE(data.length, 0);
    body.copy(framed, 4);
    framed.writeUInt32BE(crc32(body), body.length + 4);
    return framed;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bits per channel
  header[9] = 2; // RGB
  const stride = width * 3 + 1;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const at = y * stride + 1 + x * 3;
      const sun = (x - width * 0.7) ** 2 + (y - height * 0.3) ** 2 < (Math.min(width, height) * 0.12) ** 2;
      const hill = y > height * (0.65 + 0.1 * Math.sin((x / width) * Math.PI * 2));
      const [r, g, b] = sun ? [250, 204, 21] : hill ? [22, 101 + (y % 7) * 4, 52] : [56 + (y * 120) / height, 120 + (y * 100) / height, 230];
      pixels[at] = r;
      pixels[at + 1] = g;
      pixels[at + 2] = b;
    }
  }
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', header), chunk('IDAT', deflateSync(pixels)), chunk('IEND', Buffer.alloc(0))]);
}

let counter = 0;
const unique = (prefix) => `${prefix}${Date.now().toString(36)}${(counter += 1)}`;

const PHONE = { width: 390, height: 844 };

/** A new browser context (its own session storage) signed in as `username`. */
async function signedIn(username, { viewport = { width: 1100, height: 800 } } = {}) {
  const context = await browser.newContext({ acceptDownloads: true, viewport });
  const page = await context.newPage();
  page.on('filechooser', () => {});
  page.on('pageerror', (error) => console.error(`[${username}] page error:`, error));
  await page.goto(base);
  await page.fill('#username', username);
  await page.press('#username', 'Enter');
  await page.waitForSelector(`#whoami:has-text("${username}")`);
  await page.waitForSelector('body[data-ready]');
  return { context, page };
}

async function createChannel(page, name) {
  await page.fill('#channel-name', name);
  await page.press('#channel-name', 'Enter');
  await page.waitForSelector(`#channel-title:has-text("${name}")`);
}

/** Two signed-in users in a new channel of the first one's, both looking at it. */
async function sharedChannel(ownerName, friendName, channelName) {
  const owner = await signedIn(unique(ownerName));
  const friend = await signedIn(unique(friendName));
  const channel = unique(channelName);
  await createChannel(owner.page, channel);
  const username = await friend.page.evaluate(() => window.chatgenius.state.user.username);
  await owner.page.fill('#member-name', username);
  await owner.page.press('#member-name', 'Enter');
  await friend.page.waitForSelector(`#channel-list button:has-text("${channel}")`);
  await friend.page.click(`#channel-list button:has-text("${channel}")`);
  return { owner, friend, channel };
}

/** Waits until the composer's upload of `name` reaches `status`. */
async function uploadStatus(page, name, status) {
  await page.waitForSelector(`#previews li[data-status="${status}"]:has(.name:text-is("${name}"))`);
}

async function send(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
  await page.waitForSelector(`#messages .content:text-is("${text}")`);
}

/** Slows uploads down (bytes per second) so progress and cancel can be seen. */
async function throttleUploads(page, bytesPerSecond) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: bytesPerSecond,
  });
  return cdp;
}

async function downloadBytes(page, fileName) {
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click(`button[aria-label="Download ${fileName}"]`),
  ]);
  return readFileSync(await download.path());
}

/** Attaches `files` from the composer and sends them with `text`. */
async function sendFiles(page, text, files) {
  await page.setInputFiles('#file-input', files);
  for (const { name } of files) await uploadStatus(page, name, 'done');
  await send(page, text);
  for (const { name } of files) await page.locator(`#messages .attachment .name:text-is("${name}")`).waitFor();
}

/** The attachment of `fileName` in the conversation. */
const attachmentOf = (page, fileName) => page.locator(`#messages .attachment:has(.name:text-is("${fileName}"))`);

/** Waits until the message thumbnail of `fileName` has loaded its picture. */
async function thumbnailLoaded(page, fileName) {
  await page.waitForFunction((name) => {
    const item = [...document.querySelectorAll('#messages .attachment')].find((li) => li.querySelector('.name').textContent === name);
    const image = item?.querySelector('img.thumb');
    return image?.complete && image.naturalWidth > 0;
  }, fileName);
}

/** Deletes an attachment of one's own, confirming in the dialog. */
async function deleteConfirmed(page, fileName) {
  await page.click(`button[aria-label="Delete ${fileName}"]`);
  await page.click('#confirm-dialog button.confirm-button');
  await page.waitForSelector(`.attachment .name:text-is("${fileName}")`, { state: 'detached' });
}

/** Requests the page sends with `method` to paths matching `pattern`, from now on. */
function recordRequests(page, method, pattern) {
  const seen = [];
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (request.method() === method && pattern.test(path)) seen.push(path);
  });
  return seen;
}

/** Widest the page's content is, in CSS pixels (more than the viewport: a sideways scroll). */
const pageWidth = (page) => page.evaluate(() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth));

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** Objects under uploads/ in the embedded store's folder. */
function storedObjects() {
  const found = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else found.push(path);
    }
  };
  const uploads = join(dataDir, 's3', 'chatgenius-files', 'uploads');
  try {
    walk(uploads);
  } catch {
    // No upload yet.
  }
  return found;
}

/** One sweep with the CLI, against the same data (another embedded S3 port). */
async function sweep() {
  const run = spawnSync(broker, ['sweep'], {
    env: brokerEnv({ EMBEDDED_S3_ADDR: `127.0.0.1:${await freePort()}` }),
    encoding: 'utf8',
  });
  assert.equal(run.status, 0, `sweep failed: ${run.stderr}`);
  return run.stdout;
}

async function axeViolations(page) {
  // Evaluated through the DevTools protocol: the page's CSP forbids inline scripts.
  await page.evaluate(readFileSync(axePath, 'utf8'));
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/** Presses Tab until `selector` has the focus; fails after `max` presses. */
async function tabTo(page, selector, { max = 60, backwards = false } = {}) {
  for (let i = 0; i < max; i += 1) {
    if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return;
    await page.keyboard.press(backwards ? 'Shift+Tab' : 'Tab');
  }
  assert.fail(`Tab never reached ${selector}`);
}

const focusedId = (page) => page.evaluate(() => document.activeElement?.id);

// ------------------------------------------------------------------- tests

describe('browser client', () => {
  test('a picked file is sent with a message, and downloads byte-identical', async () => {
    const { context, page } = await signedIn(unique('alice'));
    await shot(page, '01-signed-in');
    await createChannel(page, unique('general'));
    const bytes = Buffer.from(`quarterly notes ${'x'.repeat(5000)}\n`);
    await page.setInputFiles('#file-input', { name: 'notes.txt', mimeType: 'text/plain', buffer: bytes });
    await uploadStatus(page, 'notes.txt', 'done');
    assert.match(await page.textContent('#previews .size'), /^\d+(\.\d)?\u00a0KiB$/, 'sizes in binary units');
    await send(page, 'here are the notes');
    const attachment = page.locator('#messages .attachment:has(.name:text-is("notes.txt"))');
    await attachment.waitFor();
    assert.equal(await page.locator('#previews li').count(), 0, 'the composer is emptied after send');
    assert.equal(await focusedId(page), 'composer-input', 'focus returns to the composer after send');
    await shot(page, '02-message-with-attachment');
    assert.deepEqual(await downloadBytes(page, 'notes.txt'), bytes);
    await context.close();
  });

  test('progress is shown while the bytes go to S3 and reaches 100%', async () => {
    const { context, page } = await signedIn(unique('paula'));
    await createChannel(page, unique('progress'));
    await throttleUploads(page, 2 * 1024 * 1024);
    await page.evaluate(() => {
      window.seenProgress = new Set();
      new MutationObserver(() => {
        for (const bar of document.querySelectorAll('#previews progress')) window.seenProgress.add(Number(bar.value));
      }).observe(document.querySelector('#previews'), { subtree: true, attributes: true, childList: true, characterData: true });
    });
    const bytes = Buffer.alloc(3 * 1024 * 1024, 'a');
    await page.setInputFiles('#file-input', { name: 'big.txt', mimeType: 'text/plain', buffer: bytes });
    await page.waitForSelector('#previews li[data-status="uploading"] .state:text-matches("Uploading… [1-9]")');
    assert.equal(await page.getAttribute('#attach', 'aria-busy'), 'true', 'the attach button shows the upload');
    await shot(page, '03-upload-in-progress');
    await uploadStatus(page, 'big.txt', 'done');
    const seen = await page.evaluate(() => [...window.seenProgress]);
    assert.ok(seen.some((v) => v > 0 && v < 100), `intermediate progress was shown: ${seen}`);
    assert.ok(seen.includes(100), `progress reached 100%: ${seen}`);
    assert.equal(await page.evaluate(() => window.chatgenius.state.uploads[0].progress), 1);
    assert.equal(await page.getAttribute('#attach', 'aria-busy'), 'false');
    await context.close();
  });

  test('cancel mid-upload stops the PUT, and nothing stays in S3 after a sweep', async () => {
    const { context, page } = await signedIn(unique('carl'));
    await createChannel(page, unique('cancel'));
    await throttleUploads(page, 512 * 1024);
    const before = storedObjects().length;
    await page.setInputFiles('#file-input', { name: 'huge.txt', mimeType: 'text/plain', buffer: Buffer.alloc(6 * 1024 * 1024, 'b') });
    await page.waitForSelector('#previews li[data-status="uploading"] .state:text-matches("Uploading… [1-9]")');
    const uploadId = await page.evaluate(() => window.chatgenius.state.uploads[0].presigned.upload_id);
    await page.click('button[aria-label="Cancel upload of huge.txt"]');
    await page.waitForSelector('#previews li', { state: 'detached' });
    assert.equal(await focusedId(page), 'composer-input', 'focus returns to the composer after cancel');
    await page.waitForFunction(() => /huge\.txt canceled/.test(document.querySelector('#announce').textContent));
    // The broker closed the upload: confirming it now is refused.
    const token = await page.evaluate(() => window.chatgenius.state.token);
    const confirm = await fetch(`${base}/files/uploads/${uploadId}/confirm`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    assert.equal(confirm.status, 409);
    await sweep();
    assert.equal(storedObjects().length, before, 'no object of the canceled upload is left');
    await context.close();
  });

  test('a failed upload shows an error, and retry succeeds', async () => {
    const { context, page } = await signedIn(unique('rita'));
    await createChannel(page, unique('retry'));
    const s3 = await page.evaluate(async () => (await fetch('/config')).ok);
    assert.ok(s3);
    // The object store drops the first PUT (a network failure), then works again.
    let dropped = 0;
    await page.route((url) => url.pathname.startsWith('/chatgenius-files/'), (route) => {
      if (route.request().method() === 'PUT' && dropped === 0) {
        dropped += 1;
        return route.abort('connectionreset');
      }
      return route.continue();
    });
    await page.setInputFiles('#file-input', { name: 'flaky.txt', mimeType: 'text/plain', buffer: Buffer.from('flaky bytes') });
    await uploadStatus(page, 'flaky.txt', 'error');
    await page.waitForFunction(() => /flaky\.txt failed/.test(document.querySelector('#announce-error').textContent));
    assert.match(await page.textContent('#previews .error'), /network/);
    assert.equal(await focusedId(page), 'composer-input', 'focus returns to the composer after an error');
    await shot(page, '04-upload-error');
    await page.click('button[aria-label="Retry uploading flaky.txt"]');
    await uploadStatus(page, 'flaky.txt', 'done');
    assert.equal(dropped, 1);
    await send(page, 'after a retry');
    assert.deepEqual(await downloadBytes(page, 'flaky.txt'), Buffer.from('flaky bytes'));
    await context.close();
  });

  test('files dropped on the conversation are highlighted and uploaded', async () => {
    const { context, page } = await signedIn(unique('dora'));
    await createChannel(page, unique('drop'));
    const transfer = await page.evaluateHandle(() => {
      const data = new DataTransfer();
      data.items.add(new File(['dropped bytes'], 'dropped.txt', { type: 'text/plain' }));
      return data;
    });
    await page.dispatchEvent('#messages', 'dragenter', { dataTransfer: transfer });
    assert.ok(await page.locator('#composer.dragging').isVisible(), 'the drop zone is highlighted');
    assert.ok(await page.locator('#drop-hint').isVisible());
    await shot(page, '05-drag-over');
    await page.dispatchEvent('#messages', 'drop', { dataTransfer: transfer });
    assert.equal(await page.locator('#composer.dragging').count(), 0, 'highlight ends on drop');
    await uploadStatus(page, 'dropped.txt', 'done');
    await context.close();
  });

  test('a pasted image is attached, and images show thumbnails', async () => {
    const { context, page } = await signedIn(unique('ivan'));
    await createChannel(page, unique('images'));
    await page.evaluate((bytes) => {
      const data = new DataTransfer();
      data.items.add(new File([new Uint8Array(bytes)], 'pixel.png', { type: 'image/png' }));
      const paste = new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true });
      document.querySelector('#composer-input').dispatchEvent(paste);
    }, [...PNG]);
    await uploadStatus(page, 'pixel.png', 'done');
    assert.equal(await page.locator('#previews img.thumb').count(), 1, 'the preview shows the picture');
    await send(page, 'a picture');
    const thumb = page.locator('#messages .attachment img.thumb');
    await thumb.waitFor();
    await page.waitForFunction(() => document.querySelector('#messages .attachment img.thumb')?.naturalWidth === 2);
    assert.equal(await thumb.getAttribute('alt'), 'Preview of pixel.png');
    await shot(page, '06-image-thumbnail');
    await context.close();
  });

  test('a file uploaded into an existing message appears there live, for others too', async () => {
    const { owner, friend, channel } = await sharedChannel('olga', 'fred', 'live');
    await send(owner.page, 'files follow');
    await friend.page.waitForSelector('#messages .content:text-is("files follow")');
    const [chooser] = await Promise.all([
      owner.page.waitForEvent('filechooser'),
      owner.page.click('#messages button[aria-label="Add file to this message"]'),
    ]);
    await chooser.setFiles({ name: 'later.txt', mimeType: 'text/plain', buffer: Buffer.from('added later') });
    for (const { page } of [owner, friend]) {
      await page.waitForSelector('#messages .message:has(.content:text-is("files follow")) .attachment .name:text-is("later.txt")');
    }
    // The owner deletes it; the friend sees it go without reloading.
    assert.equal(await friend.page.locator('button[aria-label="Delete later.txt"]').count(), 0, 'only the owner may delete');
    await deleteConfirmed(owner.page, 'later.txt');
    await friend.page.waitForSelector('.attachment .name:text-is("later.txt")', { state: 'detached' });
    await owner.page.waitForSelector('.attachment .name:text-is("later.txt")', { state: 'detached' });
    await shot(friend.page, '07-after-live-delete');
    await owner.context.close();
    await friend.context.close();
  });

  test('the conversation survives a broker crash and restart without a page reload', async () => {
    const owner = await signedIn(unique('rita'));
    const reader = await signedIn(unique('remy'));
    const channel = unique('crash');
    await createChannel(owner.page, channel);
    const readerName = await reader.page.evaluate(() => window.chatgenius.state.user.username);
    await owner.page.fill('#member-name', readerName);
    await owner.page.press('#member-name', 'Enter');
    await reader.page.waitForSelector(`#channel-list button:has-text("${channel}")`);
    await reader.page.click(`#channel-list button:has-text("${channel}")`);
    await send(owner.page, 'before the crash');
    await reader.page.waitForSelector('#messages .content:text-is("before the crash")');
    await reader.page.evaluate(() => { window.sameDocument = true; });
    const { token, channelId } = await owner.page.evaluate(
      () => ({ token: window.chatgenius.state.token, channelId: window.chatgenius.state.channelId }));

    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
    await reader.page.waitForSelector('#connection:has-text("Reconnecting")');
    await shot(reader.page, '09-reconnecting');
    await startBroker();
    // Said while the page is still away (it resumes from its last event).
    for (const text of ['while away 1', 'while away 2', 'while away 3']) {
      await apiAs(token, 'POST', `/channels/${channelId}/messages`, { content: text });
    }
    const carrier = await apiAs(token, 'POST', `/channels/${channelId}/messages`, { content: 'a file follows' });
    const form = new FormData();
    form.append('channel_id', String(channelId));
    form.append('message_id', String(carrier.id));
    form.append('file', new Blob(['after the crash'], { type: 'text/plain' }), 'crash.txt');
    await apiAs(token, 'POST', '/files/upload', form);

    for (const text of ['while away 1', 'while away 2', 'while away 3']) {
      await reader.page.waitForSelector(`#messages .content:text-is("${text}")`);
    }
    await reader.page.waitForSelector('#messages .message:has(.content:text-is("a file follows")) .attachment .name:text-is("crash.txt")');
    await reader.page.waitForSelector('#connection', { state: 'hidden' });
    const contents = await reader.page.locator('#messages .content').allTextContents();
    assert.deepEqual(contents.filter((t) => t.startsWith('while away')), ['while away 1', 'while away 2', 'while away 3'],
      'each message once, in order');
    assert.equal(await reader.page.evaluate(() => window.sameDocument), true, 'the page was not reloaded');
    await owner.context.close();
    await reader.context.close();
  });

  test('a file over the threshold goes up in parallel parts and downloads byte-identical', async () => {
    const { context, page } = await signedIn(unique('mona'));
    await createChannel(page, unique('multipart'));
    const requests = [];
    page.on('request', (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}${new URL(r.url()).search.includes('partNumber') ? ` part ${new URL(r.url()).searchParams.get('partNumber')}` : ''}`));
    const bytes = Buffer.alloc(11 * MIB);
    for (let i = 0; i < bytes.length; i += 1) bytes[i] = (i * 7 + (i >> 12)) & 0xff;
    await page.setInputFiles('#file-input', { name: 'large.txt', mimeType: 'text/plain', buffer: bytes });
    await page.waitForSelector('#previews .state:text-matches("\\\\(3 parts\\\\)")');
    await uploadStatus(page, 'large.txt', 'done');
    assert.ok(requests.includes('POST /files/multipart'), requests.join('\n'));
    for (const n of [1, 2, 3]) assert.ok(requests.some((r) => r.startsWith('PUT ') && r.endsWith(` part ${n}`)), `part ${n} was PUT`);
    assert.ok(requests.some((r) => /^POST \/files\/uploads\/.*\/complete$/.test(r)));
    assert.ok(!requests.includes('POST /files/presign'), 'no single presign');
    await send(page, 'a big one');
    assert.ok((await downloadBytes(page, 'large.txt')).equals(bytes), 'downloaded bytes differ');
    await context.close();
  });

  test('a multipart upload resumes after a reload, sending only the missing parts', async () => {
    const { context, page } = await signedIn(unique('rosa'));
    await createChannel(page, unique('resume'));
    const path = join(dataDir, 'resume.txt');
    const bytes = Buffer.alloc(11 * MIB, 'r');
    bytes.write('resumable', 0);
    writeFileSync(path, bytes);
    const cdp = await throttleUploads(page, 2 * MIB);
    await page.setInputFiles('#file-input', path);
    // Wait until at least one part is acknowledged (its ETag remembered).
    await page.waitForFunction(() => JSON.parse(localStorage.getItem('cg.resume') ?? '[]').some((e) => Object.keys(e.etags).length > 0));
    const saved = await page.evaluate(() => JSON.parse(localStorage.getItem('cg.resume'))[0]);
    const done = Object.keys(saved.etags).map(Number);
    await page.reload();
    await page.waitForSelector('body[data-ready]');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await page.waitForSelector('#previews li[data-status="paused"]:has(.name:text-is("resume.txt"))');
    await shot(page, '09-paused-multipart');
    const puts = [];
    const starts = [];
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (r.method() === 'PUT') puts.push(Number(url.searchParams.get('partNumber')));
      if (url.pathname === '/files/multipart') starts.push(url.pathname);
    });
    const [chooser] = await Promise.all([
      page.waitForEvent('filechooser'),
      page.click('button[aria-label="Resume uploading resume.txt"]'),
    ]);
    await chooser.setFiles(path);
    await uploadStatus(page, 'resume.txt', 'done');
    assert.deepEqual(starts, [], 'the same upload continued');
    assert.ok(puts.length > 0 && puts.every((n) => !done.includes(n)), `re-sent ${puts}, already done ${done}`);
    assert.equal(puts.length + done.length, 3);
    assert.equal(await page.evaluate(() => localStorage.getItem('cg.resume')), '[]', 'nothing left to resume');
    await send(page, 'resumed');
    assert.ok((await downloadBytes(page, 'resume.txt')).equals(bytes), 'downloaded bytes differ');
    await context.close();
  });

  test('oversize and disallowed files are refused before any upload, readably', async () => {
    const { context, page } = await signedIn(unique('vera'));
    await createChannel(page, unique('limits'));
    const presigns = [];
    page.on('request', (request) => {
      if (request.url().includes('/files/presign') || request.method() === 'PUT') presigns.push(request.url());
    });
    await page.setInputFiles('#file-input', { name: 'movie.mp4', mimeType: 'video/mp4', buffer: Buffer.alloc((MAX_MB + 1) * 1024 * 1024) });
    await page.waitForFunction(() => /too large/.test(document.querySelector('#announce-error').textContent));
    assert.match(await page.textContent('#notices'), new RegExp(`movie\\.mp4 is too large \\(${MAX_MB + 1}\\sMiB\\); files may be at most ${MAX_MB}\\sMiB`));
    await page.setInputFiles('#file-input', { name: 'setup.exe', mimeType: 'application/x-msdownload', buffer: Buffer.from('MZ') });
    await page.waitForFunction(() => /not allowed/.test(document.querySelector('#announce-error').textContent));
    assert.match(await page.textContent('#notices'), /setup\.exe is a file type that is not allowed here/);
    await shot(page, '08-refused-files');
    assert.deepEqual(presigns, [], 'nothing was presigned or uploaded');
    assert.equal(await page.locator('#previews li').count(), 0);
    await context.close();
  });

  test('the whole flow works by keyboard alone', async () => {
    const context = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    // Playwright turns file-chooser interception on when the first listener
    // comes; listening from the start keeps a key press from racing it.
    page.on('filechooser', () => {});
    await page.goto(base);
    const name = unique('kim');
    await page.waitForFunction(() => document.activeElement?.id === 'username');
    await page.keyboard.type(name);
    await page.keyboard.press('Enter');
    await page.waitForSelector('body[data-ready]');
    assert.equal(await focusedId(page), 'channel-name', 'with no channel yet, focus goes to creating one');
    await page.keyboard.type(unique('keys'));
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.activeElement?.id === 'composer-input');
    await tabTo(page, '#attach', { backwards: true });
    const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.keyboard.press('Enter')]);
    await chooser.setFiles({ name: 'typed.txt', mimeType: 'text/plain', buffer: Buffer.from('typed bytes') });
    await uploadStatus(page, 'typed.txt', 'done');
    await page.waitForFunction(() => document.activeElement?.id === 'composer-input');
    await page.keyboard.type('sent with the keyboard');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#messages .attachment .name:text-is("typed.txt")');
    await tabTo(page, 'button[aria-label="Download typed.txt"]', { backwards: true });
    const [download] = await Promise.all([page.waitForEvent('download'), page.keyboard.press('Enter')]);
    assert.deepEqual(readFileSync(await download.path()), Buffer.from('typed bytes'));
    await tabTo(page, 'button[aria-label="Delete typed.txt"]');
    await page.keyboard.press('Enter');
    // The confirmation starts on Cancel; Tab reaches Delete.
    await page.waitForFunction(() => document.activeElement?.matches('#confirm-dialog .cancel'));
    await page.keyboard.press('Tab');
    assert.ok(await page.evaluate(() => document.activeElement?.matches('#confirm-dialog .confirm-button')));
    await page.keyboard.press('Enter');
    await page.waitForSelector('.attachment .name:text-is("typed.txt")', { state: 'detached' });
    assert.equal(await focusedId(page), 'composer-input');
    await context.close();
  });

  test('before sign-in only the sign-in form is shown', async () => {
    for (const viewport of [{ width: 1100, height: 800 }, PHONE]) {
      const context = await browser.newContext({ viewport });
      const page = await context.newPage();
      await page.goto(base);
      await page.waitForSelector('#login:not([hidden])');
      assert.ok(await page.locator('#login-form').isVisible(), 'the sign-in form shows');
      for (const hidden of ['#app', '#sidebar', '#channel-list', '#main', '#composer', '#composer-input', '#nav-toggle', '#confirm-dialog']) {
        assert.equal(await page.locator(hidden).isVisible(), false, `${hidden} is not shown before sign-in`);
      }
      assert.equal(await page.$eval('#app', (app) => getComputedStyle(app).display), 'none', 'the chat layout is not rendered');
      // Nothing of the chat is painted anywhere: every box with a size lies in the header or the sign-in section.
      const stray = await page.evaluate(() => [...document.body.querySelectorAll('*')]
        .filter((node) => node.getBoundingClientRect().width > 1 && node.getBoundingClientRect().height > 1)
        .filter((node) => !node.closest('.top, #login, .sr-only'))
        .map((node) => node.id || node.className || node.tagName));
      assert.deepEqual(stray, [], 'only the header and the sign-in form are visible');
      assert.ok(await pageWidth(page) <= viewport.width, 'no sideways scrolling');
      await shot(page, viewport.width < 500 ? '00-sign-in-390px' : '00-sign-in');
      await context.close();
    }
  });

  test('at 390 px: one column, the channel list behind its button, nothing wider than the screen', async () => {
    // The longest names the broker takes, unbroken.
    const user = unique('m').padEnd(64, 'u');
    const channel = unique('c').padEnd(80, 'n');
    const other = unique('second');
    const { context, page } = await signedIn(user, { viewport: PHONE });
    const toggle = page.locator('#nav-toggle');
    assert.ok(await toggle.isVisible(), 'the Channels button shows on a phone');
    assert.equal(await toggle.getAttribute('aria-controls'), 'sidebar');
    // No channel yet: the list is open on creating one.
    assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
    assert.equal(await focusedId(page), 'channel-name');
    await createChannel(page, other);
    assert.equal(await toggle.getAttribute('aria-expanded'), 'false', 'creating a channel closes the list');
    assert.equal(await page.locator('#sidebar').isVisible(), false);
    await toggle.click();
    await createChannel(page, channel);
    assert.equal(await page.locator('#sidebar').isVisible(), false);

    const longFile = `${'quarterly-report-'.repeat(8)}final.txt`;
    await sendFiles(page, `a long word follows: ${'https://example.com/'.padEnd(300, 'z')}`, [
      { name: longFile, mimeType: 'text/plain', buffer: Buffer.from('long name') },
      { name: 'pixel.png', mimeType: 'image/png', buffer: PNG },
    ]);
    await page.waitForSelector('#messages .attachment img.thumb');
    await page.setInputFiles('#file-input', { name: `draft-${'x'.repeat(100)}.txt`, mimeType: 'text/plain', buffer: Buffer.from('draft') });
    await uploadStatus(page, `draft-${'x'.repeat(100)}.txt`, 'done');
    await page.fill('#composer-input', 'not sent yet');

    assert.ok(await pageWidth(page) <= PHONE.width, `no horizontal overflow (${await pageWidth(page)} px)`);
    const box = async (selector) => page.locator(selector).first().boundingBox();
    const main = await box('#main');
    assert.ok(main.x >= 0 && main.width >= PHONE.width - 1, `the conversation takes the whole width (${main.width} px)`);
    // Names are cut with an ellipsis on one line (their title holds them whole), not broken letter by letter.
    for (const selector of ['#messages .meta strong', `#messages .attachment .name`, '#previews .name', '#whoami']) {
      const { width, height } = await box(selector);
      const lineHeight = await page.$eval(selector, (node) => parseFloat(getComputedStyle(node).lineHeight) || 20);
      assert.ok(width >= 100, `${selector} is ${width} px wide`);
      assert.ok(height <= lineHeight * 1.5, `${selector} stays on one line (${height} px)`);
    }
    assert.equal(await page.getAttribute('#messages .meta strong', 'title'), user);
    for (const selector of ['#messages .meta button', '#messages .attachment button', '#send', '#previews .remove']) {
      const { width, height } = await box(selector);
      assert.ok(height < 48 && width > height, `${selector} is not squeezed (${width}×${height})`);
    }
    await shot(page, '10-phone-conversation');
    assert.deepEqual(await axeViolations(page), [], 'phone layout, channel list closed');

    // The list opens from its button, by keyboard too, and picking a channel closes it.
    await page.focus('#composer-input');
    await tabTo(page, '#nav-toggle', { backwards: true });
    await page.keyboard.press('Enter');
    assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
    assert.ok(await page.locator('#sidebar').isVisible());
    await page.keyboard.press('Tab');
    assert.ok(await page.evaluate(() => document.activeElement?.closest('#sidebar') !== null), 'Tab goes on into the list');
    assert.ok(await pageWidth(page) <= PHONE.width, 'no horizontal overflow with the list open');
    await shot(page, '11-phone-channel-list');
    assert.deepEqual(await axeViolations(page), [], 'phone layout, channel list open');
    await page.keyboard.press('Escape');
    assert.equal(await toggle.getAttribute('aria-expanded'), 'false', 'Escape closes the list');
    assert.equal(await focusedId(page), 'nav-toggle', 'and returns to its button');
    await toggle.click();
    await page.click(`#channel-list button:has-text("${other}")`);
    await page.waitForSelector(`#channel-title:has-text("${other}")`);
    assert.equal(await toggle.getAttribute('aria-expanded'), 'false', 'picking a channel closes the list');
    assert.equal(await page.locator('#sidebar').isVisible(), false);
    assert.equal(await focusedId(page), 'composer-input');
    await toggle.click();
    await page.click(`#channel-list button[title="${channel}"]`);
    await page.waitForSelector('#messages .attachment img.thumb');
    assert.ok(await pageWidth(page) <= PHONE.width, 'no horizontal overflow after switching back');
    await context.close();
  });

  test('the desktop keeps the channel list beside the conversation', async () => {
    const { context, page } = await signedIn(unique('wide'));
    await createChannel(page, unique('wide'));
    assert.equal(await page.locator('#nav-toggle').isVisible(), false, 'no Channels button on a wide screen');
    const sidebar = await page.locator('#sidebar').boundingBox();
    const main = await page.locator('#main').boundingBox();
    assert.ok(sidebar.width >= 250 && sidebar.width <= 260, `sidebar ${sidebar.width} px`);
    assert.ok(main.x >= sidebar.x + sidebar.width - 1 && Math.abs(main.y - sidebar.y) < 2, 'side by side');
    await context.close();
  });

  test('delete asks first: cancel keeps the file, confirm removes it', async () => {
    const { context, page } = await signedIn(unique('dana'));
    await createChannel(page, unique('confirm'));
    await sendFiles(page, 'keep or not', [{ name: 'keep.txt', mimeType: 'text/plain', buffer: Buffer.from('keep me') }]);
    const deletes = recordRequests(page, 'DELETE', /^\/files\//);
    const dialog = page.locator('#confirm-dialog');
    const deleteButton = 'button[aria-label="Delete keep.txt"]';

    await page.click(deleteButton);
    await dialog.waitFor();
    assert.equal(await page.evaluate(() => document.querySelector('#confirm-dialog').open), true);
    assert.match(await dialog.textContent(), /keep\.txt \(7\u00a0B\) will be removed from the message for everyone/);
    assert.ok(await page.evaluate(() => document.activeElement?.matches('#confirm-dialog .cancel')), 'focus starts on Cancel');
    await shot(page, '12-delete-confirmation');
    assert.deepEqual(await axeViolations(page), [], 'with the confirmation open');
    await page.click('#confirm-dialog .cancel');
    await dialog.waitFor({ state: 'hidden' });
    assert.ok(await page.evaluate((s) => document.activeElement?.matches(s), deleteButton), 'focus returns to Delete');

    // Escape cancels as well.
    await page.keyboard.press('Enter');
    await dialog.waitFor();
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await page.locator('.attachment .name:text-is("keep.txt")').count(), 1, 'the file stays');
    assert.deepEqual(deletes, [], 'nothing was deleted');

    await deleteConfirmed(page, 'keep.txt');
    assert.equal(deletes.length, 1, `one DELETE: ${deletes}`);
    assert.equal(await focusedId(page), 'composer-input');
    await page.waitForFunction(() => /keep\.txt deleted/.test(document.querySelector('#announce').textContent));
    await context.close();
  });

  test('only PNG, JPEG, GIF and WebP get thumbnails; other files and broken images show the type badge', async () => {
    const { context, page } = await signedIn(unique('tina'));
    await createChannel(page, unique('badges'));
    // A real 1×1 BMP: an image, but not a type that gets a thumbnail.
    const bmp = Buffer.alloc(58);
    bmp.write('BM', 0);
    bmp.writeUInt32LE(58, 2);
    bmp.writeUInt32LE(54, 10);
    bmp.writeUInt32LE(40, 14);
    bmp.writeInt32LE(1, 18);
    bmp.writeInt32LE(1, 22);
    bmp.writeUInt16LE(1, 26);
    bmp.writeUInt16LE(24, 28);
    bmp.writeUInt32LE(4, 34);
    await page.setInputFiles('#file-input', [
      { name: 'report.txt', mimeType: 'text/plain', buffer: Buffer.from('not a picture') },
      { name: 'dot.bmp', mimeType: 'image/bmp', buffer: bmp },
    ]);
    await uploadStatus(page, 'report.txt', 'done');
    await uploadStatus(page, 'dot.bmp', 'done');
    assert.equal(await page.locator('#previews img').count(), 0, 'no picture in the composer');
    await send(page, 'no pictures here');
    for (const [name, badge] of [['report.txt', 'TXT'], ['dot.bmp', 'IMG']]) {
      const item = page.locator(`#messages .attachment:has(.name:text-is("${name}"))`);
      await item.waitFor();
      assert.equal(await item.locator('.type-icon').textContent(), badge);
    }
    // Long enough for a thumbnail link to have been asked for and drawn.
    await page.waitForTimeout(500);
    assert.equal(await page.locator('#messages img').count(), 0, 'no thumbnail for text or BMP');

    // A PNG whose picture cannot be loaded falls back to its badge.
    await page.route((url) => url.pathname.startsWith('/chatgenius-files/'), (route) =>
      (route.request().method() === 'GET' ? route.fulfill({ status: 404, body: 'gone' }) : route.continue()));
    const picture = page.waitForResponse((r) => r.url().includes('/chatgenius-files/') && r.request().method() === 'GET');
    await sendFiles(page, 'a broken picture', [{ name: 'broken.png', mimeType: 'image/png', buffer: PNG }]);
    await picture;
    const broken = page.locator('#messages .attachment:has(.name:text-is("broken.png"))');
    await page.waitForFunction(() => {
      const item = [...document.querySelectorAll('#messages .attachment')].find((li) => li.querySelector('.name').textContent === 'broken.png');
      return item && !item.querySelector('img') && item.querySelector('.type-icon').textContent === 'IMG';
    });
    assert.ok(await broken.locator('.type-icon').isVisible());
    await context.close();
  });

  test('an image in a message is drawn from the server\'s thumbnail, never from the original', async () => {
    const { context, page } = await signedIn(unique('theo'));
    await createChannel(page, unique('photos'));
    const requests = [];
    page.on('request', (request) => {
      const url = new URL(request.url());
      requests.push({ method: request.method(), path: url.pathname, search: url.search, type: request.resourceType() });
    });
    await sendFiles(page, 'a photo', [{ name: 'photo.png', mimeType: 'image/png', buffer: photoPng(1280, 960) }]);
    await thumbnailLoaded(page, 'photo.png');
    const thumb = attachmentOf(page, 'photo.png').locator('img.thumb');
    const fileId = Number(await attachmentOf(page, 'photo.png').getAttribute('data-file-id'));
    const src = new URL(await thumb.getAttribute('src'));
    assert.match(src.pathname, new RegExp(`/previews/\\d+/${fileId}\\.jpg$`), `the thumbnail object: ${src.pathname}`);
    assert.deepEqual(await thumb.evaluate((image) => [image.naturalWidth, image.naturalHeight]), [320, 240], 'the 320 px thumbnail');
    assert.equal(await thumb.getAttribute('alt'), 'Preview of photo.png');
    assert.deepEqual([await thumb.getAttribute('width'), await thumb.getAttribute('height')], ['320', '240']);
    assert.equal(await attachmentOf(page, 'photo.png').locator('.type-icon').textContent(), 'IMG');

    const gets = requests.filter((r) => r.method === 'GET');
    assert.ok(requests.some((r) => r.path === `/files/${fileId}/preview` && r.search === '?redirect=false'),
      'the link comes from /files/{id}/preview');
    assert.ok(gets.some((r) => r.type === 'image' && r.path.includes('/previews/')), 'the picture is the thumbnail');
    assert.deepEqual(gets.filter((r) => r.path.includes('/uploads/')), [], 'the original object is never fetched');
    assert.deepEqual(requests.filter((r) => r.path.startsWith('/files/download/')), [], 'no download link is asked for');
    await shot(page, '16-photo-thumbnail');

    // At 390 px the picture fits the message; nothing scrolls sideways.
    await page.setViewportSize(PHONE);
    const frame = await attachmentOf(page, 'photo.png').boundingBox();
    const box = await thumb.boundingBox();
    assert.ok(box.x >= frame.x && box.x + box.width <= frame.x + frame.width, `the picture fits its attachment (${box.width} px)`);
    assert.ok(Math.abs(box.width / box.height - 320 / 240) < 0.02, 'and keeps its shape');
    assert.ok(await pageWidth(page) <= PHONE.width, 'no horizontal overflow');
    await shot(page, '17-photo-thumbnail-390px');
    assert.deepEqual(await axeViolations(page), [], 'a photo thumbnail at 390 px');
    await context.close();
  });

  test('a thumbnail\'s box is reserved before it loads: nothing moves when it arrives', async () => {
    const { context, page } = await signedIn(unique('hugo'));
    await createChannel(page, unique('steady'));
    await send(page, 'before the picture');
    // The thumbnail object is held back until the layout has been measured.
    let release;
    const held = new Promise((done) => { release = done; });
    let asked = 0;
    await page.route((url) => url.pathname.includes('/previews/'), async (route) => {
      asked += 1;
      await held;
      await route.continue();
    });
    // A tall image: its thumbnail (213×320) is drawn 160×240.
    await sendFiles(page, 'a tall one', [{ name: 'tall.png', mimeType: 'image/png', buffer: photoPng(300, 450) }]);
    const thumb = attachmentOf(page, 'tall.png').locator('img.thumb');
    await page.waitForFunction(() => document.querySelector('#messages .attachment img.thumb[src]'));
    for (let i = 0; asked === 0 && i < 500; i += 1) await page.waitForTimeout(20);
    assert.ok(asked > 0, 'the thumbnail was asked for');
    const measure = () => page.evaluate(() => {
      const image = document.querySelector('#messages .attachment img.thumb');
      const scroller = document.querySelector('.messages');
      const { width, height, top } = image.getBoundingClientRect();
      return {
        loaded: image.complete && image.naturalWidth > 0,
        box: [width, height],
        top,
        message: document.querySelector('#messages .message:last-child').getBoundingClientRect().height,
        scroll: [scroller.scrollHeight, scroller.scrollTop],
      };
    });
    const before = await measure();
    assert.equal(before.loaded, false, 'measured before the picture loads');
    assert.deepEqual([await thumb.getAttribute('width'), await thumb.getAttribute('height')], ['160', '240']);
    assert.equal(await thumb.evaluate((image) => getComputedStyle(image).aspectRatio), '160 / 240', 'and its shape');
    assert.deepEqual(before.box, [160, 240], 'the box is reserved');
    release();
    await thumbnailLoaded(page, 'tall.png');
    const loaded = await measure();
    assert.deepEqual(await thumb.evaluate((image) => [image.naturalWidth, image.naturalHeight]), [213, 320]);
    assert.deepEqual(loaded.box, before.box, 'the picture keeps its box');
    assert.equal(loaded.top, before.top);
    assert.equal(loaded.message, before.message, 'the message keeps its height');
    assert.deepEqual(loaded.scroll, before.scroll, 'the conversation does not move');
    await context.close();
  });

  test('a picture shown before its thumbnail exists gets it live (file_updated), and keeps the focus', async () => {
    const { owner, friend, channel } = await sharedChannel('pia', 'finn', 'later');
    await friend.page.waitForFunction(() => window.chatgenius.state.names.size === 2);
    // A broker that makes no previews: the files are shown without one.
    await restartBroker({ PREVIEW_WORKERS: '0' });
    let restored = false;
    try {
      for (const { page } of [owner, friend]) await page.waitForSelector('#connection', { state: 'hidden' });
      // An image the preview job cannot decode (a PNG signature, then nonsense): it will have none.
      const garbled = Buffer.concat([PNG.subarray(0, 16), Buffer.alloc(64, 7)]);
      await sendFiles(owner.page, 'pictures later', [
        { name: 'late.png', mimeType: 'image/png', buffer: photoPng(640, 480) },
        { name: 'garbled.png', mimeType: 'image/png', buffer: garbled },
      ]);
      for (const { page } of [owner, friend]) {
        for (const name of ['late.png', 'garbled.png']) {
          await attachmentOf(page, name).waitFor();
          assert.equal(await attachmentOf(page, name).locator('.type-icon').textContent(), 'IMG', `${name}: the badge`);
        }
        await page.evaluate(() => { window.sameDocument = true; });
      }
      await owner.page.waitForTimeout(500);
      for (const { page } of [owner, friend]) {
        assert.equal(await page.locator('#messages img').count(), 0, 'no picture while there is no thumbnail');
      }
      await shot(friend.page, '18-image-before-its-thumbnail');
      // The focus rests on the file's Download button while the thumbnail comes.
      await owner.page.focus('button[aria-label="Download late.png"]');
      await owner.page.evaluate(() => { window.lateItem = document.querySelector('#messages .attachment:has(button[aria-label="Download late.png"])'); });
      const requests = [];
      owner.page.on('request', (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`));

      // Back to a broker that makes previews: it takes the waiting jobs, and the pages hear file_updated.
      await restartBroker();
      restored = true;
      for (const { page } of [owner, friend]) {
        await thumbnailLoaded(page, 'late.png');
        const fileId = Number(await attachmentOf(page, 'garbled.png').getAttribute('data-file-id'));
        await page.waitForFunction((id) => window.chatgenius.state.fileUpdates.has(id), fileId);
        const garbledFile = await page.evaluate((id) => window.chatgenius.state.fileUpdates.get(id), fileId);
        assert.equal(garbledFile.preview, null, 'no preview was possible');
        assert.equal(await attachmentOf(page, 'garbled.png').locator('img').count(), 0, 'so it keeps its badge only');
        assert.equal(await attachmentOf(page, 'garbled.png').locator('.type-icon').textContent(), 'IMG');
        assert.match(await attachmentOf(page, 'late.png').locator('img.thumb').getAttribute('src'), /\/previews\//);
        assert.equal(await page.evaluate(() => window.sameDocument), true, 'the page was not reloaded');
      }
      assert.ok(await owner.page.evaluate(() => document.activeElement?.matches('button[aria-label="Download late.png"]')),
        'the focus stays where it was');
      assert.ok(await owner.page.evaluate(() => window.lateItem.isConnected && window.lateItem.querySelector('img.thumb') !== null),
        'the attachment was redrawn in place');
      assert.ok(requests.some((r) => r.startsWith('GET ') && r.includes('/previews/')), requests.join('\n'));
      assert.ok(!requests.some((r) => r.startsWith('GET ') && r.includes('/uploads/')), 'never the original');
      await shot(friend.page, '19-image-after-file-updated');
      assert.deepEqual(await axeViolations(friend.page), [], 'after a thumbnail arrived live');
    } finally {
      // Whatever failed, the other tests get a broker that makes previews.
      if (!restored) await restartBroker();
    }
    await owner.context.close();
    await friend.context.close();
  });

  test('with no channel open, Send, Attach and Add member say to pick or create one', async () => {
    const { context, page } = await signedIn(unique('nina'));
    const posts = recordRequests(page, 'POST', /^\/(channels|files)\//);
    await page.fill('#composer-input', 'into the void');
    await page.click('#send');
    await page.waitForFunction(() => document.querySelector('#announce-error').textContent === 'Pick or create a channel first.');
    assert.match(await page.textContent('#notices'), /Pick or create a channel first\./);
    assert.ok(await page.locator('#notices .notice:has-text("Pick or create a channel first")').first().isVisible());
    let chooser = false;
    page.on('filechooser', () => { chooser = true; });
    await page.evaluate(() => { document.querySelector('#announce-error').textContent = ''; });
    await page.click('#attach');
    await page.waitForFunction(() => document.querySelector('#announce-error').textContent === 'Pick or create a channel first.');
    assert.equal(chooser, false, 'no file chooser opens');
    await page.fill('#member-name', 'somebody');
    await page.press('#member-name', 'Enter');
    assert.match(await page.textContent('#channel-title'), /Pick or create a channel/);
    await shot(page, '13-no-channel');
    assert.deepEqual(posts, [], 'nothing was sent');
    await context.close();
  });

  test('notifications never cover the conversation', async () => {
    for (const viewport of [{ width: 1100, height: 800 }, PHONE]) {
      const { context, page } = await signedIn(unique('nora'), { viewport });
      await createChannel(page, unique('toasts'));
      await send(page, 'the first message');
      // A few notices at once (errors stay 8 s).
      await page.setInputFiles('#file-input', { name: 'setup.exe', mimeType: 'application/x-msdownload', buffer: Buffer.from('MZ') });
      await page.setInputFiles('#file-input', { name: 'empty.txt', mimeType: 'text/plain', buffer: Buffer.alloc(0) });
      await page.waitForSelector('#notices .notice.error');
      const overlaps = await page.evaluate(() => {
        const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
        const notices = [...document.querySelectorAll('.notice')].map((n) => n.getBoundingClientRect());
        const content = [...document.querySelectorAll('#messages .message, #composer, #channel-title, #nav-toggle, .top')]
          .map((n) => n.getBoundingClientRect());
        return notices.length > 0 && notices.some((n) => content.some((c) => hit(n, c)));
      });
      assert.equal(overlaps, false, `no notice covers content at ${viewport.width} px`);
      const newest = page.locator('#notices .notice').last();
      assert.ok(await newest.isVisible(), 'the newest notice shows');
      const { y, height } = await newest.boundingBox();
      assert.ok(y >= 0 && y + height <= viewport.height, `the newest notice is in view (${y}+${height})`);
      assert.ok(await pageWidth(page) <= viewport.width, 'no sideways scrolling');
      if (viewport.width < 500) await shot(page, '14-phone-notices');
      await context.close();
    }
  });

  test('a full quota (413 quota_exceeded) shows the broker\'s message and offers Remove only', async () => {
    const { context, page } = await signedIn(unique('quinn'));
    await createChannel(page, unique('quota'));
    const message = 'storage quota exceeded: you store 2.5 MiB of your 3.0 MiB; this file needs 1.0 MiB';
    await page.route((url) => url.pathname === '/files/presign', (route) => route.fulfill({
      status: 413,
      contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'quota_exceeded', message } }),
    }));
    await page.setInputFiles('#file-input', { name: 'full.txt', mimeType: 'text/plain', buffer: Buffer.alloc(MIB, 'q') });
    await uploadStatus(page, 'full.txt', 'error');
    const row = page.locator('#previews li:has(.name:text-is("full.txt"))');
    assert.equal(await row.locator('.error').textContent(), message);
    assert.equal(await row.locator('.retry').isVisible(), false, 'no Retry');
    assert.equal(await row.locator('.resume').isVisible(), false);
    assert.equal(await row.locator('button:visible').count(), 1, 'Remove only');
    assert.equal(await row.locator('button.remove').getAttribute('aria-label'), 'Remove full.txt');
    assert.equal(await page.evaluate(() => window.chatgenius.state.uploads[0].retryable), false);
    await page.waitForFunction(() => /quota exceeded/.test(document.querySelector('#announce-error').textContent));
    await shot(page, '15-quota-exceeded');
    await row.locator('button.remove').click();
    await row.waitFor({ state: 'detached' });
    await context.close();
  });

  test('names and messages are held to the broker\'s limits', async () => {
    const { context, page } = await signedIn(unique('lena').padEnd(64, 'l'));
    assert.equal(await page.getAttribute('#username', 'maxlength'), '64');
    assert.equal(await page.getAttribute('#member-name', 'maxlength'), '64');
    const posts = recordRequests(page, 'POST', /^\/channels$/);
    // 80 characters, counted as the broker does (an emoji is one, not two UTF-16 units).
    const base80 = `${unique('limit')}🙂`;
    const eighty = base80 + 'x'.repeat(80 - [...base80].length);
    assert.equal([...eighty].length, 80);
    await page.fill('#channel-name', `${eighty}x`);
    assert.equal(await page.$eval('#channel-name', (input) => input.validity.valid), false, '81 characters are refused');
    await page.press('#channel-name', 'Enter');
    assert.match(await page.$eval('#channel-name', (input) => input.validationMessage), /at most 80 characters/);
    assert.deepEqual(posts, [], 'nothing was sent');
    await createChannel(page, eighty);
    assert.equal(posts.length, 1);
    await page.fill('#composer-input', 'm'.repeat(4001));
    assert.equal(await page.$eval('#composer-input', (input) => input.validity.valid), false, '4001 characters are refused');
    await send(page, 'm'.repeat(4000));
    await context.close();
  });

  test('axe-core finds no serious or critical violations', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(base);
    await page.waitForSelector('#login:not([hidden])');
    assert.deepEqual(await axeViolations(page), [], 'sign-in page');
    await context.close();

    const { context: other, page: chat } = await signedIn(unique('axel'));
    await createChannel(chat, unique('a11y'));
    await chat.setInputFiles('#file-input', { name: 'pixel.png', mimeType: 'image/png', buffer: PNG });
    await uploadStatus(chat, 'pixel.png', 'done');
    await send(chat, 'accessible');
    await chat.setInputFiles('#file-input', { name: 'draft.txt', mimeType: 'text/plain', buffer: Buffer.from('draft') });
    await uploadStatus(chat, 'draft.txt', 'done');
    await chat.waitForSelector('#messages .attachment img.thumb');
    assert.deepEqual(await axeViolations(chat), [], 'chat with a message, a thumbnail and a pending file');
    await other.close();
  });
});
