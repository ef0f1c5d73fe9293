/**
 * README claims that had no test of their own, one focused test each (real libSQL files, the real
 * directory store, real child processes where a crash is needed).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createClient } from '@libsql/client';
import { sql } from 'drizzle-orm';
import { directoryStore, drizzle, type SnapshotStore } from 'drizzle-libsql-blob';
import { MANIFEST_KEY, type Manifest } from '../../src/sync/manifest.ts';
import { CHUNK_PREFIX, chunkKey, decodeChunkIndex } from '../../src/sync/chunks/chunk-index.ts';
import { killAndWait, spawnTs, waitForLine } from '../helpers/child.ts';
import { CREATE_NOTES, isCode, notes, open, readManifest, schema, tempDir } from '../helpers/fixtures.ts';

let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('claims')));
after(() => dir.cleanup());

const MANUAL = { debounceMs: 600_000, maxIntervalMs: 600_000 };
const storeDir = (label: string) => join(dir.path, label, 'store');
const storeFor = (label: string) => directoryStore({ dir: storeDir(label) });

/** Opens without writing anything at start (unlike `open`, which creates the table). */
function instance(dbPath: string, store: SnapshotStore, options: Record<string, unknown> = {}) {
  return drizzle({ connection: { url: `file:${dbPath}` }, schema, store, log: false, shutdown: { signals: false }, ...options });
}

async function bodiesOf(db: { select: Awaited<ReturnType<typeof open>>['select'] }): Promise<string[]> {
  return (await db.select().from(notes)).map((r) => r.body);
}

/** Bodies as plain SQLite sees the file (with whatever -wal lies beside it). */
async function bodiesOnDisk(dbPath: string): Promise<string[]> {
  const client = createClient({ url: pathToFileURL(dbPath).href });
  try {
    return (await client.execute('SELECT body FROM notes ORDER BY id')).rows.map((r) => String(r[0]));
  } finally {
    client.close();
  }
}

test('hydrate drops stale -wal/-shm: a WAL left by the replaced file is not replayed onto the restored database', async () => {
  const label = 'stale-wal';
  const store = storeFor(label);
  const writer = await open(join(dir.path, label, 'w.db'), store, { snapshot: MANUAL });
  await writer.insert(notes).values({ body: 'v1' });
  await writer.$sync.flush();

  // A replica-side file at v1, then its run dies (a killed run leaves no fingerprint in the sidecar).
  const local = join(dir.path, label, 'local', 'app.db');
  const first = await instance(local, store, { role: 'replica' });
  assert.deepEqual(await bodiesOf(first), ['v1']);
  await first.$sync.close();
  const sidecar = JSON.parse(await readFile(`${local}.sync.json`, 'utf8')) as { fingerprint: unknown };
  await writeFile(`${local}.sync.json`, JSON.stringify({ ...sidecar, fingerprint: null }));

  // A stale WAL beside it: frames from a copy of the same file that wrote a row the store never saw.
  const scratch = join(dir.path, label, 'scratch');
  await mkdir(scratch, { recursive: true });
  await copyFile(local, join(scratch, 'app.db'));
  const other = createClient({ url: pathToFileURL(join(scratch, 'app.db')).href });
  await other.execute('PRAGMA journal_mode=WAL');
  await other.execute('PRAGMA wal_autocheckpoint=0');
  await other.execute("INSERT INTO notes (body) VALUES ('stale wal row')");
  await copyFile(join(scratch, 'app.db-wal'), `${local}-wal`);
  other.close();
  // Control: SQLite would replay that WAL onto the file it lies beside.
  const control = join(dir.path, label, 'control');
  await mkdir(control, { recursive: true });
  await copyFile(local, join(control, 'app.db'));
  await copyFile(`${local}-wal`, join(control, 'app.db-wal'));
  assert.deepEqual(await bodiesOnDisk(join(control, 'app.db')), ['v1', 'stale wal row'], 'control: the stale WAL is replayable');

  // The store moves on; the restart downloads v2 over the local file.
  await writer.insert(notes).values({ body: 'v2' });
  const v2 = await writer.$sync.flush();
  await writer.$sync.close();
  const restarted = await instance(local, store, { role: 'replica' });
  assert.equal(restarted.$sync.status().restoredFrom?.seq, v2!.seq, 'the restart downloaded the newer snapshot');
  assert.deepEqual(await bodiesOf(restarted), ['v1', 'v2'], 'the stale WAL was replayed onto the restored database');
  await restarted.$sync.close();
  assert.deepEqual(await bodiesOnDisk(local), ['v1', 'v2']);
});

