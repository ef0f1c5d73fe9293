import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { azureBlobStore, directoryStore, SyncError, type SnapshotStore } from 'drizzle-libsql-blob';
import { MANIFEST_KEY, decodeManifest } from '../src/sync/manifest.ts';
import { startAzurite, type Azurite } from './helpers/azurite.ts';
import { nextEvent, notes, open, tempDir } from './helpers/fixtures.ts';

let dir: Awaited<ReturnType<typeof tempDir>>;
let azurite: Azurite;
before(async () => {
  dir = await tempDir('conflict');
  azurite = await startAzurite();
});
after(async () => {
  await azurite?.stop();
  await dir?.cleanup();
});

async function twoWriters(name: string, store: SnapshotStore) {
  const seed = await open(join(dir.path, name, 'seed.db'), store);
  await seed.insert(notes).values({ body: 'seed' });
  await seed.$sync.close();

  // Both start from the same manifest, as two revisions do during a deploy.
  // No automatic snapshots: the test decides who publishes when.
  const manual = { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } };
  const a = await open(join(dir.path, name, 'a.db'), store, manual);
  const b = await open(join(dir.path, name, 'b.db'), store, manual);
  await a.insert(notes).values({ body: 'from a' });
  const published = await a.$sync.flush();
  assert.ok(published?.uploaded);
  const manifestAfterA = (await store.readSmall(MANIFEST_KEY))!.body;
  const blobsAfterA = (await store.list('snapshots/')).map((o) => o.key).sort();

  await b.insert(notes).values({ body: 'from b' });
  const error = nextEvent(b.$sync, 'snapshot-error');
  await assert.rejects(b.$sync.flush(), (e: unknown) => e instanceof SyncError && e.code === 'CONFLICT');
  const event = await error;
  assert.equal(event.code, 'CONFLICT');
  const status = b.$sync.status();
  assert.equal(status.state, 'stopped');
  assert.equal(status.lastError?.code, 'CONFLICT');
  assert.ok(status.pendingCommits > 0, "b's commits are reported as not in the store");

  // Nothing of b's reached the store: same manifest bytes, and b's uploaded blob was removed again.
  assert.ok((await store.readSmall(MANIFEST_KEY))!.body.equals(manifestAfterA), 'manifest not overwritten');
  assert.deepEqual((await store.list('snapshots/')).map((o) => o.key).sort(), blobsAfterA, 'no orphan blob left by the loser');
  const manifest = decodeManifest(manifestAfterA, store.location);
  assert.equal(manifest.snapshots[0]!.sha256, published.sha256);

  // The loser stays stopped: more commits do not retry, close reports the conflict.
  await b.insert(notes).values({ body: 'from b again' });
  await assert.rejects(b.$sync.close(), (e: unknown) => e instanceof SyncError && e.code === 'CONFLICT');
  await a.$sync.close();

  const fresh = await open(join(dir.path, name, 'fresh.db'), store);
  assert.deepEqual((await fresh.select().from(notes)).map((r) => r.body), ['seed', 'from a']);
  await fresh.$sync.close();
}

test('two instances on one Azure container: the stale one gets CONFLICT and overwrites nothing', () =>
  twoWriters('azure', azureBlobStore({ connectionString: azurite.connectionString, container: 'conflict', createContainer: true })));

test('two instances on one directory store: same guarantee', () => twoWriters('dir', directoryStore({ dir: join(dir.path, 'dir', 'store') })));
