import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { azureBlobStore, directoryStore, SyncError, type SyncLogger } from 'drizzle-libsql-blob';
import { startAzurite, type Azurite } from '../helpers/azurite.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { countingStore, nextEvent, notes, open, readManifest, tempDir } from '../helpers/fixtures.ts';

let dir: Awaited<ReturnType<typeof tempDir>>;
let azurite: Azurite;
let proxy: TcpProxy;
before(async () => {
  dir = await tempDir('lifecycle');
  azurite = await startAzurite();
  proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: azurite.port });
});
after(async () => {
  await proxy?.close();
  await azurite?.stop();
  await dir?.cleanup();
});

test('retention keeps the newest N snapshots and deletes older blobs', async () => {
  const store = directoryStore({ dir: join(dir.path, 'retain', 'store') });
  const db = await open(join(dir.path, 'retain', 'a.db'), store, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000, retain: 3, maxDeltas: 0 } });
  for (let i = 0; i < 6; i++) {
    await db.insert(notes).values({ body: `v${i}` });
    assert.ok((await db.$sync.flush())?.uploaded);
  }
  await db.$sync.close();
  const manifest = await readManifest(store);
  assert.deepEqual(manifest.snapshots.map((s) => s.seq), [6, 5, 4]);
  const blobs = (await store.list('snapshots/')).map((o) => o.key).sort();
  assert.deepEqual(blobs, manifest.snapshots.map((s) => s.key).sort(), 'exactly the retained blobs remain');
});

test('restore and snapshot outcomes are logged with durations and sizes; restore is replayed to late listeners', async () => {
  const lines: Array<{ level: string; fields: Record<string, unknown>; message?: string }> = [];
  const log: SyncLogger = {
    info: (fields, message) => lines.push({ level: 'info', fields: fields as Record<string, unknown>, message }),
    warn: (fields, message) => lines.push({ level: 'warn', fields: fields as Record<string, unknown>, message }),
    error: (fields, message) => lines.push({ level: 'error', fields: fields as Record<string, unknown>, message }),
  };
  const store = directoryStore({ dir: join(dir.path, 'log', 'store') });
  const a = await open(join(dir.path, 'log', 'a.db'), store, { log });
  await a.insert(notes).values({ body: 'x' });
  await a.$sync.close();
  const snap = lines.find((l) => l.message === 'snapshot uploaded');
  assert.ok(snap, JSON.stringify(lines));
  assert.ok(typeof snap.fields.durationMs === 'number' && typeof snap.fields.bytes === 'number' && typeof snap.fields.compressedBytes === 'number');

  const b = await open(join(dir.path, 'log', 'b.db'), store, { log });
  const restored = lines.find((l) => l.message === 'restored database from snapshot');
  assert.ok(restored && typeof restored.fields.bytes === 'number' && typeof restored.fields.downloadMs === 'number');
  const event = await new Promise<{ seq: number; bytes: number; durationMs: number }>((resolve) => b.$sync.on('restore', resolve));
  assert.equal(event.seq, 1);
  assert.ok(event.bytes > 0 && event.durationMs > 0);
  await b.$sync.close();
});

test('a store outage fails the snapshot, keeps commits pending, and the scheduler retries until it lands', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    const connectionString = azurite.connectionString.replace(`127.0.0.1:${azurite.port}`, `127.0.0.1:${proxy.port}`);
    assert.notEqual(connectionString, azurite.connectionString);
    const store = countingStore(azureBlobStore({ connectionString, container: 'outage', createContainer: true, requestTimeoutMs: 1_000 }));
    const db = await open(join(dir.path, 'outage', 'a.db'), store, {
      snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000, retryBaseMs: 200, retryMaxMs: 400 },
      retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 20 },
    });
    await db.insert(notes).values({ body: 'before outage' });
    await db.$sync.flush();

    proxy.setMode('reset');
    await db.insert(notes).values({ body: 'during outage' });
    await assert.rejects(db.$sync.flush(), (e: unknown) => e instanceof SyncError && e.code === 'STORE_UNREACHABLE' && e.transient);
    const failed = db.$sync.status();
    assert.equal(failed.pendingCommits, 1, 'the commit is still pending');
    assert.equal(failed.lastError?.code, 'STORE_UNREACHABLE');
    assert.ok(failed.snapshotsFailed >= 1);

    // Heal: the scheduler's own retry lands the snapshot; no new commit, no flush() call.
    const landed = nextEvent(db.$sync, 'snapshot', undefined, 20_000);
    proxy.setMode('pass');
    const info = await landed;
    assert.ok(info.uploaded);
    assert.equal(db.$sync.status().pendingCommits, 0);
    await db.$sync.close();

    const fresh = await open(join(dir.path, 'outage', 'b.db'), azureBlobStore({ connectionString: azurite.connectionString, container: 'outage' }));
    assert.deepEqual((await fresh.select().from(notes)).map((r) => r.body), ['before outage', 'during outage']);
    await fresh.$sync.close();
    assert.deepEqual(unhandled, [], 'no unhandled rejection');
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
