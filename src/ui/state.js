// The client's one shared state. The modules import it from here; the DOM is
// drawn from it. The tests read it as `window.chatgenius.state`.

/** Everything the page knows; the DOM is drawn from it. */
export const state = {
  token: sessionStorage.getItem('cg.token'),
  user: JSON.parse(sessionStorage.getItem('cg.user') || 'null'),
  config: null,
  channels: [],
  channelId: null,
  /** user id → username of the current channel's members. */
  names: new Map(),
  /** message id → message, current channel only. */
  messages: new Map(),
  /** file id → file as the last `file_updated` of the current channel had it. */
  fileUpdates: new Map(),
  /** Files chosen in the composer (see `newUpload` in uploads.js). */
  uploads: [],
  socket: null,
  socketRetry: 0,
  /** `id` of the last event frame handled: the stream resumes after it. */
  lastEventId: null,
};
