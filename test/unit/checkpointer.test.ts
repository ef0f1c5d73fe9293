/** The checkpointer's decisions (pure): when to look at the WAL, when to fold it, when to look again. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HOLD_ESCALATED_MAX_MS, HOLD_MAX_MS, HOLD_PENDING_FACTOR, HOLD_WRITES_FACTOR, nextHoldCapMs, WAL_FILE_LIMIT_BYTES, checkpointKind, checkpointOutcome, nextCheckAt, pendingWalBytes, walCheckAt, walNeedsCheckpoint, writerConnectionSetup, WAL_CHECKPOINT_BYTES, WRITER_BUSY_WAIT_MS, type WalCheckState } from '../../src/sync/checkpointer.ts';

const base: WalCheckState = { busy: false, stopped: false, committedSinceCheck: true, lastCheckAt: 9_000, retryAt: 0, minIntervalMs: 100 };

test('walCheckAt: only after a commit, one check at a time, one per interval, none before a retry time, none once stopped', () => {
  const table: Array<[string, Partial<WalCheckState>, number | null]> = [
    ['a commit, last check long ago: due since its interval ended', {}, 9_100],
    ['never checked: due at once', { lastCheckAt: Number.NEGATIVE_INFINITY }, 0],
    ['no commit since the last check: nothing grew', { committedSinceCheck: false }, null],
    ['a check or checkpoint in flight: looked at again when it settles', { busy: true }, null],
    ['stopped (closing)', { stopped: true }, null],
    ['checked at 9 950: not before 10 050', { lastCheckAt: 9_950 }, 10_050],
    ['backing off after a failure: the retry time wins', { retryAt: 20_000 }, 20_000],
    ['interval 0 (tests): at once', { lastCheckAt: 10_000, minIntervalMs: 0 }, 10_000],
  ];
  for (const [name, patch, expected] of table) assert.equal(walCheckAt({ ...base, ...patch }), expected, name);
});

test('pendingWalBytes: frames not yet folded (mxFrame - nBackfill) x (page + frame header), from the WAL index header; null when torn or uninitialised', () => {
  const header = (pageField: number, mxFrame: number, nBackfill: number, le = true) => {
    const h = Buffer.alloc(136);
    const u16 = (v: number, o: number) => (le ? h.writeUInt16LE(v, o) : h.writeUInt16BE(v, o));
    const u32 = (v: number, o: number) => (le ? h.writeUInt32LE(v, o) : h.writeUInt32BE(v, o));
    h[12] = pageField === 0 ? 0 : 1; // isInit (an initialised index has a page size)
    u16(pageField, 14);
    u32(mxFrame, 16);
    h.copy(h, 48, 0, 48); // the second copy of the header
    u32(nBackfill, 96);
    return h;
  };
  assert.equal(pendingWalBytes(header(4096, 1000, 0), true), 1000 * 4120);
  assert.equal(pendingWalBytes(header(4096, 1000, 400), true), 600 * 4120);
  assert.equal(pendingWalBytes(header(4096, 1000, 1000), true), 0, 'all folded');
  assert.equal(pendingWalBytes(header(1, 10, 0), true), 10 * (65536 + 24), 'page size 65536 is stored as 1');
  assert.equal(pendingWalBytes(header(4096, 7, 2, false), false), 5 * 4120, 'big-endian machines');
  const torn = header(4096, 1000, 0);
  torn.writeUInt32LE(1001, 16); // a writer between the two copies
  assert.equal(pendingWalBytes(torn, true), null);
  assert.equal(pendingWalBytes(header(0, 0, 0), true), null, 'not initialised');
  assert.equal(pendingWalBytes(Buffer.alloc(10), true), null, 'short read');
});

test('walNeedsCheckpoint: only more pending than the bound', () => {
  const bound = 64;
  const table: Array<[number, boolean]> = [
    [0, false],
    [63, false],
    [64, false],
    [65, true],
    [10_000, true],
  ];
  for (const [walBytes, expected] of table) assert.equal(walNeedsCheckpoint(walBytes, bound), expected, `${walBytes} bytes`);
});

test('checkpointKind: past the bound, writes held for a second pass when the backlog is small (so the WAL restarts), passive when it is large or there is no write lock; past 16x the file limit held whatever is pending', () => {
  const bound = 64;
  const fileLimitBytes = 1000;
  const table: Array<[string, { pendingBytes: number; fileBytes: number; canHoldWrites: boolean; lastHoldCapped?: boolean }, string]> = [
    ['little pending, small file', { pendingBytes: 10, fileBytes: 64, canHoldWrites: true }, 'none'],
    ['exactly the bound pending', { pendingBytes: 64, fileBytes: 100, canHoldWrites: true }, 'none'],
    ['pending past the bound: the routine checkpoint, held so the WAL restarts', { pendingBytes: 65, fileBytes: 100, canHoldWrites: true }, 'hold-writes'],
    ['pending at 2x the bound', { pendingBytes: 2 * 64, fileBytes: 200, canHoldWrites: true }, 'hold-writes'],
    ['pending past 2x the bound (a snapshot held frames back): a plain pass first', { pendingBytes: 2 * 64 + 1, fileBytes: 200, canHoldWrites: true }, 'passive'],
    ['pending past the bound, no write lock (no client yet)', { pendingBytes: 65, fileBytes: 100, canHoldWrites: false }, 'passive'],
    ['file 8x the limit, nearly all folded: a checkpoint will let it restart', { pendingBytes: 1, fileBytes: 8 * fileLimitBytes + 1, canHoldWrites: true }, 'none'],
    ['file past 16x the limit, nearly all folded', { pendingBytes: 1, fileBytes: 16 * fileLimitBytes + 1, canHoldWrites: true }, 'hold-writes'],
    ['file past 16x the limit, much pending', { pendingBytes: 5000, fileBytes: 16 * fileLimitBytes + 1, canHoldWrites: true }, 'hold-writes'],
    ['file exactly 16x the limit', { pendingBytes: 1, fileBytes: 16 * fileLimitBytes, canHoldWrites: true }, 'none'],
    ['file past 16x the limit, no write lock', { pendingBytes: 1, fileBytes: 50_000, canHoldWrites: false }, 'none'],
    ['file past 16x the limit, much pending, no write lock', { pendingBytes: 100, fileBytes: 50_000, canHoldWrites: false }, 'passive'],
    ['the last held pass ran into its cap, little pending: held again now (not after another bound)', { pendingBytes: 10, fileBytes: 200, canHoldWrites: true, lastHoldCapped: true }, 'hold-writes'],
    ['the last held pass ran into its cap, nothing pending', { pendingBytes: 0, fileBytes: 200, canHoldWrites: true, lastHoldCapped: true }, 'none'],
    ['the last held pass ran into its cap, no write lock', { pendingBytes: 10, fileBytes: 200, canHoldWrites: false, lastHoldCapped: true }, 'none'],
    ['the last held pass ran into its cap, a large backlog: still held (the first pass decides)', { pendingBytes: 5000, fileBytes: 6000, canHoldWrites: true, lastHoldCapped: true }, 'hold-writes'],
  ];
  assert.equal(HOLD_WRITES_FACTOR, 16);
  assert.equal(HOLD_PENDING_FACTOR, 2);
  for (const [name, w, expected] of table) assert.equal(checkpointKind({ ...w, boundBytes: bound, fileLimitBytes }), expected, name);
});

test('nextHoldCapMs: twice what the last held pass took, doubled when it ran into its cap, within 15..120 ms', () => {
  assert.equal(HOLD_MAX_MS, 15);
  assert.equal(HOLD_ESCALATED_MAX_MS, 120);
  const table: Array<[string, number, { heldMs: number; capped: boolean }, number]> = [
    ['a quick pass keeps the floor', 15, { heldMs: 2, capped: false }, 15],
    ['a pass of 10 ms: 20 ms next', 15, { heldMs: 10, capped: false }, 20],
    ['capped at 15: 30 next', 15, { heldMs: 15.2, capped: true }, 30],
    ['capped at 30: 60 next', 30, { heldMs: 30.1, capped: true }, 60],
    ['capped at 60: 120 next', 60, { heldMs: 60, capped: true }, 120],
    ['capped at the ceiling stays there', 120, { heldMs: 120, capped: true }, 120],
    ['a pass of 20 ms under a 120 ms cap: 40 next', 120, { heldMs: 20, capped: false }, 40],
    ['a pass of 90 ms: the ceiling', 120, { heldMs: 90, capped: false }, 120],
  ];
  for (const [name, cap, last, expected] of table) assert.equal(nextHoldCapMs(cap, last), expected, name);
});

test('checkpointOutcome and nextCheckAt: complete looks again at once, partial (a reader or another checkpoint) in 1 s, failures back off to 60 s', () => {
  assert.equal(checkpointOutcome({ busy: false, walFrames: 100, checkpointedFrames: 100 }), 'complete');
  assert.equal(checkpointOutcome({ busy: false, walFrames: 0, checkpointedFrames: 0 }), 'complete');
  assert.equal(checkpointOutcome({ busy: false, walFrames: 100, checkpointedFrames: 40 }), 'partial');
  assert.equal(checkpointOutcome({ busy: true, walFrames: -1, checkpointedFrames: -1 }), 'partial');
  assert.equal(checkpointOutcome(new Error('disk I/O error')), 'failed');
  const now = 1_000_000;
  const table: Array<[Parameters<typeof nextCheckAt>[0], number, number]> = [
    ['complete', 0, 0],
    ['partial', 0, now + 1_000],
    ['failed', 1, now + 1_000],
    ['failed', 2, now + 2_000],
    ['failed', 5, now + 16_000],
    ['failed', 7, now + 60_000],
    ['failed', 30, now + 60_000],
  ];
  for (const [outcome, failures, expected] of table) assert.equal(nextCheckAt(outcome, now, failures), expected, `${outcome} x${failures}`);
});

test('writerConnectionSetup: synchronous per the option, no automatic checkpoints, the WAL file cut back to its limit on restart, a short wait for SQLite\'s write lock; checkpoints at 4 MiB, like SQLite\'s own mark', () => {
  assert.equal(
    writerConnectionSetup('PRAGMA synchronous=NORMAL'),
    `PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=${WAL_FILE_LIMIT_BYTES}; PRAGMA busy_timeout=${WRITER_BUSY_WAIT_MS}`,
  );
  assert.equal(WAL_CHECKPOINT_BYTES, 4 * 1024 * 1024);
  assert.equal(WAL_FILE_LIMIT_BYTES, 64 * 1024 * 1024);
});
