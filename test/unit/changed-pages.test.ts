/**
 * The page record's decisions as tables (src/sync/wal/changed-pages.ts): when a scan continues the
 * record and when the record is lost; positions across WAL generations; what an upload forgets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChangedPages, scanVerdict, type ScanResult, type WalCursor } from '../../src/sync/wal/changed-pages.ts';
import { isNextGeneration, parseFrameHeader, parseWalFileHeader, parseWalIndexHeader } from '../../src/sync/wal/wal-format.ts';

const G = '0000000a11111111';
const NEXT = '0000000b22222222'; // salt-1 + 1: the generation a restart starts
const OTHER = '1234567833333333';
const cursor = (over: Partial<WalCursor> = {}): WalCursor => ({ salt: G, frame: 10, base: 0, folded: false, ...over });
const scan = (over: Partial<ScanResult> = {}): ScanResult => ({ salt: G, from: 10, to: 20, pages: [], ...over });

test('scanVerdict: continue the generation, follow a restart after a fold, the fresh-WAL case; everything else is lost', () => {
  const rows: [string, WalCursor, ScanResult, 'apply' | 'lost'][] = [
    ['continues where the record is', cursor(), scan(), 'apply'],
    ['nothing new', cursor(), scan({ to: 10 }), 'apply'],
    ['starts past the record: frames skipped', cursor(), scan({ from: 12 }), 'lost'],
    ['starts before the record', cursor(), scan({ from: 8 }), 'lost'],
    ['fewer frames than read', cursor(), scan({ from: 10, to: 5 }), 'lost'],
    ['the next generation after a fold', cursor({ folded: true }), scan({ salt: NEXT, from: 0, to: 3, checkpointSeq: 4 }), 'apply'],
    ['the next generation without our fold', cursor(), scan({ salt: NEXT, from: 0, to: 3, checkpointSeq: 4 }), 'lost'],
    ['two restarts on', cursor({ folded: true }), scan({ salt: '0000000c22222222', from: 0, to: 3, checkpointSeq: 5 }), 'lost'],
    ['an unrelated WAL', cursor({ folded: true }), scan({ salt: OTHER, from: 0, to: 3, checkpointSeq: 1 }), 'lost'],
    ['fresh WAL from an empty start, file unchanged', cursor({ frame: 0, folded: true, fileStamp: 'a' }), scan({ salt: OTHER, from: 0, to: 3, checkpointSeq: 0, fileStamp: 'a' }), 'apply'],
    ['fresh WAL, but the file changed (someone folded and emptied the WAL)', cursor({ frame: 0, folded: true, fileStamp: 'a' }), scan({ salt: OTHER, from: 0, to: 3, checkpointSeq: 0, fileStamp: 'b' }), 'lost'],
    ['fresh-looking WAL after a restart we did not see (sequence 1)', cursor({ frame: 0, folded: true, fileStamp: 'a' }), scan({ salt: OTHER, from: 0, to: 3, checkpointSeq: 1, fileStamp: 'a' }), 'lost'],
    ['fresh-looking WAL, but frames of the old one had been read', cursor({ frame: 4, folded: true, fileStamp: 'a' }), scan({ salt: OTHER, from: 0, to: 3, checkpointSeq: 0, fileStamp: 'a' }), 'lost'],
    ['a broken WAL', cursor(), scan({ broken: 'frame 12 belongs to another generation' }), 'lost'],
  ];
  for (const [name, c, s, expected] of rows) assert.equal(scanVerdict(c, s).kind, expected, name);
});

test('ChangedPages: positions grow across generations; pagesUpTo and uploaded(upTo) split at a position', () => {
  const record = new ChangedPages(cursor({ frame: 0 }));
  record.apply(scan({ from: 0, to: 4, pages: [[7, 1], [9, 4], [1, 3]] }));
  assert.equal(record.position, 4);
  const upload = record.position;
  record.apply(scan({ from: 4, to: 6, pages: [[9, 6], [12, 5]], folded: true }));
  record.apply(scan({ salt: NEXT, from: 0, to: 2, pages: [[3, 2]] }));
  assert.equal(record.position, 8, 'the next generation continues the count');
  assert.deepEqual(record.pagesUpTo(upload), [1, 7], 'page 9 changed again after the upload point');
  assert.deepEqual(record.pagesUpTo(record.position), [1, 3, 7, 9, 12]);
  record.uploaded(upload, false);
  assert.deepEqual(record.pagesUpTo(record.position), [3, 9, 12], 'what changed after the upload stays');
  assert.equal(record.lost, undefined);
});

test('ChangedPages: a lost record stays lost until a whole-file upload taken at or after the break', () => {
  const record = new ChangedPages(cursor({ frame: 0 }));
  record.apply(scan({ from: 0, to: 4, pages: [[7, 1]] }));
  const before = record.position; // 4
  assert.equal(record.apply(scan({ salt: OTHER, from: 0, to: 3, pages: [[8, 2]], checkpointSeq: 2 })).kind, 'lost');
  assert.match(record.lost!, /not the one read so far/);
  const broke = before + 1; // the new WAL's frames count from here
  assert.equal(record.position, broke + 3);
  assert.deepEqual(record.pagesUpTo(record.position), [7, 8], 'the frames read after the break are recorded');
  record.uploaded(broke - 1, true);
  assert.ok(record.lost, 'an upload from before the break does not mend it');
  record.uploaded(broke, false);
  assert.ok(record.lost, 'an upload of the recorded pages alone does not mend it');
  assert.equal(record.apply(scan({ salt: OTHER, from: 3, to: 5, pages: [[2, 5]] })).kind, 'apply', 'it follows the WAL from the break on');
  record.uploaded(broke + 2, true);
  assert.equal(record.lost, undefined);
  assert.deepEqual(record.pagesUpTo(record.position), [2], 'changes after the whole-file upload are still recorded');
  record.markLost('a checkpoint failed');
  assert.equal(record.lost, 'a checkpoint failed');
  record.uploaded(record.position - 1, true);
  assert.ok(record.lost, 'marked at the current position');
  record.uploaded(record.position, true);
  assert.equal(record.lost, undefined);
});

test('WAL formats: file header, frame header, index header (both copies), generations', () => {
  const file = Buffer.alloc(32);
  file.writeUInt32BE(0x377f0682, 0);
  file.writeUInt32BE(3007000, 4);
  file.writeUInt32BE(4096, 8);
  file.writeUInt32BE(7, 12);
  Buffer.from(G, 'hex').copy(file, 16);
  assert.deepEqual(parseWalFileHeader(file), { pageSize: 4096, checkpointSeq: 7, salt: Buffer.from(G, 'hex') });
  assert.equal(parseWalFileHeader(Buffer.alloc(32)), null, 'no magic');
  assert.equal(parseWalFileHeader(Buffer.alloc(10)), null, 'too short');
  file.writeUInt32BE(1, 8);
  assert.equal(parseWalFileHeader(file)!.pageSize, 65536);

  const frame = Buffer.alloc(24);
  frame.writeUInt32BE(42, 0);
  frame.writeUInt32BE(100, 4);
  const parsed = parseFrameHeader(frame);
  assert.equal(parsed.pgno, 42);
  assert.equal(parsed.commitPages, 100);

  const shm = Buffer.alloc(136);
  shm[12] = 1;
  shm.writeUInt16LE(4096, 14);
  shm.writeUInt32LE(33, 16);
  Buffer.from(G, 'hex').copy(shm, 32);
  shm.copy(shm, 48, 0, 48);
  shm.writeUInt32LE(30, 96);
  assert.deepEqual(parseWalIndexHeader(shm, true), { pageSize: 4096, mxFrame: 33, nBackfill: 30, salt: Buffer.from(G, 'hex') });
  const torn = Buffer.from(shm);
  torn.writeUInt32LE(34, 16); // the first copy updated, the second not yet
  assert.equal(parseWalIndexHeader(torn, true), 'torn');
  const uninitialised = Buffer.from(shm);
  uninitialised[12] = 0;
  uninitialised[60] = 0;
  assert.equal(parseWalIndexHeader(uninitialised, true), 'empty');

  assert.equal(isNextGeneration(Buffer.from(G, 'hex'), Buffer.from(NEXT, 'hex')), true);
  assert.equal(isNextGeneration(Buffer.from('ffffffff00000000', 'hex'), Buffer.from('0000000012345678', 'hex')), true, 'salt-1 wraps');
  assert.equal(isNextGeneration(Buffer.from(G, 'hex'), Buffer.from(G, 'hex')), false);
});

test('ChangedPages.noteFolded: a fold reported after its scan marks the cursor folded only where the scan left it', () => {
  const rows: [string, WalCursor, ScanResult, boolean, boolean][] = [
    ['the record is where the scan ended: the next generation is expected', cursor({ frame: 20 }), scan(), true, true],
    ['the fold did not reach the end', cursor({ frame: 20 }), scan(), false, false],
    ['a delta read further meanwhile: frames past the scan were not folded by it', cursor({ frame: 25 }), scan(), true, false],
    ['the record is in another generation already', cursor({ salt: NEXT, frame: 20 }), scan(), true, false],
  ];
  for (const [name, at, s, folded, expected] of rows) {
    const record = new ChangedPages(at);
    record.noteFolded(s, folded);
    assert.equal(record.cursor.folded, expected, name);
  }
  // In order, as the checkpointer takes a journal in: the scan, a delta's scan of nothing new, the fold.
  const record = new ChangedPages(cursor());
  record.apply(scan());
  record.apply(scan({ from: 20, to: 20 }));
  assert.equal(record.apply(scan({ salt: NEXT, from: 0, to: 2 })).kind, 'lost', 'before the fold is reported the next generation cannot be told from a foreign restart');
  const again = new ChangedPages(cursor());
  again.apply(scan());
  again.noteFolded(scan(), true);
  assert.equal(again.apply(scan({ salt: NEXT, from: 0, to: 2 })).kind, 'apply', 'after it, it continues the record');
});

test('ChangedPages: a scan of nothing new taken before a fold ended, taken in after its outcome, keeps the fold (a delta beside a checkpoint)', () => {
  const record = new ChangedPages(cursor());
  record.apply(scan()); // the checkpoint's scan, before its fold
  record.noteFolded(scan(), true); // the fold's outcome
  record.apply(scan({ from: 20, to: 20, folded: false })); // the delta's: it looked at the WAL index while the fold ran
  assert.equal(record.cursor.folded, true);
  assert.equal(record.apply(scan({ salt: NEXT, from: 0, to: 2, checkpointSeq: 2 })).kind, 'apply', 'the restart after our fold continues the record');
  const moved = new ChangedPages(cursor());
  moved.apply(scan());
  moved.noteFolded(scan(), true);
  moved.apply(scan({ from: 20, to: 22 }));
  assert.equal(moved.cursor.folded, false, 'frames past the fold: not folded');
});
