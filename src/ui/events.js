// The live event stream (`/ws`): connect, resume after the last event seen,
// reconnect with backoff, and apply each event to the page through `view`
// (the conversation's functions, passed in by app.js):
//   { upsertMessage(message), updateFile(file), removeFile(messageId, fileId), loadChannels(), openChannel(id) }

import { api } from './api.js';
import { $ } from './dom.js';
import { state } from './state.js';

/**
 * Opens the event stream, resuming after the last event seen; resolves on
 * the first frame (or when the attempt fails). Reconnects with backoff and
 * shows "Reconnecting…" while the stream is down.
 */
export function connectEvents(view) {
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
        if (resync) reload(view).catch(() => {});
        opened();
        return;
      }
      // At least once: a frame already handled (same or older id) is dropped.
      if (state.lastEventId !== null && event.id <= state.lastEventId) return;
      state.lastEventId = event.id;
      handleEvent(event, view);
    });
    socket.addEventListener('close', () => {
      opened();
      if (state.socket !== socket || !state.token) return;
      $('#connection').hidden = false;
      // A socket ends with its token: an expired session signs out (api() does on 401).
      api('GET', '/auth/me').catch(() => {});
      state.socketRetry += 1;
      const backoff = Math.min(10_000, 250 * 2 ** state.socketRetry);
      setTimeout(() => connectEvents(view), backoff / 2 + Math.random() * backoff / 2);
    });
  });
}

/** Reloads channels and the open channel (after `resync_required`). */
async function reload(view) {
  await view.loadChannels();
  if (state.channelId && state.channels.some((c) => c.id === state.channelId)) await view.openChannel(state.channelId);
}

function handleEvent(event, view) {
  switch (event.type) {
    case 'message_created':
    case 'message_updated':
      view.upsertMessage(event.message);
      break;
    case 'file_upload_complete': {
      const message = state.messages.get(event.message_id);
      if (message && !message.files.some((f) => f.id === event.file.id)) {
        view.upsertMessage({ ...message, files: [...message.files, event.file] });
      }
      break;
    }
    case 'file_updated':
      // An image's preview job finished: its thumbnail (or none) for who shows it.
      if (event.channel_id === state.channelId) view.updateFile(event.file);
      break;
    case 'file_deleted':
      if (event.channel_id === state.channelId) view.removeFile(event.message_id, event.file_id);
      break;
    case 'member_joined':
    case 'member_left':
      if (event.user_id === state.user.id) {
        view.loadChannels().catch(() => {});
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
