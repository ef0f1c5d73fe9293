/**
 * Page deltas as tables (issue 14): what an upload may be (planUpload), what restoring a restore point
 * takes (deltaChain), what retention keeps (a restore point whole or not at all), what the record
 * carries into a delta and into the next chunk set, and the delta object's codec.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ANCHOR_MAX_CHAIN, LEVEL_CARRY_BYTES, LEVEL_SPAN, LEVEL_SPAN_MAX, WHOLE_FILE_EVERY, planUpload } from '../../src/sync/snapshotter.ts';
import { localStart } from '../../src/sync/restore.ts';
import { applyRetention, decodeManifest, deltaChain, encodeManifest, selectSnapshot, type SnapshotEntry } from '../../src/sync/manifest.ts';
import { ChangedPages } from '../../src/sync/wal/changed-pages.ts';
import { decodeDelta, encodeDelta, encodeDeltaPages, decodeDeltaPages } from '../../src/sync/chunks/delta-codec.ts';
import { resolveChunkKeys } from '../../src/sync/chunks/encryption.ts';
import { isSyncError } from '../../src/errors.ts';

const H = 'a'.repeat(64);
const at = (minutesAgo: number) => new Date(Date.now() - minutesAgo * 60_000).toISOString();
const chunks = (seq: number, over: Partial<SnapshotEntry> = {}): SnapshotEntry => ({ seq, generation: 'g', key: `c${seq}`, kind: 'chunks', codec: 'lz4', bytes: 100, sha256: H, compressedBytes: 100 << 20, createdAt: at(100 - seq), ...over });
const delta = (seq: number, parent: string, base: string, over: Partial<SnapshotEntry> = {}): SnapshotEntry => ({ seq, generation: 'g', key: `d${seq}`, kind: 'delta', parent, base, codec: 'lz4', bytes: 100, sha256: H, compressedBytes: 4096, createdAt: at(100 - seq), ...over });

// c1 <- d2 <- d3, then c4 <- d5 (newest first, as a manifest lists them)
const C1 = chunks(1);
const D2 = delta(2, 'c1', 'c1');
const D3 = delta(3, 'd2', 'c1');
const C4 = chunks(4);
const D5 = delta(5, 'c4', 'c4');
const LIST = [D5, C4, D3, D2, C1];

test('deltaChain: a restore point is its chunk set plus every delta up to it, oldest first; a missing link is no chain', () => {
  assert.deepEqual(deltaChain(LIST, D3), { base: C1, deltas: [D2, D3] });
  assert.deepEqual(deltaChain(LIST, D5), { base: C4, deltas: [D5] });
  assert.deepEqual(deltaChain(LIST, C4), { base: C4, deltas: [] });
  assert.equal(deltaChain(LIST, { ...C1, kind: 'full' }), undefined, 'a full snapshot has no chain');
  assert.equal(deltaChain([D3, C1], D3), undefined, 'd2 is missing');
  assert.equal(deltaChain([D3, D2], D3), undefined, 'the chunk set is missing');
  assert.equal(deltaChain([delta(3, 'd2', 'c4'), D2, C1], delta(3, 'd2', 'c4')), undefined, 'a link names another chunk set');
  const loop = [delta(3, 'd2', 'c1'), delta(2, 'd3', 'c1')];
  assert.equal(deltaChain(loop, loop[0]!), undefined, 'a cycle ends');
});

test('applyRetention keeps every link of a kept delta, whatever the count or age', () => {
  const keys = (list: SnapshotEntry[]) => list.map((s) => s.key);
  assert.deepEqual(keys(applyRetention(LIST, { count: 1, maxAgeMs: Infinity })), ['d5', 'c4'], 'the latest delta keeps its chunk set');
  assert.deepEqual(keys(applyRetention(LIST, { count: 3, maxAgeMs: Infinity })), ['d5', 'c4', 'd3', 'd2', 'c1'], 'd3 kept: so are d2 and c1');
  assert.deepEqual(keys(applyRetention([D3, D2, C1], { count: 2, maxAgeMs: 60 * 60_000 })), ['d3', 'd2', 'c1'], 'c1 is past the age but d3 needs it');
  assert.deepEqual(keys(applyRetention([C4, D3, D2, C1], { count: 1, maxAgeMs: Infinity })), ['c4'], 'a chunk set needs nothing older');
});

test('planUpload: a delta only on the store latest the record extends; past the bounds it starts a compaction; else a chunk set', () => {
  const record = (over: Partial<{ lost: string; baselineKey: string; headKey: string; uploadsSinceWholeFile: number }> = {}) => ({ lost: undefined, baselineKey: 'c1', headKey: 'd3', uploadsSinceWholeFile: 0, ...over });
  const chain = [D3, D2, C1];
  const rows: Array<[string, Parameters<typeof planUpload>, string]> = [
    ['no record yet', [undefined, chain, false, 200, 0], 'whole-file'],
    ['a broken record', [record({ lost: 'x' }), chain, false, 200, 0], 'whole-file'],
    ['an empty store', [record(), [], false, 200, 0], 'whole-file'],
    ['a roll-back', [record(), chain, true, 200, 0], 'whole-file'],
    ['the record extends the latest', [record(), chain, false, 200, 0], 'delta'],
    ['the latest is another writer\'s delta', [record({ headKey: 'd2' }), chain, false, 200, 0], 'whole-file'],
    ['the latest chain starts on another chunk set', [record({ baselineKey: 'c4' }), chain, false, 200, 0], 'whole-file'],
    ['on a chunk set just uploaded', [record({ headKey: 'c1' }), [C1], false, 200, 0], 'delta'],
    ['deltas off', [record(), chain, false, 0, 0], 'touched-chunks'],
    ['the chain is at its bound: a delta, and a compaction starts', [record(), chain, false, 2, 0], 'delta+touched-chunks'],
    ['at its bound with a compaction running: a delta only', [record(), chain, false, 2, 0, true], 'delta'],
    ['at its bound, a whole-file read due: the compaction reads the whole file', [record({ uploadsSinceWholeFile: WHOLE_FILE_EVERY - 1 }), chain, false, 2, 0], 'delta+whole-file'],
    ['the chain is one short of it', [record(), chain, false, 3, 0], 'delta'],
    ['too many pages for one delta', [record(), chain, false, 200, (128 << 20) + 1], 'touched-chunks'],
    ['too many pages for one delta, a compaction running', [record(), chain, false, 200, (128 << 20) + 1, true], 'touched-chunks'],
    ['80 MiB of pages: still one delta', [record(), chain, false, 200, 80 << 20], 'delta'],
    ['deltas past 10% of the chunk set', [record(), [delta(3, 'd2', 'c1', { compressedBytes: 6 << 20 }), delta(2, 'c1', 'c1', { compressedBytes: 5 << 20 }), C1], false, 200, 0], 'delta+touched-chunks'],
    ['a small chunk set still allows 4 MiB of deltas', [record(), [delta(3, 'd2', 'c1', { compressedBytes: 1 << 20 }), D2, chunks(1, { compressedBytes: 1 << 20 })], false, 200, 0], 'delta'],
    ['a whole-file read is due', [record({ uploadsSinceWholeFile: WHOLE_FILE_EVERY - 1 }), chain, false, 0, 0], 'whole-file'],
    ['due, but a delta reads no file', [record({ uploadsSinceWholeFile: WHOLE_FILE_EVERY - 1 }), chain, false, 200, 0], 'delta'],
  ];
  const describe = (plan: ReturnType<typeof planUpload>) => (plan.kind === 'delta' && plan.compact ? `delta+${plan.compact}` : plan.kind);
  for (const [name, args, expected] of rows) assert.equal(describe(planUpload(...args)), expected, name);

  // Every LEVEL_SPAN-th delta extends the last level-1 delta (or the chunk set), not the latest.
  const due = { ...record(), levelKey: 'c1', deltasSinceLevel: LEVEL_SPAN - 1 };
  const leveled = planUpload(due, chain, false, 200, 0, false, 40 * 4096);
  assert.deepEqual(leveled.kind === 'delta' && [leveled.level, leveled.parent.key, leveled.compact], [1, 'c1', undefined], 'due: level 1 on the chunk set');
  const early = planUpload({ ...due, deltasSinceLevel: LEVEL_SPAN - 2 }, chain, false, 200, 0, false, 40 * 4096);
  assert.deepEqual(early.kind === 'delta' && [early.level, early.parent.key], [0, 'd3'], 'not due: level 0 on the latest');
  // Sooner when it costs at most the pending pages again: a burst's delta starts a level.
  const burst = planUpload({ ...due, deltasSinceLevel: 3 }, chain, false, 200, 400 * 4096, false, 300 * 4096);
  assert.deepEqual(burst.kind === 'delta' && [burst.level, burst.parent.key], [1, 'c1'], 'pending pages outweigh those since the level: level 1');
  const small = planUpload({ ...due, deltasSinceLevel: 3 }, chain, false, 200, 2 * 4096, false, 300 * 4096);
  assert.deepEqual(small.kind === 'delta' && [small.level, small.parent.key], [0, 'd3'], 'a small change after a large one: level 0');
  const fresh = planUpload({ ...due, deltasSinceLevel: 0 }, chain, false, 200, 400 * 4096, false, 0);
  assert.deepEqual(fresh.kind === 'delta' && fresh.level, 0, 'no delta since the level: level 0');
  // Due by count but carrying a burst again: this delta starts the level instead (an anchor)...
  const heavy = planUpload(due, chain, false, 200, 4096, false, LEVEL_CARRY_BYTES + 4096);
  assert.deepEqual(heavy.kind === 'delta' && [heavy.level, heavy.parent.key, heavy.anchor, heavy.compact], [0, 'd3', true, undefined], 'a heavy level: an anchor on the latest');
  // ...unless the chain is long already: level 0, and a compaction carries the burst.
  const longChain = Array.from({ length: ANCHOR_MAX_CHAIN }, (_, i) => delta(ANCHOR_MAX_CHAIN + 1 - i, i === ANCHOR_MAX_CHAIN - 1 ? 'c1' : `d${ANCHOR_MAX_CHAIN - i}`, 'c1'));
  const onLong = { ...due, headKey: `d${ANCHOR_MAX_CHAIN + 1}` };
  const heavyLong = planUpload(onLong, [...longChain, C1], false, 1000, 4096, false, LEVEL_CARRY_BYTES + 4096);
  assert.deepEqual(heavyLong.kind === 'delta' && [heavyLong.level, heavyLong.anchor, heavyLong.compact], [0, undefined, 'touched-chunks'], 'a heavy level on a long chain waits for a compaction');
  const heavyCompacting = planUpload(onLong, [...longChain, C1], false, 1000, 4096, true, LEVEL_CARRY_BYTES + 4096);
  assert.deepEqual(heavyCompacting.kind === 'delta' && [heavyCompacting.level, heavyCompacting.compact], [0, undefined], 'a heavy level while a compaction runs: level 0 only');
  const atMax = planUpload({ ...onLong, deltasSinceLevel: LEVEL_SPAN_MAX - 1 }, [...longChain, C1], false, 1000, 4096, true, 64 << 20);
  assert.deepEqual(atMax.kind === 'delta' && [atMax.level, atMax.parent.key], [1, 'c1'], 'at LEVEL_SPAN_MAX the level-1 delta is made whatever it carries');
  // A large level-0 delta starts a level itself (the next level-1 extends it), while chains are short.
  const big = planUpload({ ...due, deltasSinceLevel: 3 }, chain, false, 200, LEVEL_CARRY_BYTES + 4096, false, LEVEL_CARRY_BYTES * 4);
  assert.deepEqual(big.kind === 'delta' && [big.level, big.parent.key, big.anchor], [0, 'd3', true], 'a large delta after larger ones: an anchor on the latest');
  const smallOne = planUpload({ ...due, deltasSinceLevel: 3 }, chain, false, 200, 4096, false, 8192);
  assert.deepEqual(smallOne.kind === 'delta' && smallOne.anchor, undefined, 'a small delta is no anchor');
  const deep = planUpload({ ...onLong, deltasSinceLevel: 3 }, [...longChain, C1], false, 1000, LEVEL_CARRY_BYTES + 4096, false, LEVEL_CARRY_BYTES * 4);
  assert.deepEqual(deep.kind === 'delta' && [deep.level, deep.anchor], [0, undefined], 'no anchor on a chain already ANCHOR_MAX_CHAIN deltas long');
  const gone = planUpload({ ...due, levelKey: 'd0' }, chain, false, 200, 0);
  assert.deepEqual(gone.kind === 'delta' && [gone.level, gone.parent.key], [0, 'd3'], 'a level parent not in the chain: level 0');
  // maxDeltas counts every delta on the chunk set, not only the latest chain's links.
  const skip = [delta(4, 'c1', 'c1'), D3, D2, C1];
  assert.equal(describe(planUpload({ ...record(), headKey: 'd4' }, skip, false, 3, 0)), 'delta+touched-chunks', 'three deltas on c1, though d4 chains to c1 alone');
  assert.equal(describe(planUpload({ ...record(), deltasSinceBaseline: 200 }, chain, false, 200, 0)), 'delta+touched-chunks', 'retention dropped most of the 200 deltas from the manifest: the record counted them');
  const touched = planUpload(record(), chain, false, 0, 0);
  assert.equal(touched.kind === 'touched-chunks' && touched.baseline.key, 'c1', 'a chunk set after deltas reads the chunks changed since their chunk set');
});

test('ChangedPages: a delta forgets its pages for the next delta, a chunk set after it still reads them', () => {
  const record = new ChangedPages({ salt: '0000000a11111111', frame: 0, base: 0, folded: false });
  record.apply({ salt: '0000000a11111111', from: 0, to: 4, pages: [[3, 1], [9, 4]] });
  record.uploaded(4, true, 'c1');
  assert.equal(record.headKey, 'c1');
  record.apply({ salt: '0000000a11111111', from: 4, to: 8, pages: [[5, 6], [7, 8]] });
  record.deltaUploaded(6, 'd2'); // the delta's image was pinned at frame 6
  assert.deepEqual(record.pagesUpTo(Infinity), [7], 'the next delta carries what came after');
  assert.deepEqual(record.pagesSinceBaseline(), [5, 7], 'a chunk set replacing c1 reads both');
  assert.equal(record.headKey, 'd2');
  assert.equal(record.baselineKey, 'c1');
  record.uploaded(8, false, 'c3');
  assert.deepEqual(record.pagesSinceBaseline(), [], 'the chunk set holds them all');
  assert.equal(record.headKey, 'c3');
});

test('ChangedPages: a level-1 delta carries every page since the last one, then starts a new level', () => {
  const record = new ChangedPages({ salt: '0000000a11111111', frame: 0, base: 0, folded: false });
  record.uploaded(0, true, 'c1');
  record.apply({ salt: '0000000a11111111', from: 0, to: 2, pages: [[4, 2]] });
  record.deltaUploaded(2, 'd2');
  record.apply({ salt: '0000000a11111111', from: 2, to: 4, pages: [[6, 4]] });
  record.deltaUploaded(4, 'd3');
  assert.deepEqual([record.levelKey, record.deltasSinceLevel], ['c1', 2]);
  record.apply({ salt: '0000000a11111111', from: 4, to: 6, pages: [[8, 6]] });
  assert.deepEqual(record.pagesSinceLevel(), [4, 6, 8], 'a level-1 delta on c1 carries pages 4 and 6 again');
  assert.deepEqual(record.pagesUpTo(Infinity), [8], 'a level-0 delta only the new one');
  record.deltaUploaded(6, 'd4', 1);
  assert.deepEqual([record.levelKey, record.deltasSinceLevel, record.headKey], ['d4', 0, 'd4']);
  assert.deepEqual(record.pagesSinceLevel(), []);
  assert.deepEqual(record.pagesSinceBaseline(), [4, 6, 8], 'a chunk set still reads them all');
});

test('ChangedPages: a compaction watches every page changed after its pin; its bridging delta carries them and becomes the head on the new chunk set', () => {
  const S = '0000000a11111111';
  const record = new ChangedPages({ salt: S, frame: 0, base: 0, folded: false });
  record.uploaded(0, true, 'c1');
  record.apply({ salt: S, from: 0, to: 2, pages: [[4, 1], [5, 2]] });
  record.deltaUploaded(2, 'd2');
  // The compaction's scan: frames 3..4; its image holds the file up to frame 3 (frame 4 came in before the pin).
  record.apply({ salt: S, from: 2, to: 4, pages: [[6, 3], [7, 4]] });
  record.watch(3);
  assert.deepEqual(record.pagesSinceWatch(), [6, 7], 'page 6 is in the chunk set but still pending; page 7 is past the pin');
  record.deltaUploaded(4, 'd3'); // a delta on c1 while the compaction uploads
  record.apply({ salt: S, from: 4, to: 6, pages: [[4, 5], [9, 6]] });
  record.deltaUploaded(6, 'd4');
  assert.equal(record.watchedFrom, 3);
  assert.deepEqual(record.pagesSinceWatch(), [4, 7, 9], 'every page changed after the pin, though deltas on c1 carried them');
  record.apply({ salt: S, from: 6, to: 8, pages: [[10, 7], [11, 8]] });
  // The bridging delta's image holds the file up to frame 7.
  record.compacted(7, false, 'c5', 'd6');
  assert.deepEqual([record.baselineKey, record.headKey, record.levelKey, record.deltasSinceBaseline, record.deltasSinceLevel], ['c5', 'd6', 'd6', 1, 0]);
  assert.equal(record.watchedFrom, undefined);
  assert.deepEqual(record.pagesUpTo(Infinity), [11], 'the next delta carries only what came after the bridge');
  assert.deepEqual(record.pagesSinceBaseline(), [4, 7, 9, 10, 11], "the next compaction reads the bridge's pages and the new ones");
  // Nothing changed since the pin: the chunk set alone is the head.
  const quiet = new ChangedPages({ salt: S, frame: 0, base: 0, folded: false });
  quiet.uploaded(0, true, 'c1');
  quiet.watch(0);
  quiet.compacted(0, true, 'c2', undefined);
  assert.deepEqual([quiet.baselineKey, quiet.headKey, quiet.deltasSinceBaseline, quiet.uploadsSinceWholeFile], ['c2', 'c2', 0, 0]);
  // A chunk set read in an upload ends the watch.
  const dropped = new ChangedPages({ salt: S, frame: 0, base: 0, folded: false });
  dropped.watch(0);
  dropped.uploaded(0, true, 'c3');
  assert.equal(dropped.watchedFrom, undefined);
});

test('selectSnapshot by time: the restore point taken last at or before it, whatever the list order', () => {
  // A compaction's chunk set (its pin at minute 30) is published after deltas taken at minutes 20 and 10, and listed before them.
  const c7 = chunks(7, { createdAt: at(30) });
  const list = [delta(8, 'c7', 'c7', { createdAt: at(5) }), c7, delta(6, 'd5', 'c1', { createdAt: at(10) }), delta(5, 'c1', 'c1', { createdAt: at(20) }), chunks(1, { createdAt: at(40) })];
  const manifest = { format: 1 as const, generation: 'g', seq: 8, snapshots: list };
  assert.equal(selectSnapshot(manifest, { at: at(15) })?.key, 'd5');
  assert.equal(selectSnapshot(manifest, { at: at(25) })?.key, 'c7');
  assert.equal(selectSnapshot(manifest, { at: at(8) })?.key, 'd6');
  assert.equal(selectSnapshot(manifest, { at: at(1) })?.key, 'd8');
  assert.equal(selectSnapshot(manifest, { at: at(50) }), undefined);
});

test('localStart: a replica file at a restore point applies only the chain deltas after it', () => {
  const L1 = delta(5, 'c1', 'c1'); // level 1 on c1, after d2..d4
  const D6 = delta(6, 'd5', 'c1');
  const chain = { base: C1, deltas: [L1, D6] };
  const at = (entry: SnapshotEntry) => ({ path: process.execPath, entry }); // an existing path
  assert.equal(localStart(chain, D6, at(C1)), 0, 'the chunk set: every delta');
  assert.equal(localStart(chain, D6, at(D3)), 0, 'd3 is not a link, but d5 extends c1, before it: d5 and d6');
  assert.equal(localStart(chain, D6, at(L1)), 1, 'd5: only d6');
  assert.equal(localStart(chain, D6, at(D6)), 2, 'the target itself: nothing to fetch');
  assert.equal(localStart(chain, L1, at(D6)), undefined, 'a file newer than the target');
  assert.equal(localStart(chain, D6, at(D5)), undefined, 'a file of another chunk set');
  assert.equal(localStart(chain, D6, at({ ...D3, generation: 'other' })), undefined, 'another generation');
  assert.equal(localStart(chain, D6, { path: '/nonexistent/file', entry: D3 }), undefined, 'no file');
});

test('delta codec: round trip, plain and sealed; any damage is SNAPSHOT_CORRUPT', async () => {
  const pageSize = 4096;
  const pgnos = Uint32Array.from([1, 2, 7]);
  const data = randomBytes(3 * pageSize);
  for (const keys of [undefined, await resolveChunkKeys({ key: randomBytes(32) }, {})]) {
    const { stored, sha256 } = encodeDelta({ pageSize, pageCount: 9, pgnos, data }, keys);
    const back = decodeDelta(stored, sha256, keys, 'test');
    assert.deepEqual([back.pageSize, back.pageCount, [...back.pgnos]], [pageSize, 9, [1, 2, 7]]);
    assert.ok(back.data.equals(data));
    const flipped = Buffer.from(stored);
    flipped[flipped.length >> 1]! ^= 1;
    for (const [name, bad] of [['bit flip', flipped], ['truncated', stored.subarray(0, stored.length - 10)]] as const) {
      assert.throws(() => decodeDelta(bad, sha256, keys, 'test'), (e: unknown) => isSyncError(e, 'SNAPSHOT_CORRUPT') && /does not match its sha256/.test((e as Error).message), name);
    }
  }
  const plain = encodeDeltaPages({ pageSize, pageCount: 9, pgnos, data });
  assert.throws(() => decodeDeltaPages(plain.subarray(0, plain.length - 1), 'x'), /unreadable/);
  assert.throws(() => decodeDeltaPages(encodeDeltaPages({ pageSize, pageCount: 5, pgnos, data }), 'x'), /past the page count/);
  assert.throws(() => decodeDeltaPages(encodeDeltaPages({ pageSize, pageCount: 9, pgnos: Uint32Array.from([2, 1, 7]), data }), 'x'), /out of order/);
});

test('a manifest delta entry must name its parent and chunk set', () => {
  const manifest = { format: 1 as const, generation: 'g', seq: 3, snapshots: [D3, D2, C1] };
  assert.equal(decodeManifest(encodeManifest(manifest), 'x').snapshots[0]!.parent, 'd2');
  const { parent: _, ...orphan } = D3;
  assert.throws(() => decodeManifest(encodeManifest({ ...manifest, snapshots: [orphan, D2, C1] }), 'x'), /delta seq 3 names no parent or base/);
});
