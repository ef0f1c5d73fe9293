import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createClient } from '@libsql/client';
import { directoryStore, drizzle, SyncError, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { MANIFEST_KEY, applyRetention, deltaChain, type SnapshotEntry } from '../../src/sync/manifest.ts';
import { notes, open, readManifest, schema, tempDir } from '../helpers/fixtures.ts';

let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  dir = await tempDir('pitr');
});
after(async () => {
  await dir?.cleanup();
});

const manual = { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } };

/** Three snapshots: rows [r1], [r1, r2], [r1, r2, r3]. Returns their manifest entries, oldest first. */
async function history(name: string) {
  const store = directoryStore({ dir: join(dir.path, name, 'store') });
  const db = await open(join(dir.path, name, 'writer.db'), store, manual);
  const entries: SnapshotEntry[] = [];
  for (const body of ['r1', 'r2', 'r3']) {
    await db.insert(notes).values({ body });
    await db.$sync.flush();
    entries.push((await readManifest(store)).snapshots[0]!);
  }
  await db.$sync.close();
  return { store, entries };
}

async function bodiesAt(dbPath: string, store: SnapshotStore, restore: unknown) {
  const db = await drizzle({ connection: { url: `file:${dbPath}` }, schema, store, log: false, shutdown: { signals: false }, restore: restore as never, ...manual });
  return { db, bodies: (await db.select().from(notes)).map((r) => r.body) };
}

test('restore: { seq } rolls back to that snapshot once; it becomes the latest, and the same target is not replayed', async () => {
  const { store, entries } = await history('seq');
  const [s1, , s3] = entries as [SnapshotEntry, SnapshotEntry, SnapshotEntry];

  const first = await bodiesAt(join(dir.path, 'seq', 'a.db'), store, { seq: s1.seq });
  assert.deepEqual(first.bodies, ['r1']);
  assert.equal(first.db.$sync.status().restoredFrom?.seq, s1.seq);
  assert.equal(first.db.$sync.status().pendingCommits, 1, 'the roll-back itself is pending until published');
  const published = await first.db.$sync.flush();
  assert.ok(published?.uploaded, 'published even though the bytes equal an older snapshot');
  const after = await readManifest(store);
  assert.equal(after.seq, s3.seq + 1, 'published on top: the manifest never goes backwards');
  assert.deepEqual(after.snapshots[0]!.rolledBackTo, { seq: s1.seq, target: `seq:${s1.seq}` });
  assert.equal(after.snapshots.length, 4, 'the rolled-back-over history is kept');
  await first.db.insert(notes).values({ body: 'after roll-back' });
  await first.db.$sync.close();

  // A new container started with the same configuration continues from the latest, not from s1 again.
  const again = await bodiesAt(join(dir.path, 'seq', 'b.db'), store, { seq: s1.seq });
  assert.deepEqual(again.bodies, ['r1', 'after roll-back']);
  await again.db.$sync.close();
});

test('restore: { at } picks the newest snapshot taken at or before that time', async () => {
  const { store, entries } = await history('at');
  const [s1, s2, s3] = entries as [SnapshotEntry, SnapshotEntry, SnapshotEntry];
  const between = new Date((Date.parse(s2.createdAt) + Date.parse(s3.createdAt)) / 2);
  const { db, bodies } = await bodiesAt(join(dir.path, 'at', 'a.db'), store, { at: between.toISOString() });
  assert.deepEqual(bodies, ['r1', 'r2']);
  await db.$sync.close();

  const exact = await bodiesAt(join(dir.path, 'at', 'b.db'), store, { at: new Date(s1.createdAt) });
  assert.deepEqual(exact.bodies, ['r1']);
  await exact.db.$sync.close();

  // Before the oldest retained snapshot: nothing matches, nothing starts, the store is untouched.
  const before = (await store.readSmall(MANIFEST_KEY))!.body;
  const dbPath = join(dir.path, 'at', 'c.db');
  await assert.rejects(bodiesAt(dbPath, store, { at: new Date(Date.parse(s1.createdAt) - 60_000) }), (error: unknown) => {
    assert.ok(error instanceof SyncError && error.code === 'CONFIG', String(error));
    assert.match(error.message, /No retained snapshot was taken at or before .*retains seq 1 .*list them/);
    return true;
  });
  assert.equal(existsSync(dbPath), false);
  assert.ok((await store.readSmall(MANIFEST_KEY))!.body.equals(before), 'manifest unchanged');
});

