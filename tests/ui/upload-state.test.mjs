// Unit tests of the composer's upload state machine (src/ui/upload-state.js),
// in plain node: the module touches neither the DOM nor the network.
//   node --test upload-state.test.mjs

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  BUSY, Status, TransitionError, UNFINISHED, UploadEvent, can, multipartGone, retryFrom, retryable, transition,
} from '../../src/ui/upload-state.js';

const { QUEUED, UPLOADING, CONFIRMING, DONE, ERROR, PAUSED, CANCELED } = Status;
const STATUSES = Object.values(Status);
const EVENTS = Object.values(UploadEvent);

/** Every allowed transition: [from, event, to]. */
const ALLOWED = [
  [QUEUED, 'start', UPLOADING],
  [ERROR, 'retry', UPLOADING],
  [PAUSED, 'resume', UPLOADING],
  [UPLOADING, 'sent', CONFIRMING],
  [CONFIRMING, 'confirmed', DONE],
  [UPLOADING, 'fail', ERROR],
  [CONFIRMING, 'fail', ERROR],
  [QUEUED, 'cancel', CANCELED],
  [UPLOADING, 'cancel', CANCELED],
  [CONFIRMING, 'cancel', CANCELED],
  [DONE, 'cancel', CANCELED],
  [ERROR, 'cancel', CANCELED],
  [PAUSED, 'cancel', CANCELED],
];

/** An ApiError-like failure. */
const failure = (status, code) => Object.assign(new Error(code), { status, code });

describe('statuses and events', () => {
  test('are the strings the page and its tests use', () => {
    assert.deepEqual(STATUSES, ['queued', 'uploading', 'confirming', 'done', 'error', 'paused', 'canceled']);
    assert.deepEqual(EVENTS, ['start', 'retry', 'resume', 'sent', 'confirmed', 'fail', 'cancel']);
    assert.ok(Object.isFrozen(Status) && Object.isFrozen(UploadEvent));
  });

  test('busy and unfinished statuses', () => {
    assert.deepEqual([...BUSY], [QUEUED, UPLOADING, CONFIRMING]);
    assert.deepEqual([...UNFINISHED], [QUEUED, UPLOADING, CONFIRMING, PAUSED]);
  });
});

describe('transition', () => {
  for (const [from, event, to] of ALLOWED) {
    test(`${from} --${event}--> ${to}`, () => {
      const upload = { status: from, retryable: from === ERROR ? true : null };
      assert.equal(can(upload, event), true);
      assert.equal(transition(upload, event), to);
      assert.equal(upload.status, from, 'the upload itself is not changed');
    });
  }

  test('every other status and event pair is refused', () => {
    const allowed = new Set(ALLOWED.map(([from, event]) => `${from} ${event}`));
    let refused = 0;
    for (const status of STATUSES) {
      for (const event of EVENTS) {
        if (allowed.has(`${status} ${event}`)) continue;
        const upload = { status, retryable: true };
        assert.equal(can(upload, event), false, `${status} ${event}`);
        assert.throws(() => transition(upload, event), (error) => {
          assert.ok(error instanceof TransitionError);
          assert.equal(error.from, status);
          assert.equal(error.event, event);
          assert.match(error.message, new RegExp(`${status} cannot ${event}`));
          return true;
        });
        refused += 1;
      }
    }
    assert.equal(refused, STATUSES.length * EVENTS.length - ALLOWED.length);
  });

  test('a few refusals that matter', () => {
    // A canceled upload stays canceled, even when its confirm comes back.
    assert.equal(can({ status: CANCELED }, 'confirmed'), false);
    assert.equal(can({ status: CANCELED }, 'fail'), false);
    assert.equal(can({ status: CANCELED }, 'cancel'), false);
    // Nothing is confirmed without its bytes, nor done twice.
    assert.equal(can({ status: UPLOADING }, 'confirmed'), false);
    assert.equal(can({ status: DONE }, 'start'), false);
    // A running upload is not started again (a second click on Retry).
    assert.equal(can({ status: UPLOADING, retryable: true }, 'retry'), false);
    // Retry is for failures, resume for paused uploads only.
    assert.equal(can({ status: PAUSED }, 'retry'), false);
    assert.equal(can({ status: ERROR, retryable: true }, 'resume'), false);
  });

  test('retry is refused after a failure that is not retryable', () => {
    assert.equal(can({ status: ERROR, retryable: false }, 'retry'), false);
    assert.throws(() => transition({ status: ERROR, retryable: false }, 'retry'), TransitionError);
    // ... but the upload can still be removed.
    assert.equal(transition({ status: ERROR, retryable: false }, 'cancel'), CANCELED);
    // Not classified (an older upload object): retry allowed, as before.
    assert.equal(transition({ status: ERROR }, 'retry'), UPLOADING);
  });

  test('unknown events and statuses are refused', () => {
    assert.throws(() => transition({ status: QUEUED }, 'explode'), TransitionError);
    assert.throws(() => transition({ status: QUEUED }, 'toString'), TransitionError);
    assert.throws(() => transition({ status: 'failed' }, 'retry'), TransitionError);
    assert.throws(() => transition({ status: undefined }, 'cancel'), TransitionError);
  });

  test('a whole upload, a failure and its retry', () => {
    const upload = { status: QUEUED };
    for (const event of ['start', 'sent', 'fail']) upload.status = transition(upload, event);
    assert.equal(upload.status, ERROR);
    upload.retryable = retryable(failure(0, 'network_error'));
    for (const event of ['retry', 'sent', 'confirmed', 'cancel']) upload.status = transition(upload, event);
    assert.equal(upload.status, CANCELED);
  });
});