/** A writer child snapshots once, commits `rows` more locally, and is killed: a dirty local file. */
async function crashWithUnsavedCommits(dbPath: string, store: string, rows: number): Promise<void> {
  const child = spawnTs('test/children/crash-writer.ts', [dbPath, store, String(rows)]);
  assert.equal(await waitForLine(child, 'READY'), `READY ${rows}`);
  assert.equal((await killAndWait(child, 'SIGKILL')).signal, 'SIGKILL');
}

test("a replica started on a local file holding unsaved commits refuses to start (DIVERGED) rather than throw them away: role 'auto'", async () => {
  const label = 'dirty-auto';
  const local = join(dir.path, label, 'app.db');
  await crashWithUnsavedCommits(local, storeDir(label), 3);
  const store = storeFor(label);
  // The dead writer's lease lapses and another instance becomes the writer (it publishes nothing).
  await rm(join(storeDir(label), `${MANIFEST_KEY}.lease`));
  const other = await instance(join(dir.path, label, 'other.db'), store, { role: 'writer' });
  const manifestBefore = (await store.readSmall(MANIFEST_KEY))!;

  await assert.rejects(instance(local, store), isCode('DIVERGED'));
  assert.deepEqual(await bodiesOnDisk(local), ['snapshotted', 'unsnapshotted 0', 'unsnapshotted 1', 'unsnapshotted 2'], 'the unsaved commits are still in the local file');
  assert.ok((await store.readSmall(MANIFEST_KEY))!.body.equals(manifestBefore.body));
  await other.$sync.close();
});

test(
  "a replica started on a local file holding unsaved commits refuses to start (DIVERGED) rather than throw them away: role 'replica'",
  async () => {
    const label = 'dirty-replica';
    const local = join(dir.path, label, 'app.db');
    await crashWithUnsavedCommits(local, storeDir(label), 3);
    const store = storeFor(label);
    await rm(join(storeDir(label), `${MANIFEST_KEY}.lease`));
    const other = await instance(join(dir.path, label, 'other.db'), store, { role: 'writer' });
    try {
      let opened: Awaited<ReturnType<typeof instance>> | undefined;
      await assert.rejects(
        instance(local, store, { role: 'replica' }).then((db) => {
          opened = db;
          return db;
        }),
        isCode('DIVERGED'),
      ).finally(async () => {
        if (!opened) return;
        await opened.$sync.close();
        const sidecar = JSON.parse(await readFile(`${local}.sync.json`, 'utf8')) as { dirty: boolean };
        assert.equal(sidecar.dirty, true, 'the replica marked the file holding unsaved commits clean');
      });
    } finally {
      await other.$sync.close();
    }
  },
);

test("restore: 'skip' onto a store holding a backup this file does not descend from: its first snapshot refuses to replace it (DIVERGED)", async () => {
  const label = 'skip-conflict';
  const store = storeFor(label);
  const a = await open(join(dir.path, label, 'a.db'), store, { snapshot: MANUAL });
  await a.insert(notes).values({ body: 'the backup' });
  await a.$sync.flush();
  await a.$sync.close();
  const before = (await store.readSmall(MANIFEST_KEY))!;
  const snapshotsBefore = (await store.list('snapshots/')).map((o) => o.key).sort();

  const b = await open(join(dir.path, label, 'b.db'), store, { restore: 'skip', snapshot: MANUAL });
  assert.equal(b.$sync.status().role, 'writer', "restore: 'skip' still takes the writer lease");
  assert.equal(b.$sync.status().restoredFrom, null);
  await b.insert(notes).values({ body: 'unrelated' });
  await assert.rejects(b.$sync.flush(), (error: unknown) => {
    isCode('DIVERGED')(error);
    assert.match((error as Error).message, /restore: 'skip'/);
    return true;
  });
  const after = (await store.readSmall(MANIFEST_KEY))!;
  assert.ok(after.body.equals(before.body) && after.etag === before.etag, 'the backup was replaced');
  assert.deepEqual((await store.list('snapshots/')).map((o) => o.key).sort(), snapshotsBefore, 'no snapshot object was left in the store');
  await b.$sync.close().catch(() => undefined);

  const fresh = await instance(join(dir.path, label, 'fresh.db'), store, { role: 'replica', restore: 'required' });
  assert.deepEqual(await bodiesOf(fresh), ['the backup']);
  await fresh.$sync.close();
});

