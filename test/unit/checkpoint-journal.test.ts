/**
 * The checkpoint's journal (src/sync/wal/checkpoint-journal.ts): what the worker publishes, in order,
 * as the app's thread reads it; when a reader of the WAL may go beside a checkpoint in flight.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ABANDONED, CHANGES, DONE, ENTRIES, FAILED, HELD, JournalWriter, READY, RUNNING, SHARED_INTS, announce, claimRestart, readJournal, readSecondPassCursor, releaseHeldWrites, walTurnFree, writeSecondPassCursor } from '../../src/sync/wal/checkpoint-journal.ts';
import type { ScanResult } from '../../src/sync/wal/changed-pages.ts';

test('walTurnFree: a reader of the WAL goes once the checkpoint\'s scan is in the record (its fold may run), not while it is about to scan', () => {
  const rows: [string, number, number, boolean][] = [
    ['first pass, before its scan', RUNNING, 0, false],
    ['first pass folding, its scan taken in', RUNNING, 1, true],
    ['asking for held writes (not granted while a reader has its turn)', READY, 1, true],
    ['held: the second pass is about to scan', HELD, 1, false],
    ['held: the second pass folding, its scan taken in', HELD, 2, true],
    ['the hold abandoned', ABANDONED, 1, true],
    ['done', DONE, 2, true],
    ['failed before any scan', FAILED, 0, true],
  ];
  for (const [name, state, scans, free] of rows) assert.equal(walTurnFree(state, scans), free, name);
});

test('the journal: entries read in order, each once, only once published; a scan too large to report becomes a broken one', () => {
  const shared = new Int32Array(new SharedArrayBuffer(SHARED_INTS * 4));
  const buffer = new SharedArrayBuffer(64 * 1024);
  const writer = new JournalWriter(shared, buffer);
  const position = { offset: 0, read: 0 };
  const scan = (to: number, pages: Array<[number, number]> = [[1, to]]): ScanResult => ({ salt: '0000000a11111111', from: to - 1, to, pages });
  assert.deepEqual(readJournal(shared, buffer, position), []);
  const changes = Atomics.load(shared, CHANGES);
  writer.scan(scan(3));
  assert.equal(Atomics.load(shared, CHANGES), changes + 1, 'each entry counts as a change (what the app thread waits on)');
  writer.folded(true);
  assert.deepEqual(readJournal(shared, buffer, position), [{ scan: scan(3) }, { folded: true }]);
  assert.deepEqual(readJournal(shared, buffer, position), [], 'read once');
  const huge = scan(9, Array.from({ length: 10_000 }, (_, i) => [i + 1, 9] as [number, number]));
  writer.scan(huge);
  writer.folded(false);
  const [big, fold] = readJournal(shared, buffer, position);
  assert.ok(big && 'scan' in big && big.scan.broken?.includes('more changed pages than it can report'), 'the oversized scan breaks the record');
  assert.deepEqual(big.scan.pages, []);
  assert.equal(big.scan.to, 9);
  assert.deepEqual(fold, { folded: false }, 'the entries after it still fit');
  assert.equal(Atomics.load(shared, ENTRIES), 4);
  announce(shared, DONE);
  assert.equal(Atomics.load(shared, 0), DONE);
});

test('the second pass\'s cursor goes through shared memory unchanged, the empty salt included', () => {
  const shared = new Int32Array(new SharedArrayBuffer(SHARED_INTS * 4));
  for (const cursor of [{ salt: 'ffffffff80000001', frame: 1234 }, { salt: '0000000a11111111', frame: 0 }, { salt: '', frame: 0 }]) {
    writeSecondPassCursor(shared, cursor);
    assert.deepEqual(readSecondPassCursor(shared), cursor);
  }
});

test("the WAL restart's handshake: the worker restarts only while the writes are held; a cap that runs out during the restart waits for it, one that ran out first refuses it", () => {
  const fresh = () => new Int32Array(new SharedArrayBuffer(SHARED_INTS * 4));
  // The worker claims first: the app's thread, capped, must wait (and no second claim is granted).
  let shared = fresh();
  assert.equal(claimRestart(shared), true);
  assert.equal(releaseHeldWrites(shared), 'restarting');
  assert.equal(claimRestart(shared), false);
  // The cap runs out first: the writes go, and the worker may not restart beside them.
  shared = fresh();
  assert.equal(releaseHeldWrites(shared), 'free');
  assert.equal(claimRestart(shared), false);
  assert.equal(releaseHeldWrites(shared), 'free');
  // The slot is its own: the cursor and state slots leave it alone.
  shared = fresh();
  writeSecondPassCursor(shared, { salt: 'ffffffffffffffff', frame: 0x7fffffff });
  announce(shared, HELD);
  assert.equal(claimRestart(shared), true);
  assert.deepEqual(readSecondPassCursor(shared), { salt: 'ffffffffffffffff', frame: 0x7fffffff });
});
