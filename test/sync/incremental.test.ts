import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { sql } from 'drizzle-orm';
import { azureBlobStore, directoryStore, drizzle, SyncError, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import type { Manifest } from '../../src/sync/manifest.ts';
import { CHUNK_PREFIX, decodeChunkIndex } from '../../src/sync/chunks/chunk-index.ts';
import { decodeChunk } from '../../src/sync/chunks/chunk-codec.ts';
import { countingStore, notes, open, readManifest, schema } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const fixture = useAzuriteAndTempDir('incremental');

const MANUAL = { debounceMs: 600_000, maxIntervalMs: 600_000 };
// Chunk-set mechanics: every upload a chunk set (maxDeltas 0); page deltas have their own tests (page-delta.test.ts).
const incremental = (extra: object = {}) => ({ snapshot: { ...MANUAL, mode: 'incremental' as const, chunkSize: 65_536, maxDeltas: 0, ...extra } });

/** Every chunk address the retained snapshots reference. */
async function referenced(store: SnapshotStore, manifest: Manifest): Promise<Set<string>> {
  const out = new Set<string>();
  for (const entry of manifest.snapshots) {
    const index = decodeChunkIndex((await store.readSmall(entry.key))!.body, entry.key);
    for (const c of index.chunks) out.add(c);
  }
  return out;
}

async function storedChunks(store: SnapshotStore): Promise<Set<string>> {
  return new Set((await store.list(CHUNK_PREFIX)).map((o) => o.key.slice(CHUNK_PREFIX.length)));
}

async function fill(db: Awaited<ReturnType<typeof open>>, rows: number, tag: string) {
  await db.run(sql`INSERT INTO notes (body) SELECT ${tag} || ' ' || value || ' ' || hex(randomblob(60)) FROM generate_series(1, ${rows})`);
}

test('incremental snapshots: the first uploads every chunk, a small change uploads a few, restore reassembles and verifies', async () => {
  const inner = directoryStore({ dir: join(fixture.dir.path, 'basic', 'store') });
  const store = countingStore(inner);
  const db = await open(join(fixture.dir.path, 'basic', 'a.db'), store, incremental());
  await fill(db, 20_000, 'row');
  const first = await db.$sync.flush();
  const firstBytes = first!.compressedBytes;
  const manifest1 = await readManifest(store);
  assert.equal(manifest1.snapshots[0]!.kind, 'chunks');
  const chunks1 = await storedChunks(store);
  assert.ok(chunks1.size > 20, `${chunks1.size} chunks`);

  // One row changes: only the chunks holding its pages (and page 1) are new.
  await db.update(notes).set({ body: 'changed' }).where(sql`id = 10000`);
  const uploadsBefore = store.calls.uploadBuffer;
  const second = await db.$sync.flush();
  const fresh = store.calls.uploadBuffer - uploadsBefore - 1; // minus the chunk index
  assert.ok(second!.uploaded, 'the change was uploaded');
  assert.ok(fresh >= 1 && fresh <= 4, `${fresh} chunks uploaded for a one-row change`);
  assert.ok(second!.compressedBytes < firstBytes / 10, `second snapshot uploaded ${second!.compressedBytes} of ${firstBytes} bytes`);

  // Every chunk the second index names carries the sha256 of its stored bytes: the few it uploaded and
  // the many it took over from the first index (a restore verifies each by that digest).
  const manifest2 = await readManifest(store);
  const index2 = decodeChunkIndex((await inner.readSmall(manifest2.snapshots[0]!.key))!.body, 'second');
  assert.equal(index2.digests?.length, index2.chunks.length);
  for (const [i, address] of index2.chunks.entries()) {
    const stored = (await inner.readSmall(`${CHUNK_PREFIX}${address}`))!.body;
    assert.equal(index2.digests![i], createHash('sha256').update(stored).digest('hex'), `chunk ${i}`);
  }

  // Unchanged: nothing uploaded at all.
  await db.run(sql`UPDATE notes SET body = body WHERE id = 1`);
  const uploads = store.calls.uploadBuffer;
  const third = await db.$sync.flush();
  assert.equal(third!.uploaded, false);
  assert.equal(store.calls.uploadBuffer, uploads);
  await db.$sync.close();

  const fresh2 = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'basic', 'b.db')}` }, schema, store: inner, log: false, shutdown: { signals: false }, role: 'replica' });
  const rows = await fresh2.select().from(notes);
  assert.equal(rows.length, 20_000);
  assert.equal(rows.find((r) => r.id === 10_000)?.body, 'changed');
  await fresh2.$sync.close();
});

/**
 * A directory store under `<name>/store` holding two incremental snapshots of 5,000 rows: the older one,
 * then the latest, where row 4000 reads 'v2'. Returns both entries, the latest's index and a chunk
 * only the latest references.
 */
async function twoSnapshots(name: string) {
  const root = join(fixture.dir.path, name, 'store');
  const store = directoryStore({ dir: root });
  const db = await open(join(fixture.dir.path, name, 'a.db'), store, incremental());
  await fill(db, 5_000, 'v1');
  await db.$sync.flush();
  await db.update(notes).set({ body: 'v2' }).where(sql`id = 4000`);
  await db.$sync.flush();
  await db.$sync.close();
  const [latest, older] = (await readManifest(store)).snapshots;
  const latestIndex = decodeChunkIndex((await store.readSmall(latest!.key))!.body, latest!.key);
  const olderChunks = new Set(decodeChunkIndex((await store.readSmall(older!.key))!.body, older!.key).chunks);
  const onlyLatest = latestIndex.chunks.find((c) => !olderChunks.has(c))!;
  return { root, store, latest: latest!, older: older!, latestIndex, onlyLatest };
}

test('a damaged chunk is detected on restore, and restore falls back to the previous snapshot', async () => {
  const { root, store, older, onlyLatest } = await twoSnapshots('damaged');
  const { readFile, writeFile } = await import('node:fs/promises');
  const path = join(root, CHUNK_PREFIX, onlyLatest);
  const bytes = await readFile(path);
  bytes[bytes.length - 5]! ^= 0x20;
  await writeFile(path, bytes);

  const db2 = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'damaged', 'b.db')}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica' });
  const restored = db2.$sync.status().restoredFrom!;
  assert.equal(restored.seq, older.seq);
  assert.equal(restored.skipped[0]!.code, 'SNAPSHOT_CORRUPT');
  assert.match(restored.skipped[0]!.message, /Chunk/);
  assert.equal((await db2.select().from(notes)).find((r) => r.id === 4000)?.body.startsWith('v1'), true);
  await db2.$sync.close();
});

test("chunks stored again with another encoding (the index's digests now stale) restore, verified by their addresses; other content under an address still fails", async () => {
  const { root, store, latest, older, latestIndex: index, onlyLatest } = await twoSnapshots('reencoded');
  assert.ok(index.digests?.every((d) => d.length === 64), 'every chunk of the latest index has a digest');
  const { readFile, writeFile } = await import('node:fs/promises');
  // Every chunk of the latest snapshot rewritten as a stored-uncompressed chunk ([version 1][flags 0][plain]):
  // the same content, other bytes, so no digest matches.
  const plains = new Map<string, Buffer>();
  for (const address of new Set(index.chunks)) {
    const path = join(root, CHUNK_PREFIX, address);
    const plain = decodeChunk(await readFile(path), address, undefined, 'test');
    plains.set(address, plain);
    const raw = Buffer.concat([Buffer.from([1, 0]), plain]);
    assert.notEqual(createHash('sha256').update(raw).digest('hex'), index.digests![index.chunks.indexOf(address)]);
    await writeFile(path, raw);
  }
  const db2 = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'reencoded', 'b.db')}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica' });
  assert.equal(db2.$sync.status().restoredFrom?.seq, latest.seq);
  assert.deepEqual(db2.$sync.status().restoredFrom?.skipped, []);
  assert.equal((await db2.select().from(notes)).find((r) => r.id === 4000)?.body, 'v2');
  await db2.$sync.close();

  // One of them (only the latest's) holding other content: neither its digest nor its address matches.
  const other = Buffer.from(plains.get(onlyLatest)!);
  other[other.length - 1]! ^= 1;
  await writeFile(join(root, CHUNK_PREFIX, onlyLatest), Buffer.concat([Buffer.from([1, 0]), other]));
  const db3 = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'reencoded', 'c.db')}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica' });
  const restored = db3.$sync.status().restoredFrom!;
  assert.equal(restored.seq, older.seq);
  assert.equal(restored.skipped[0]!.code, 'SNAPSHOT_CORRUPT');
  assert.match(restored.skipped[0]!.message, /does not match its address/);
  await db3.$sync.close();
});

test('encryption: the store holds ciphertext only; the right key restores, a wrong or missing key is a clear CONFIG error', async () => {
  const container = 'encrypted';
  const store = azureBlobStore({ connectionString: fixture.azurite.connectionString, container, prefix: 'app', createContainer: true });
  const key = randomBytes(32);
  const marker = 'PLAINTEXT-MARKER-7f3a';
  const db = await open(join(fixture.dir.path, 'enc', 'a.db'), store, { ...incremental(), encryption: { key: async () => key.toString('base64') } });
  await db.run(sql`INSERT INTO notes (body) SELECT ${marker} || ' ' || value FROM generate_series(1, 2000)`);
  await db.$sync.flush();
  await db.$sync.close();

  const entry = (await readManifest(store)).snapshots[0]!;
  assert.match(entry.keyId ?? '', /^[0-9a-f]{16}$/);
  const blobs = BlobServiceClient.fromConnectionString(fixture.azurite.connectionString).getContainerClient(container);
  let scanned = 0;
  for await (const blob of blobs.listBlobsFlat({ prefix: 'app/chunks/' })) {
    const body = await blobs.getBlobClient(blob.name).downloadToBuffer();
    assert.ok(!body.includes(Buffer.from(marker)), `${blob.name} holds plaintext`);
    assert.ok(!body.includes(Buffer.from('SQLite format 3')), `${blob.name} holds a plaintext database header`);
    scanned++;
  }
  assert.ok(scanned > 0, 'chunks were scanned');

  const ok = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'enc', 'b.db')}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica', encryption: { key }, snapshot: { mode: 'incremental' } });
  assert.equal((await ok.select().from(notes)).length, 2000);
  await ok.$sync.close();

  for (const [label, options, pattern] of [
    ['wrong key', { encryption: { key: randomBytes(32) }, snapshot: { mode: 'incremental' } }, /Wrong encryption key/],
    ['no key', {}, /is encrypted; configure its key/],
  ] as const) {
    await assert.rejects(
      drizzle({ connection: { url: `file:${join(fixture.dir.path, 'enc', `${label}.db`)}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica', ...options }),
      (error: unknown) => {
        assert.ok(error instanceof SyncError && error.code === 'CONFIG', `${label}: ${String(error)}`);
        assert.match(error.message, pattern);
        return true;
      },
    );
  }
  for (const bad of ['short', Buffer.alloc(16)]) {
    await assert.rejects(
      drizzle({ connection: { url: `file:${join(fixture.dir.path, 'enc', 'bad.db')}` }, schema, store, log: false, role: 'replica', encryption: { key: bad }, snapshot: { mode: 'incremental' } }),
      /256-bit key/,
    );
  }
});