test("a corrupt newest snapshot: the 'restore' event lists it in skipped", async () => {
  const label = 'skipped-event';
  const store = storeFor(label);
  const a = await open(join(dir.path, label, 'a.db'), store, { snapshot: { ...MANUAL, mode: 'full' } });
  await a.insert(notes).values({ body: 'older' });
  const older = await a.$sync.flush();
  await a.insert(notes).values({ body: 'newest' });
  const newest = await a.$sync.flush();
  await a.$sync.close(); // nothing pending: no further snapshot
  const latest = (await readManifest(store)).snapshots[0]!;
  assert.equal(latest.seq, newest!.seq);
  await writeFile(join(storeDir(label), latest.key), randomBytes(latest.compressedBytes));

  const r = await instance(join(dir.path, label, 'r.db'), store, { role: 'replica' });
  const event = await new Promise<{ seq: number; skipped: Array<{ seq: number; code: string }> }>((resolve) => r.$sync.on('restore', resolve));
  assert.equal(event.seq, older!.seq, 'restored the previous snapshot');
  assert.deepEqual(
    event.skipped.map((s) => [s.seq, s.code]),
    [[newest!.seq, 'SNAPSHOT_CORRUPT']],
  );
  assert.deepEqual(r.$sync.status().restoredFrom?.skipped, event.skipped);
  assert.deepEqual(await bodiesOf(r), ['older']);
  await r.$sync.close();
});

// Chunk-set garbage collection: every upload a chunk set (maxDeltas 0).
const incremental = (extra: object) => ({ snapshot: { ...MANUAL, mode: 'incremental' as const, chunkSize: 65_536, maxDeltas: 0, ...extra } });

async function fill(db: Awaited<ReturnType<typeof open>>, rows: number, tag: string) {
  await db.run(sql`INSERT INTO notes (body) SELECT ${tag} || ' ' || value || ' ' || hex(randomblob(60)) FROM generate_series(1, ${rows})`);
}

async function storedChunks(store: SnapshotStore): Promise<Set<string>> {
  return new Set((await store.list(CHUNK_PREFIX)).map((o) => o.key.slice(CHUNK_PREFIX.length)));
}

/** Resolves once `ms` have passed since `since` (an ISO time from the manifest): the grace period is a time condition. */
async function pastGrace(garbage: NonNullable<Manifest['garbage']>, graceMs: number): Promise<void> {
  const due = Math.max(...garbage.map((g) => Date.parse(g.since))) + graceMs + 5;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
}

