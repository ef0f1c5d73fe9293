/**
 * Fault scenario: damaged snapshot blobs on a real Azurite. The latest snapshot's blob is bit-flipped
 * at random offsets, truncated at random lengths, emptied, extended with garbage or deleted; every
 * restore must detect it, never open it, and fall back to the previous snapshot, with the store left
 * exactly as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { uncompressSync } from 'lz4-napi';
import { azureBlobStore, drizzle, SyncError } from 'drizzle-libsql-blob';
import { MANIFEST_KEY, decodeManifest } from '../../src/sync/manifest.ts';
import { CHUNK_PREFIX, decodeChunkIndex } from '../../src/sync/chunks/chunk-index.ts';
import { faultSummary, randomInt } from '../helpers/fault-report.ts';
import { notes, open, schema } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';
import { listBlobsWithEtags, listFiles } from '../helpers/listing.ts';

const fixture = useAzuriteAndTempDir('corruption');

type Damage = { kind: string; apply(bytes: Buffer): Buffer | null };

/**
 * A stored chunk is `[version][flags][lz4 payload]`. LZ4 is redundant: some single-bit flips (a match
 * offset inside a run of zeros, about 0.3% of them in this test's chunk) decode to the very same
 * bytes, which verify against the chunk's address, so restoring them is correct, not a missed
 * corruption. A bit-flip case therefore flips a bit that changes what the chunk decodes to, judged
 * here with lz4 alone, independently of the library's codec.
 */
function decodesTheSame(stored: Buffer, pristine: Buffer): boolean {
  if (stored[0] !== pristine[0] || stored[1] !== pristine[1]) return false;
  if (!(pristine[1]! & 1)) return stored.equals(pristine);
  try {
    return uncompressSync(stored.subarray(2)).equals(uncompressSync(pristine.subarray(2)));
  } catch {
    return false;
  }
}

function damages(): Damage[] {
  const out: Damage[] = [];
  for (let i = 0; i < 12; i++) {
    out.push({
      kind: 'bit-flip',
      apply: (b) => {
        const copy = Buffer.from(b);
        copy[randomInt(0, copy.length - 1)]! ^= 1 << randomInt(0, 7);
        return copy;
      },
    });
  }
  for (let i = 0; i < 6; i++) out.push({ kind: 'truncate', apply: (b) => b.subarray(0, randomInt(0, b.length - 1)) });
  out.push({ kind: 'empty', apply: () => Buffer.alloc(0) });
  out.push({ kind: 'garbage-appended', apply: (b) => Buffer.concat([b, Buffer.from('trailing garbage')]) });
  out.push({ kind: 'missing', apply: () => null });
  return out;
}

