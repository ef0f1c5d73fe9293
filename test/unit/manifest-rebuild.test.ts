/**
 * The pure parts of the manifest rebuild: which keys are snapshot objects, in which order they are
 * tried, and the manifest made of those that verified (no store, no file).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assembleManifest, orderCandidates, parseSnapshotKey } from '../../src/sync/manifest-rebuild.ts';
import { decodeManifest, snapshotKey, type SnapshotEntry } from '../../src/sync/manifest.ts';

const KEYS: Array<[string, string, ReturnType<typeof parseSnapshotKey>]> = [
  ['a chunk index', snapshotKey('g1', 12, 'chunks', 'ab12'), { key: 'snapshots/g1/000000000012-ab12.chunks.json', generation: 'g1', seq: 12, kind: 'chunks', codec: 'lz4' }],
  ['a full lz4 snapshot', snapshotKey('g1', 3, 'lz4', 'ff'), { key: 'snapshots/g1/000000000003-ff.db.lz4', generation: 'g1', seq: 3, kind: 'full', codec: 'lz4' }],
  ['a full gzip snapshot', snapshotKey('g2', 4, 'gzip', 'ff'), { key: 'snapshots/g2/000000000004-ff.db.gzip', generation: 'g2', seq: 4, kind: 'full', codec: 'gzip' }],
  ['an uncompressed snapshot', snapshotKey('g2', 5, 'none', 'ff'), { key: 'snapshots/g2/000000000005-ff.db', generation: 'g2', seq: 5, kind: 'full', codec: 'none' }],
  ['an unknown extension', 'snapshots/g1/000000000012-ab12.db.zst', undefined],
  ['a short seq', 'snapshots/g1/12-ab12.db.lz4', undefined],
  ['seq 0 (never published)', 'snapshots/g1/000000000000-ab12.db.lz4', undefined],
  ['no generation folder', 'snapshots/000000000012-ab12.db.lz4', undefined],
  ['a nested folder', 'snapshots/g1/x/000000000012-ab12.db.lz4', undefined],
  ['outside snapshots/', 'chunks/000000000012-ab12.db.lz4', undefined],
];

for (const [name, key, expected] of KEYS) {
  test(`parseSnapshotKey: ${name}`, () => assert.deepEqual(parseSnapshotKey(key), expected));
}

test('orderCandidates: newest seq first, equal seqs most recently written first; other keys set apart', () => {
  const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
  const { candidates, unrecognized } = orderCandidates([
    { key: snapshotKey('g1', 1, 'lz4', 'a'), size: 10, lastModified: at(1) },
    { key: snapshotKey('g2', 3, 'chunks', 'old'), size: 10, lastModified: at(3) },
    { key: 'snapshots/g1/notes.txt', size: 1, lastModified: at(9) },
    { key: snapshotKey('g2', 3, 'chunks', 'new'), size: 10, lastModified: at(4) },
    { key: snapshotKey('g1', 2, 'chunks', 'b'), size: 10, lastModified: at(2) },
  ]);
  assert.deepEqual(
    candidates.map((c) => c.key),
    [snapshotKey('g2', 3, 'chunks', 'new'), snapshotKey('g2', 3, 'chunks', 'old'), snapshotKey('g1', 2, 'chunks', 'b'), snapshotKey('g1', 1, 'lz4', 'a')],
  );
  assert.deepEqual(unrecognized, ['snapshots/g1/notes.txt']);
});

test('assembleManifest: the first verified entry is the latest, and the manifest decodes', () => {
  const entry = (seq: number, generation: string): SnapshotEntry => ({
    seq,
    generation,
    key: snapshotKey(generation, seq, 'lz4', 'n'),
    codec: 'lz4',
    bytes: 4096,
    sha256: 'a'.repeat(64),
    compressedBytes: 100,
    createdAt: new Date(seq * 1000).toISOString(),
  });
  const manifest = assembleManifest([entry(7, 'g2'), entry(5, 'g1')]);
  assert.equal(manifest.seq, 7);
  assert.equal(manifest.generation, 'g2');
  assert.deepEqual(decodeManifest(Buffer.from(JSON.stringify(manifest)), 'test'), manifest);
  assert.throws(() => assembleManifest([]));
});