describe('retryable', () => {
  const yes = [
    ['a network failure', failure(0, 'network_error')],
    ['an interrupted PUT', failure(0, 'canceled')],
    ['a request timeout', failure(408, 'unknown')],
    ['rate limiting', failure(429, 'rate_limited')],
    ['an internal error', failure(500, 'internal')],
    ['a store error', failure(502, 'storage_error')],
    ['the database away', failure(503, 'database_unavailable')],
    ['the store away', failure(503, 'storage_unavailable')],
    ['the store failing a PUT', failure(503, 'storage_refused')],
    ['an aborted or rejected upload (presign again)', failure(409, 'upload_not_pending')],
    ['an expired upload (presign again)', failure(410, 'upload_expired')],
    ['no object yet (PUT again)', failure(422, 'object_missing')],
    ['a truncated object (PUT again)', failure(422, 'size_mismatch')],
    ['a missing part', failure(422, 'part_missing')],
    ['a wrong part', failure(422, 'part_mismatch')],
    ['an expired link', failure(403, 'link_expired')],
    ['an error of unknown shape', new TypeError('oops')],
  ];
  for (const [what, error] of yes) {
    test(`retries ${what}`, () => assert.equal(retryable(error), true));
  }

  const no = [
    ['content that is not its type', failure(422, 'content_mismatch')],
    ['a wrong checksum', failure(422, 'checksum_mismatch')],
    ['an extension that is not its type', failure(400, 'extension_mismatch')],
    ['a bad file name', failure(400, 'invalid_file_name')],
    ['a disallowed type', failure(415, 'type_not_allowed')],
    ['a file too large', failure(413, 'file_too_large')],
    ['a full storage quota', failure(413, 'quota_exceeded')],
    ['a message one cannot attach to', failure(400, 'file_not_attachable')],
    ['a multipart upload confirmed with /confirm', failure(409, 'upload_is_multipart')],
    ['no permission', failure(403, 'forbidden')],
    ['the store refusing the PUT', failure(403, 'storage_refused')],
    ['a channel or upload that is gone', failure(404, 'not_found')],
    ['a signed-out session', failure(401, 'unauthorized')],
    ['a hidden ETag (CORS rules)', failure(0, 'no_etag')],
  ];
  for (const [what, error] of no) {
    test(`does not retry ${what}`, () => assert.equal(retryable(error), false));
  }
});

describe('a full quota (413 quota_exceeded)', () => {
  const refusal = failure(413, 'quota_exceeded');
  refusal.message = 'storage quota exceeded: you store 2.5 MiB of your 3.0 MiB; this file needs 1.0 MiB';

  test('is final: no retry, only removal', () => {
    assert.equal(retryable(refusal), false);
    // However it arrives: the code decides, not the status.
    assert.equal(retryable(failure(503, 'quota_exceeded')), false);
    assert.equal(retryable({ code: 'quota_exceeded' }), false);
    const upload = { status: UPLOADING };
    upload.status = transition(upload, 'fail');
    upload.retryable = retryable(refusal);
    assert.equal(can(upload, 'retry'), false, 'Retry is not offered');
    assert.equal(can(upload, 'resume'), false);
    assert.equal(transition(upload, 'cancel'), CANCELED, 'Remove is');
    // Nothing restarts it from elsewhere either.
    assert.equal(retryFrom(refusal), null);
    assert.equal(multipartGone(refusal), false);
  });
});

describe('where a retry starts', () => {
  test('retryFrom', () => {
    assert.equal(retryFrom(failure(409, 'upload_not_pending')), 'presign');
    assert.equal(retryFrom(failure(410, 'upload_expired')), 'presign');
    assert.equal(retryFrom(failure(422, 'size_mismatch')), 'presign');
    assert.equal(retryFrom(failure(403, 'link_expired')), 'presign');
    assert.equal(retryFrom(failure(422, 'object_missing')), 'put');
    assert.equal(retryFrom(failure(0, 'network_error')), null);
    assert.equal(retryFrom(failure(503, 'storage_unavailable')), null);
    assert.equal(retryFrom(undefined), null);
  });

  test('multipartGone', () => {
    assert.equal(multipartGone(failure(409, 'upload_not_pending')), true);
    assert.equal(multipartGone(failure(410, 'upload_expired')), true);
    assert.equal(multipartGone(failure(422, 'part_missing')), false);
    assert.equal(multipartGone(failure(0, 'network_error')), false);
  });
});