test('damaged snapshot blobs: detected, never opened, restore falls back to the previous snapshot', async (t) => {
  const startedAt = performance.now();
  const store = azureBlobStore({ connectionString: fixture.azurite.connectionString, container: 'damage', createContainer: true });
  const writer = await open(join(fixture.dir.path, 'writer.db'), store, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } });
  for (let i = 0; i < 300; i++) await writer.insert(notes).values({ body: `older ${i}` });
  await writer.$sync.flush();
  await writer.insert(notes).values({ body: 'latest only' });
  await writer.$sync.close();
  const manifestBefore = (await store.readSmall(MANIFEST_KEY))!;
  const [latest, older] = decodeManifest(manifestBefore.body, store.location).snapshots;
  // The damage goes to the latest snapshot's object (a chunked snapshot: its chunk index) and, for a
  // chunked snapshot, to a chunk only the latest snapshot references.
  const targets: Array<[string, string]> = [['snapshot', latest!.key]];
  if (latest!.kind === 'chunks') {
    const chunksOf = async (key: string) => decodeChunkIndex((await store.readSmall(key))!.body, key).chunks;
    const olderChunks = new Set(await chunksOf(older!.key));
    const onlyLatest = (await chunksOf(latest!.key)).find((c) => !olderChunks.has(c))!;
    targets.push(['chunk', `${CHUNK_PREFIX}${onlyLatest}`]);
  }

  const counts: Record<string, number> = {};
  let detected = 0;
  let opened = 0;
  let i = 0;
  const cases = targets.flatMap(([name, key]) => damages().map((damage) => ({ ...damage, kind: `${name}-${damage.kind}`, key, plainKind: damage.kind })));
  for (const damage of cases) {
    i++;
    const pristine = join(fixture.dir.path, `pristine-${i}.blob`);
    await store.downloadToFile(damage.key, pristine);
    const original = await readFile(pristine);
    let bytes = damage.apply(original);
    while (damage.key.startsWith(CHUNK_PREFIX) && damage.plainKind === 'bit-flip' && bytes !== null && decodesTheSame(bytes, original)) bytes = damage.apply(original);
    if (bytes === null) await store.delete(damage.key);
    else {
      const path = join(fixture.dir.path, `damaged-${i}.blob`);
      await writeFile(path, bytes);
      await store.uploadFile(damage.key, path);
    }
    const storeBefore = await listBlobsWithEtags(fixture.azurite.connectionString, 'damage');
    // Every local file but the closed writer's (SQLite may drop its -shm at any time) and this restore's own folder.
    const others = async () => (await listFiles(fixture.dir.path)).filter((f) => !f.startsWith(`restore-${i}/`) && !f.startsWith('writer.db'));
    const localBefore = await others();
    const dbPath = join(fixture.dir.path, `restore-${i}`, 'app.db');
    const db = await drizzle({ connection: { url: `file:${dbPath}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica', restore: 'required' });
    try {
      const restored = db.$sync.status().restoredFrom!;
      assert.equal(restored.seq, older!.seq, `${damage.kind}: fell back to the previous snapshot`);
      assert.equal(restored.skipped.length, 1, damage.kind);
      assert.equal(restored.skipped[0]!.code, damage.plainKind === 'missing' ? 'NOT_FOUND' : 'SNAPSHOT_CORRUPT', `${damage.kind}: ${restored.skipped[0]!.message}`);
      const bodies = (await db.select().from(notes)).map((r) => r.body);
      assert.equal(bodies.length, 300, damage.kind);
      assert.ok(!bodies.includes('latest only'), `${damage.kind}: the damaged snapshot was never opened`);
      detected++;
    } finally {
      await db.$sync.close();
    }
    counts[damage.kind] = (counts[damage.kind] ?? 0) + 1;
    const now = (await store.readSmall(MANIFEST_KEY))!;
    assert.ok(now.body.equals(manifestBefore.body), `${damage.kind}: manifest untouched`);
    // The whole store (every blob, by ETag) and every other local file are exactly as they were; the
    // restore's own folder holds the database, its sidecar and its file lock only (no temp file left behind).
    assert.deepEqual(await listBlobsWithEtags(fixture.azurite.connectionString, 'damage'), storeBefore, `${damage.kind}: the store was touched`);
    assert.deepEqual(await others(), localBefore, `${damage.kind}: a local file outside the restore's folder changed`);
    assert.deepEqual(
      (await listFiles(join(fixture.dir.path, `restore-${i}`))).map((f) => f.split(' ')[0]).filter((name) => name !== 'app.db-wal' && name !== 'app.db-shm'),
      ['app.db', 'app.db.lock', 'app.db.sync.json'],
      `${damage.kind}: the restore left other files`,
    );
    await store.uploadFile(damage.key, pristine); // put the good blob back for the next case
  }

  // The pristine blob restores the latest again: the fallback was caused by the damage alone.
  const check = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'pristine', 'app.db')}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica' });
  assert.equal(check.$sync.status().restoredFrom?.seq, latest!.seq);
  assert.deepEqual(check.$sync.status().restoredFrom?.skipped, []);
  await check.$sync.close();
  opened++;

  // Every snapshot damaged: nothing restored, nothing created.
  const bad = join(fixture.dir.path, 'bad.blob');
  await writeFile(bad, Buffer.from('not a snapshot'));
  await store.uploadFile(latest!.key, bad);
  await store.uploadFile(older!.key, bad);
  const none = join(fixture.dir.path, 'none', 'app.db');
  const storeBeforeAll = await listBlobsWithEtags(fixture.azurite.connectionString, 'damage');
  // The file lock (<db>.lock) is the one file a failed start leaves: it is never deleted (src/local/file-lock.ts).
  const localNow = async () => (await listFiles(fixture.dir.path)).filter((f) => !f.startsWith('writer.db') && !f.split(' ')[0]!.endsWith('.lock'));
  const localBeforeAll = await localNow();
  await assert.rejects(
    drizzle({ connection: { url: `file:${none}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica' }),
    (error: unknown) => error instanceof SyncError && error.code === 'SNAPSHOT_CORRUPT',
  );
  assert.equal(existsSync(none), false);
  assert.deepEqual(await listBlobsWithEtags(fixture.azurite.connectionString, 'damage'), storeBeforeAll, 'all damaged: the store was touched');
  assert.deepEqual(await localNow(), localBeforeAll, 'all damaged: a local file was created or changed');

  faultSummary(
    t,
    'corrupt-snapshots',
    // runs: every damaged case, the pristine check and the all-damaged case; faults: all but the pristine check.
    { runs: cases.length + 2, faults: cases.length + 1, ...counts, 'all-damaged': 1, detected: detected + 1, 'damaged-opened': 0, 'good-restores': opened, 'acked-lost': 0 },
    startedAt,
  );
  assert.equal(detected, cases.length);
});