test('a roll-back never discards local commits the store has not seen, and bad targets are CONFIG errors', async () => {
  const { store, entries } = await history('dirty');
  // The writer's own file gets a commit the store never saw (made outside the library after its clean close).
  const dbPath = join(dir.path, 'dirty', 'writer.db');
  const outside = createClient({ url: `file:${dbPath}` });
  await outside.execute("INSERT INTO notes (body) VALUES ('unsaved')");
  outside.close();
  const before = (await store.readSmall(MANIFEST_KEY))!.body;
  await assert.rejects(bodiesAt(dbPath, store, { seq: entries[0]!.seq }), (error: unknown) => {
    assert.ok(error instanceof SyncError && error.code === 'DIVERGED', String(error));
    assert.match(error.message, /would discard/);
    return true;
  });
  const check = createClient({ url: `file:${dbPath}` });
  assert.equal(Number((await check.execute("SELECT count(*) FROM notes WHERE body = 'unsaved'")).rows[0]![0]), 1, 'local file untouched');
  check.close();
  assert.ok((await store.readSmall(MANIFEST_KEY))!.body.equals(before), 'store untouched');

  for (const bad of [{ seq: 0 }, { seq: 1.5 }, { at: 'yesterday' }, { when: 'now' }]) {
    await assert.rejects(bodiesAt(join(dir.path, 'dirty', 'bad.db'), store, bad), (error: unknown) => {
      assert.ok(error instanceof SyncError && error.code === 'CONFIG', String(error));
      assert.match(error.message, /restore/);
      return true;
    });
  }
});

test('retention by count and by age; the latest snapshot is always kept', async () => {
  const at = (minutesAgo: number, seq: number) => ({ seq, createdAt: new Date(Date.parse('2026-11-23T12:00:00Z') - minutesAgo * 60_000).toISOString() }) as SnapshotEntry;
  const now = Date.parse('2026-11-23T12:00:00Z');
  const list = [at(0, 6), at(10, 5), at(20, 4), at(30, 3), at(40, 2), at(50, 1)];
  assert.deepEqual(applyRetention(list, { count: 3, maxAgeMs: Infinity }, now).map((s) => s.seq), [6, 5, 4]);
  assert.deepEqual(applyRetention(list, { count: 10, maxAgeMs: 25 * 60_000 }, now).map((s) => s.seq), [6, 5, 4]);
  assert.deepEqual(applyRetention(list, { count: 2, maxAgeMs: 25 * 60_000 }, now).map((s) => s.seq), [6, 5]);
  assert.deepEqual(applyRetention([at(90, 9), at(100, 8)], { count: 5, maxAgeMs: 60_000 }, now).map((s) => s.seq), [9], 'an old latest stays');

  // End to end: with a tiny maxAgeMs every publish drops the previous snapshots and deletes their blobs;
  // with page deltas, all but the latest's chain (its chunk set and the deltas up to it: it is kept whole).
  for (const maxDeltas of [0, 200]) {
    const store = directoryStore({ dir: join(dir.path, `age-${maxDeltas}`, 'store') });
    const db = await open(join(dir.path, `age-${maxDeltas}`, 'a.db'), store, { snapshot: { ...manual.snapshot, maxDeltas, retain: { count: 10, maxAgeMs: 1 } } });
    for (const body of ['x', 'y', 'z']) {
      await db.insert(notes).values({ body });
      await db.$sync.flush();
    }
    await db.$sync.close();
    const manifest = await readManifest(store);
    const chain = deltaChain(manifest.snapshots, manifest.snapshots[0]!)!;
    assert.deepEqual(manifest.snapshots.map((s) => s.key), [...chain.deltas.reverse(), chain.base].map((s) => s.key), `maxDeltas ${maxDeltas}: only the latest's chain is listed`);
    assert.equal(manifest.snapshots.length, maxDeltas === 0 ? 1 : 3, `maxDeltas ${maxDeltas}`);
    assert.deepEqual((await store.list('snapshots/')).map((o) => o.key).sort(), manifest.snapshots.map((s) => s.key).sort());
  }
});