test('garbage collection: a chunk uploaded again within its grace period survives; the other garbage goes', async () => {
  const label = 'gc-reupload';
  const store = storeFor(label);
  const graceMs = 1_500;
  const db = await open(join(dir.path, label, 'a.db'), store, incremental({ retain: 1, gcGraceMs: graceMs }));
  await fill(db, 2_000, 'base');
  await db.$sync.flush();
  await db.run(sql`UPDATE notes SET body = 'changed ' || hex(randomblob(60))`);
  await db.$sync.flush(); // the first snapshot's chunks are now garbage, within their grace period
  const garbage = (await readManifest(store)).garbage ?? [];
  assert.ok(garbage.length >= 2, `${garbage.length} garbage chunks`);
  const [again, ...rest] = garbage.map((g) => g.address);

  // Someone uploads one of them again (a writer whose snapshot needs that content once more).
  await new Promise((resolve) => setTimeout(resolve, 5)); // strictly after it became garbage (1 ms resolution)
  const parts: Buffer[] = [];
  for await (const part of store.download(chunkKey(again!))) parts.push(part);
  await store.uploadBuffer(chunkKey(again!), Buffer.concat(parts));

  await pastGrace(garbage, graceMs);
  await db.run(sql`UPDATE notes SET body = 'third' WHERE id = 1`);
  await db.$sync.flush(); // collects garbage past the grace period
  const present = await storedChunks(store);
  assert.ok(present.has(again!), 'the chunk uploaded again within its grace period was deleted');
  for (const address of rest) assert.ok(!present.has(address), `garbage chunk ${address.slice(0, 12)} past its grace period was kept`);
  // The next publish records that its grace period started over (and the next collection keeps it).
  await db.run(sql`UPDATE notes SET body = 'fourth' WHERE id = 1`);
  await db.$sync.flush();
  const listed = ((await readManifest(store)).garbage ?? []).find((g) => g.address === again);
  assert.ok(listed, 'the survivor stays listed as garbage');
  assert.ok(Date.parse(listed.since) > Date.parse(garbage.find((g) => g.address === again)!.since), 'its grace period started over');
  assert.ok((await storedChunks(store)).has(again!), 'the survivor was deleted before its new grace period ended');
  await db.$sync.close();
});

test('orphan chunks (uploaded by a run that died before publishing) are swept after the grace period', async () => {
  const label = 'gc-orphans';
  const store = storeFor(label);
  const a = await open(join(dir.path, label, 'a.db'), store, incremental({ gcGraceMs: 0 }));
  await fill(a, 500, 'base');
  await a.$sync.flush();
  await a.$sync.close();
  // Leftovers are swept only when written after the lineage began (plus a 15-minute clock margin):
  // age the lineage instead of waiting.
  const manifestPath = join(storeDir(label), MANIFEST_KEY);
  const aged = JSON.parse(await readFile(manifestPath, 'utf8')) as { lineage: { since: string } };
  aged.lineage.since = new Date(Date.now() - 3_600_000).toISOString();
  await writeFile(manifestPath, JSON.stringify(aged));

  // A run that died after uploading a chunk, before publishing the snapshot that referenced it.
  const orphan = randomBytes(32).toString('hex');
  await store.uploadBuffer(chunkKey(orphan), randomBytes(1000));
  const referenced = new Set<string>();
  for (const entry of (await readManifest(store)).snapshots) for (const c of decodeChunkIndex((await store.readSmall(entry.key))!.body, entry.key).chunks) referenced.add(c);

  // A grace period still running: the orphan is listed as garbage and kept.
  const b = await open(join(dir.path, label, 'a.db'), store, incremental({ gcGraceMs: 600_000 }));
  await b.insert(notes).values({ body: 'b' });
  await b.$sync.flush();
  await b.$sync.close();
  assert.ok(((await readManifest(store)).garbage ?? []).some((g) => g.address === orphan), 'the orphan is listed as garbage');
  assert.ok((await storedChunks(store)).has(orphan), 'the orphan was deleted within its grace period');

  // Grace period over (0 here): the next process's first snapshot deletes it.
  const c = await open(join(dir.path, label, 'a.db'), store, incremental({ gcGraceMs: 0 }));
  await c.insert(notes).values({ body: 'c' });
  await c.$sync.flush();
  await c.$sync.close();
  const present = await storedChunks(store);
  assert.ok(!present.has(orphan), 'the orphan chunk was not swept');
  const manifest = await readManifest(store);
  for (const entry of manifest.snapshots) {
    for (const address of decodeChunkIndex((await store.readSmall(entry.key))!.body, entry.key).chunks) assert.ok(present.has(address), 'a referenced chunk was swept');
  }
  assert.ok(referenced.size > 0);
  const r = await instance(join(dir.path, label, 'r.db'), store, { role: 'replica', restore: 'required' });
  assert.deepEqual((await bodiesOf(r)).slice(-2), ['b', 'c']);
  await r.$sync.close();
});

void CREATE_NOTES;
