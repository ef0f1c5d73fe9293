import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createClient } from '@libsql/client';
import { directoryStore, SyncError } from 'drizzle-libsql-blob';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { killAndWait, spawnTs, waitForLine } from '../helpers/child.ts';
import { CREATE_NOTES, notes, open, tempDir } from '../helpers/fixtures.ts';

let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('local')));
after(() => dir.cleanup());

async function bodies(dbPath: string): Promise<string[]> {
  const client = createClient({ url: `file:${dbPath}` });
  try {
    return (await client.execute('SELECT body FROM notes ORDER BY id')).rows.map((r) => String(r[0]));
  } finally {
    client.close();
  }
}

async function crashWithUnsnapshottedRows(dbPath: string, storeDir: string, rows: number) {
  const child = spawnTs('test/children/crash-writer.ts', [dbPath, storeDir, String(rows)]);
  const ready = await waitForLine(child, 'READY');
  assert.equal(ready, `READY ${rows}`);
  const exit = await killAndWait(child, 'SIGKILL');
  assert.equal(exit.signal, 'SIGKILL');
}

test('kill -9 with unsnapshotted commits: the restart keeps the local file, snapshots it, loses nothing', async () => {
  const storeDir = join(dir.path, 'crash', 'store');
  const dbPath = join(dir.path, 'crash', 'data', 'app.db');
  await crashWithUnsnapshottedRows(dbPath, storeDir, 25);
  const expected = ['snapshotted', ...Array.from({ length: 25 }, (_, i) => `unsnapshotted ${i}`)];

  const store = directoryStore({ dir: storeDir });
  const db = await open(dbPath, store);
  assert.equal(db.$sync.status().restoredFrom, null, 'the older remote snapshot was not downloaded over the local file');
  assert.deepEqual((await db.select().from(notes)).map((r) => r.body), expected);
  assert.ok(db.$sync.status().pendingCommits > 0, 'the unsaved commits are pending');
  const info = await db.$sync.flush();
  assert.ok(info?.uploaded);
  await db.$sync.close();

  const fresh = await open(join(dir.path, 'crash', 'fresh', 'app.db'), store);
  assert.deepEqual((await fresh.select().from(notes)).map((r) => r.body), expected, 'a fresh instance sees every row');
  await fresh.$sync.close();
});

test('a store that went backwards never overwrites a newer local file', async () => {
  const storeDir = join(dir.path, 'backwards', 'store');
  const store = directoryStore({ dir: storeDir });
  const dbPath = join(dir.path, 'backwards', 'app.db');
  const db = await open(dbPath, store);
  await db.insert(notes).values({ body: 'one' });
  await db.$sync.flush();
  await copyFile(join(storeDir, MANIFEST_KEY), join(dir.path, 'backwards', 'old-manifest.json'));
  await db.insert(notes).values({ body: 'two' });
  await db.$sync.close();
  // Someone restores the old manifest by hand.
  await copyFile(join(dir.path, 'backwards', 'old-manifest.json'), join(storeDir, MANIFEST_KEY));

  const reopened = await open(dbPath, store);
  assert.deepEqual((await reopened.select().from(notes)).map((r) => r.body), ['one', 'two']);
  const info = await reopened.$sync.flush();
  assert.ok(info?.uploaded, 'the newer local file is published');
  await reopened.$sync.close();
  const fresh = await open(join(dir.path, 'backwards', 'fresh.db'), store);
  assert.deepEqual((await fresh.select().from(notes)).map((r) => r.body), ['one', 'two']);
  await fresh.$sync.close();
});

test('local unsaved commits plus a store moved on by another writer: DIVERGED, nothing touched', async () => {
  const storeDir = join(dir.path, 'diverged', 'store');
  const dbPath = join(dir.path, 'diverged', 'a', 'app.db');
  await crashWithUnsnapshottedRows(dbPath, storeDir, 3);
  // The dead writer's lease lapses (as it does lease.durationSec after the kill), so another instance can write.
  await rm(join(storeDir, 'manifest.json.lease'));
  const store = directoryStore({ dir: storeDir });
  const other = await open(join(dir.path, 'diverged', 'b', 'app.db'), store);
  await other.insert(notes).values({ body: 'from b' });
  await other.$sync.close();
  const localBefore = await bodies(dbPath);

  await assert.rejects(open(dbPath, store), (error: unknown) => {
    assert.ok(error instanceof SyncError && error.code === 'DIVERGED', String(error));
    assert.match(error.message, /never uploaded/);
    return true;
  });
  assert.deepEqual(await bodies(dbPath), localBefore, 'local file untouched');
});

test('changes made by another process between runs (e.g. drizzle-kit migrate) are snapshotted', async () => {
  const store = directoryStore({ dir: join(dir.path, 'outside', 'store') });
  const dbPath = join(dir.path, 'outside', 'app.db');
  const db = await open(dbPath, store);
  await db.insert(notes).values({ body: 'ours' });
  await db.$sync.close();

  const client = createClient({ url: `file:${dbPath}` });
  await client.execute("INSERT INTO notes (body) VALUES ('theirs')");
  client.close();

  const reopened = await open(dbPath, store);
  assert.ok(reopened.$sync.status().pendingCommits > 0, 'the outside change is pending');
  await reopened.$sync.close();
  const fresh = await open(join(dir.path, 'outside', 'fresh.db'), store);
  assert.deepEqual((await fresh.select().from(notes)).map((r) => r.body), ['ours', 'theirs']);
  await fresh.$sync.close();
});

test('a local file of unknown origin is never replaced silently; an empty one is', async () => {
  const store = directoryStore({ dir: join(dir.path, 'unknown', 'store') });
  const seed = await open(join(dir.path, 'unknown', 'seed.db'), store);
  await seed.insert(notes).values({ body: 'backup' });
  await seed.$sync.close();

  const foreign = join(dir.path, 'unknown', 'foreign.db');
  const client = createClient({ url: `file:${foreign}` });
  await client.execute(CREATE_NOTES);
  await client.execute("INSERT INTO notes (body) VALUES ('foreign')");
  client.close();
  await assert.rejects(open(foreign, store), (e: unknown) => e instanceof SyncError && e.code === 'DIVERGED');
  assert.deepEqual(await bodies(foreign), ['foreign']);

  const empty = join(dir.path, 'unknown', 'empty', 'app.db');
  await mkdir(join(dir.path, 'unknown', 'empty'), { recursive: true });
  await writeFile(empty, '');
  const restored = await open(empty, store);
  assert.deepEqual((await restored.select().from(notes)).map((r) => r.body), ['backup']);
  await restored.$sync.close();
  await rm(join(dir.path, 'unknown'), { recursive: true, force: true });
});

test('after an unclean exit, a change made by another process before the next start is still snapshotted', async () => {
  const storeDir = join(dir.path, 'unclean', 'store');
  const dbPath = join(dir.path, 'unclean', 'app.db');
  await crashWithUnsnapshottedRows(dbPath, storeDir, 0); // killed clean (nothing pending), without close()
  const client = createClient({ url: `file:${dbPath}` });
  await client.execute("INSERT INTO notes (body) VALUES ('migrated outside')");
  client.close();
  const store = directoryStore({ dir: storeDir });
  const db = await open(dbPath, store);
  const info = await db.$sync.flush();
  assert.ok(info?.uploaded, 'the outside change was uploaded');
  await db.$sync.close();
  const fresh = await open(join(dir.path, 'unclean', 'fresh.db'), store);
  assert.deepEqual((await fresh.select().from(notes)).map((r) => r.body), ['snapshotted', 'migrated outside']);
  await fresh.$sync.close();
});