test('garbage collection: unreferenced chunks are deleted once past the grace period (0 here), referenced ones never, with concurrent snapshots and reads racing the writer', async () => {
  const store = directoryStore({ dir: join(fixture.dir.path, 'gc', 'store') });
  const db = await open(join(fixture.dir.path, 'gc', 'a.db'), store, incremental({ retain: 2, gcGraceMs: 0 }));
  await fill(db, 3_000, 'base');
  await db.$sync.flush();

  // A reader restores the latest snapshot over and over while the writer publishes and collects.
  let reading = true;
  let restores = 0;
  const reader = (async () => {
    for (let i = 0; reading; i++) {
      const r = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'gc', `r${i}.db`)}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica' });
      assert.deepEqual(r.$sync.status().restoredFrom?.skipped, [], 'the latest snapshot always restores');
      await r.$sync.close();
      restores++;
    }
  })();

  for (let round = 0; round < 12; round++) {
    await db.run(sql`UPDATE notes SET body = 'round ${sql.raw(String(round))} ' || hex(randomblob(60)) WHERE id % 7 = ${round % 7}`);
    // Snapshots asked for concurrently, with a commit between them: they queue, none collects what another needs.
    await Promise.all([
      db.$sync.flush(),
      (async () => {
        await db.run(sql`UPDATE notes SET body = 'again ' || hex(randomblob(60)) WHERE id % 11 = ${round % 11}`);
        await db.$sync.flush();
      })(),
    ]);
    const manifest = await readManifest(store);
    const needed = await referenced(store, manifest);
    const present = await storedChunks(store);
    for (const address of needed) assert.ok(present.has(address), `round ${round}: referenced chunk ${address.slice(0, 12)} is missing`);
    const garbage = new Set((manifest.garbage ?? []).map((g) => g.address));
    for (const address of present) assert.ok(needed.has(address) || garbage.has(address), `round ${round}: chunk ${address.slice(0, 12)} is neither referenced nor listed as garbage`);
  }
  reading = false;
  await reader;
  assert.ok(restores > 0, 'the reader restored at least once');

  await db.$sync.close();
  const manifest = await readManifest(store);
  const present = await storedChunks(store);
  const needed = await referenced(store, manifest);
  assert.ok(present.size <= needed.size + (manifest.garbage?.length ?? 0), 'only referenced chunks and listed garbage remain');
  assert.ok(present.size < needed.size * 2, `store keeps ${present.size} chunks for ${needed.size} referenced`);
});

