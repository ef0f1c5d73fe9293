/**
 * durable()'s decisions, as tables: when one waiter is durable, stopped, closed or still waiting; when
 * the waiters start an upload of their own; which options it takes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SyncError } from 'drizzle-libsql-blob';
import { DURABLE_TIMEOUT_MS, durableTimeout, uploadForWaitersNow, waiterVerdict, type DurabilityState, type UploadState } from '../../src/sync/durability.ts';

const lost = new SyncError('LEASE_LOST', 'taken');
const base: DurabilityState = { covered: 5, dirtyAtStart: false, stopped: undefined, closed: false };

test('waiterVerdict: durable once covered (even after a stop or close), else why it never will be, else waiting', () => {
  const rows: [string, number, Partial<DurabilityState>, ReturnType<typeof waiterVerdict>][] = [
    ['covered exactly', 5, {}, 'durable'],
    ['covered with more', 3, {}, 'durable'],
    ['nothing committed before the call', 0, { covered: 0 }, 'durable'],
    ['one commit short', 6, {}, 'waiting'],
    ['covered, but the file carried commits from before this process', 5, { dirtyAtStart: true }, 'waiting'],
    ['nothing committed here, the carried-over commits are not up yet', 0, { covered: 0, dirtyAtStart: true }, 'waiting'],
    ['covered, then the lease was lost: still durable', 5, { stopped: lost }, 'durable'],
    ['not covered, lease lost', 6, { stopped: lost }, 'stopped'],
    ['covered, then closed', 5, { closed: true }, 'durable'],
    ['not covered, closed', 6, { closed: true }, 'closed'],
    ['not covered, stopped and closed: the stop says why', 6, { stopped: lost, closed: true }, 'stopped'],
  ];
  for (const [name, target, state, expected] of rows) assert.equal(waiterVerdict(target, { ...base, ...state }), expected, name);
});

test('uploadForWaitersNow: at once for someone waiting, never beside a running upload, while closing or inside a backoff', () => {
  const ready: UploadState = { waiting: true, canSnapshot: true, running: false, closing: false, retryAt: 0, now: 1_000 };
  const rows: [string, Partial<UploadState>, boolean][] = [
    ['someone waits, nothing running', {}, true],
    ['nobody waits', { waiting: false }, false],
    ['a replica (no snapshots)', { canSnapshot: false }, false],
    ['an upload is running: the next starts when it settles', { running: true }, false],
    ['close() runs the final snapshot', { closing: true }, false],
    ['inside the backoff after a failure', { retryAt: 1_001 }, false],
    ['the backoff just ended', { retryAt: 1_000 }, true],
  ];
  for (const [name, state, expected] of rows) assert.equal(uploadForWaitersNow({ ...ready, ...state }), expected, name);
});

test('durableTimeout: the default, a valid timeout, and CONFIG naming the fix for anything else', () => {
  assert.equal(durableTimeout(undefined), DURABLE_TIMEOUT_MS);
  assert.equal(durableTimeout({}), DURABLE_TIMEOUT_MS);
  assert.equal(durableTimeout({ timeoutMs: 250 }), 250);
  const bad: [unknown, RegExp][] = [
    [{ timeoutMs: 0 }, /timeoutMs must be a positive number/],
    [{ timeoutMs: -1 }, /timeoutMs must be a positive number/],
    [{ timeoutMs: Number.POSITIVE_INFINITY }, /timeoutMs must be a positive number/],
    [{ timeoutMs: '5s' }, /timeoutMs must be a positive number.*"5s"/],
    [{ timeoutMS: 10 }, /unknown option 'timeoutMS' — did you mean 'timeoutMs'\?/],
    [5, /takes an options object/],
    [null, /takes an options object/],
  ];
  for (const [options, message] of bad) {
    assert.throws(() => durableTimeout(options as never), (e: unknown) => e instanceof SyncError && e.code === 'CONFIG' && message.test(e.message), JSON.stringify(options));
  }
});
