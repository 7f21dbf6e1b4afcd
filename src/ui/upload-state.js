// The upload state machine of the composer: which status an upload may move
// to on which event, and which failures are worth a retry. Pure: no DOM, no
// network, nothing touched at import time (the unit tests run it in node).

/** Where an upload stands; the composer row's `data-status` is this string. */
export const Status = Object.freeze({
  /** Chosen and validated, not started yet. */
  QUEUED: 'queued',
  /** Presigning or sending bytes to the object store. */
  UPLOADING: 'uploading',
  /** Bytes sent; the broker verifies and records the file (confirm/complete). */
  CONFIRMING: 'confirming',
  /** Recorded: ready to be sent with a message (or added to one). */
  DONE: 'done',
  /** Failed; `retryable` tells whether Retry may try again. */
  ERROR: 'error',
  /** A multipart upload found after a reload, waiting for its file. */
  PAUSED: 'paused',
  /** Canceled or removed by the user; final. */
  CANCELED: 'canceled',
});

/** What happens to an upload. */
export const UploadEvent = Object.freeze({
  /** A new upload begins. */
  START: 'start',
  /** The user retries a failed upload (only when the failure is retryable). */
  RETRY: 'retry',
  /** The user picked the file of a paused upload again. */
  RESUME: 'resume',
  /** Every byte is in the store; confirming begins. */
  SENT: 'sent',
  /** The broker recorded the file. */
  CONFIRMED: 'confirmed',
  /** Something went wrong while uploading or confirming. */
  FAIL: 'fail',
  /** The user canceled the upload or removed the file. */
  CANCEL: 'cancel',
});

const { QUEUED, UPLOADING, CONFIRMING, DONE, ERROR, PAUSED, CANCELED } = Status;

/** event → status it applies in → the status it leads to. */
const TRANSITIONS = Object.freeze({
  start: { [QUEUED]: UPLOADING },
  retry: { [ERROR]: UPLOADING },
  resume: { [PAUSED]: UPLOADING },
  sent: { [UPLOADING]: CONFIRMING },
  confirmed: { [CONFIRMING]: DONE },
  fail: { [UPLOADING]: ERROR, [CONFIRMING]: ERROR },
  cancel: {
    [QUEUED]: CANCELED,
    [UPLOADING]: CANCELED,
    [CONFIRMING]: CANCELED,
    [DONE]: CANCELED,
    [ERROR]: CANCELED,
    [PAUSED]: CANCELED,
  },
});

/** An event the upload's status does not allow. */
export class TransitionError extends Error {
  constructor(from, event) {
    super(`an upload that is ${from} cannot ${event}`);
    this.name = 'TransitionError';
    this.from = from;
    this.event = event;
  }
}

/** The status `event` leads to from `upload`'s, or null when it is refused. */
function next(upload, event) {
  const to = Object.hasOwn(TRANSITIONS, event) ? TRANSITIONS[event][upload.status] : undefined;
  if (to === undefined) return null;
  // A failure nothing can mend is not retried.
  if (event === UploadEvent.RETRY && upload.retryable === false) return null;
  return to;
}

/** Whether `event` is allowed for `upload` now. */
export function can(upload, event) {
  return next(upload, event) !== null;
}

/**
 * The status `upload` (its `status`, and `retryable` after a failure) moves
 * to on `event`; throws a `TransitionError` for an impossible transition.
 * Does not change `upload`.
 */
export function transition(upload, event) {
  const to = next(upload, event);
  if (to === null) throw new TransitionError(upload.status, event);
  return to;
}

/** Statuses in which an upload is under way (the paperclip shows it). */
export const BUSY = Object.freeze([QUEUED, UPLOADING, CONFIRMING]);

/** Statuses in which an upload is unfinished: its row offers Cancel, not Remove. */
export const UNFINISHED = Object.freeze([QUEUED, UPLOADING, CONFIRMING, PAUSED]);

/**
 * Refusals a retry can get past, because the client starts again where it
 * must (see `retryFrom`) or the store merely lost parts.
 */
const RECOVERABLE = new Set([
  'upload_not_pending', // aborted or rejected: presign again
  'upload_expired', // expired before confirm: presign again
  'object_missing', // nothing arrived in the store: PUT again
  'size_mismatch', // truncated: presign and PUT again (multipart: resend the part)
  'part_missing', // multipart: the parts are listed again and the missing ones sent
  'part_mismatch',
  'link_expired', // the presigned link expired: a fresh one is asked for
]);

/**
 * Refusals no retry gets past, whatever their status: the user must first
 * make room (delete files) or pick another file.
 */
const FINAL = new Set([
  'quota_exceeded', // 413: the user's or channel's storage quota is full; the message says how full
]);

/**
 * Whether retrying can help after `error` (an ApiError-like `{ status, code }`):
 * network failures (status 0), 408, 429 and 5xx, and the refusals in
 * RECOVERABLE are; the refusals in FINAL (a full quota) and anything else the
 * broker or the store refused (the file's type, extension, size, content or
 * checksum, permissions, a missing channel) are not. An error of unknown
 * shape (no status) is, as before.
 */
export function retryable(error) {
  const status = error?.status;
  const code = error?.code;
  if (FINAL.has(code)) return false;
  if (typeof status !== 'number') return true;
  if (status === 0) return code !== 'no_etag'; // a missing ETag is the store's CORS rules
  if (RECOVERABLE.has(code)) return true;
  return status === 408 || status === 429 || status >= 500;
}

/**
 * Where a single-PUT upload's retry starts after `error`: 'presign' (a new
 * upload), 'put' (send the bytes again), or null (where it stopped).
 */
export function retryFrom(error) {
  switch (error?.code) {
    case 'upload_not_pending':
    case 'upload_expired':
    case 'size_mismatch':
    case 'link_expired':
      return 'presign';
    case 'object_missing':
      return 'put';
    default:
      return null;
  }
}

/** Whether `error` means a multipart upload is gone and must start over. */
export function multipartGone(error) {
  return error?.code === 'upload_not_pending' || error?.code === 'upload_expired';
}