test('within the grace period unreferenced chunks are listed as garbage but kept (a reader of an older manifest may still need them)', async () => {
  const store = directoryStore({ dir: join(fixture.dir.path, 'grace', 'store') });
  const db = await open(join(fixture.dir.path, 'grace', 'a.db'), store, incremental({ retain: 1, gcGraceMs: 600_000 }));
  await fill(db, 3_000, 'base');
  await db.$sync.flush();
  const firstManifest = await readManifest(store);
  const firstChunks = await referenced(store, firstManifest);
  for (let round = 0; round < 3; round++) {
    await db.run(sql`UPDATE notes SET body = 'round ${sql.raw(String(round))} ' || hex(randomblob(60))`);
    await db.$sync.flush();
  }
  await db.$sync.close();
  const manifest = await readManifest(store);
  assert.equal(manifest.snapshots.length, 1);
  const garbage = new Set((manifest.garbage ?? []).map((g) => g.address));
  const present = await storedChunks(store);
  const needed = await referenced(store, manifest);
  assert.ok(garbage.size > 0, 'dropped chunks are listed as garbage');
  for (const address of garbage) assert.ok(present.has(address), `garbage chunk ${address.slice(0, 12)} was deleted before its grace period`);
  for (const address of firstChunks) assert.ok(present.has(address), 'the first snapshot is still fully restorable from its chunks');
  for (const address of present) assert.ok(needed.has(address) || garbage.has(address), 'nothing stored is unaccounted for');
});

