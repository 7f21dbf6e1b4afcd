// Calls to the broker's API, and the session's token: sign in, sign out.

import { $ } from './dom.js';
import { state } from './state.js';

/** An error the broker answered with its JSON error body, or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A JSON request as the signed-in user; a 401 signs out. */
export async function api(method, path, body) {
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

// ------------------------------------------------------------------ session

/** Dev login: keeps the token and user (for this tab) in the state. */
export async function signIn(username) {
  const login = await api('POST', '/auth/dev-login', { username });
  state.token = login.token;
  state.user = login.user;
  sessionStorage.setItem('cg.token', login.token);
  sessionStorage.setItem('cg.user', JSON.stringify(login.user));
  return login.user;
}

/** Forgets the session, closes the event stream and shows the sign-in form. */
export function signOut() {
  delete document.body.dataset.ready;
  state.token = null;
  state.user = null;
  sessionStorage.removeItem('cg.token');
  sessionStorage.removeItem('cg.user');
  state.socket?.close();
  state.socket = null;
  state.lastEventId = null;
  $('#app').hidden = true;
  $('#skip-link').hidden = true;
  $('#login').hidden = false;
}