test('a replica catching up downloads only the chunks that changed', async () => {
  const inner = directoryStore({ dir: join(fixture.dir.path, 'delta', 'store') });
  const chunkReads: string[] = [];
  const store: SnapshotStore = {
    ...inner,
    download: (key) => {
      if (key.startsWith(CHUNK_PREFIX)) chunkReads.push(key);
      return inner.download(key);
    },
  };
  const writer = await open(join(fixture.dir.path, 'delta', 'w.db'), inner, incremental());
  await fill(writer, 20_000, 'row');
  await writer.$sync.flush();
  const replica = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'delta', 'r.db')}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica', replica: { pollMs: 50 }, snapshot: { mode: 'incremental' } });
  const full = chunkReads.length;
  assert.ok(full > 20, `the first restore fetched every chunk (${full})`);

  await writer.update(notes).set({ body: 'changed on the writer' }).where(sql`id = 15000`);
  const updated = new Promise<void>((resolve) => replica.$sync.once('replica-update', () => resolve()));
  const info = await writer.$sync.flush();
  await updated;
  const delta = chunkReads.length - full;
  assert.ok(delta >= 1 && delta <= 4, `catch-up fetched ${delta} chunks of ${full}`);
  assert.equal((await replica.select().from(notes)).find((r) => r.id === 15_000)?.body, 'changed on the writer');
  assert.equal(replica.$sync.status().localSeq, info!.seq);
  await replica.$sync.close();
  await writer.$sync.close();
});
