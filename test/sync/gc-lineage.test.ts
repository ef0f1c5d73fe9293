/**
 * Issue 11, bug 3 (the GC half): garbage collection deletes only what it can prove belongs to this
 * manifest's own history. With manifest.json lost and replaced by a fresh empty one (an old version,
 * an operator), a writer that snapshots with gcGraceMs 0 must delete none of the objects an earlier
 * history left, however old. The writer is driven through the Snapshotter itself, so the test holds
 * whatever start-up decides about such a store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdir, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { createClient } from '@libsql/client';
import { sql } from 'drizzle-orm';
import { directoryStore, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { WriterLease } from '../../src/sync/lease.ts';
import { EMPTY_MANIFEST, LINEAGE_CLOCK_MARGIN_MS, MANIFEST_KEY, encodeManifest, isOwnLeftover, nextLineage } from '../../src/sync/manifest.ts';
import { readHead } from '../../src/sync/restore.ts';
import { Snapshotter } from '../../src/sync/snapshotter.ts';
import { newGeneration } from '../../src/local/sidecar.ts';
import { open, readManifest, tempDir } from '../helpers/fixtures.ts';

const silent = { info() {}, warn() {}, error() {} };

test('isOwnLeftover / nextLineage: only objects written under a lineage the manifest already had, since it began, past the minimum age', () => {
  const since = '2026-01-01T00:00:00.000Z';
  const lineage = { id: 'l', since };
  const t = Date.parse(since);
  const cases: Array<[modified: number, lineage: typeof lineage | undefined, now: number, minAge: number, own: boolean]> = [
    [t + 1000, undefined, t + 10_000_000, 0, false], // a new or replaced manifest: nothing is provably ours
    [t - 1, lineage, t + 10_000_000, 0, false], // before the lineage began: an earlier history's
    [t, lineage, t, 0, true],
    [t + 1000, lineage, t + 2000, 3_600_000, false], // too young: may be an upload in flight
    [t + 1000, lineage, t + 1000 + 3_600_000, 3_600_000, true],
  ];
  for (const [modified, l, now, minAge, own] of cases) assert.equal(isOwnLeftover(new Date(modified), l, now, minAge), own, JSON.stringify({ modified, l, now, minAge }));

  assert.deepEqual(nextLineage({ ...EMPTY_MANIFEST, lineage }, t, () => 'new'), lineage, 'kept across publishes');
  assert.deepEqual(nextLineage(EMPTY_MANIFEST, t, () => 'new'), { id: 'new', since: new Date(t + LINEAGE_CLOCK_MARGIN_MS).toISOString() });
  assert.deepEqual(nextLineage(undefined, t, () => 'new').id, 'new');
});

async function listing(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(root, { recursive: true })) {
    if ((await stat(join(root, name))).isFile() && !name.endsWith('.lease') && name !== MANIFEST_KEY) out.push(name);
  }
  return out.sort();
}

test('a writer on a replaced (fresh, empty) manifest deletes none of the objects an earlier history left, even with gcGraceMs 0 and objects hours old', async () => {
  const dir = await tempDir('gc-lineage');
  try {
    const root = join(dir.path, 'store');
    const store: SnapshotStore = directoryStore({ dir: root });

    // An earlier history: incremental snapshots (with an unpublished chunk left over) and a full one.
    const old = await open(join(dir.path, 'old.db'), store, { snapshot: { mode: 'incremental', chunkSize: 65_536, maxDeltas: 0, debounceMs: 600_000, maxIntervalMs: 600_000, retain: 2 } });
    for (let round = 0; round < 4; round++) {
      await old.run(sql`INSERT INTO notes (body) SELECT 'r${sql.raw(String(round))} ' || hex(randomblob(200)) FROM generate_series(1, 500)`);
      await old.$sync.flush();
    }
    await old.$sync.close();
    await store.uploadBuffer(`chunks/${'e'.repeat(64)}`, Buffer.from('an upload whose snapshot died'));
    await store.uploadBuffer('snapshots/deadbeef/000000000099-0000.chunks.json', Buffer.from('{}'));
    assert.ok((await readManifest(store)).lineage, 'publishes record a lineage');
    // Hours old: past every age limit the collector has (grace 0, unpublished snapshot objects 1 h).
    const past = new Date(Date.now() - 3 * 3_600_000);
    const before = await listing(root);
    for (const name of before) await utimes(join(root, name), past, past);
    assert.ok(before.filter((n) => n.startsWith('chunks/')).length > 5 && before.some((n) => n.startsWith('snapshots/')), before.join(', '));

    // manifest.json lost and replaced by an empty one.
    await rm(join(root, `${MANIFEST_KEY}.lease`), { force: true });
    await rm(join(root, MANIFEST_KEY));
    await store.writeSmall(MANIFEST_KEY, encodeManifest(EMPTY_MANIFEST), { ifNoneMatch: '*' });

    // A new writer starts on an empty database there and snapshots twice, collecting with no grace.
    const dbPath = join(dir.path, 'new.db');
    const client = createClient({ url: `file:${dbPath}` });
    await client.execute('CREATE TABLE t (x TEXT)');
    await client.execute("INSERT INTO t VALUES ('first')");
    const lease = new WriterLease({ store, id: randomUUID(), durationSec: 15, log: silent, onLost: () => undefined });
    await lease.acquire();
    const head = await readHead(store);
    const snapshotter = new Snapshotter(
      { store, dbPath, codec: 'lz4', retention: { count: 1, maxAgeMs: Infinity }, log: silent, lease, mode: 'incremental', chunkSize: 65_536, maxDeltas: 0, keys: undefined, gcGraceMs: 0, beforePublish: () => undefined, migrationsTable: '__drizzle_migrations' },
      head,
    );
    const state = { format: 1 as const, store: store.location, generation: newGeneration(), seq: 0, dirty: true, fingerprint: null };
    const first = await snapshotter.snapshot(state);
    await client.execute("INSERT INTO t VALUES ('second')");
    await snapshotter.snapshot({ ...state, seq: first.entry.seq });
    // Its deletions run after the publish (retention, garbage): all of them done before the store is listed,
    // or the listing races them (a stat of a chunk deleted meanwhile failed with ENOENT) and misses late ones.
    await snapshotter.settleTidy();
    client.close();
    await lease.release();

    const after = await listing(root);
    const deleted = before.filter((name) => !after.includes(name));
    assert.deepEqual(deleted, [], 'objects of the earlier history were deleted');
    const manifest = await readManifest(store);
    assert.equal(manifest.seq, 2);
    assert.ok(manifest.lineage && Date.parse(manifest.lineage.since) > Date.now(), 'a new lineage began with the replaced manifest');
  } finally {
    await dir.cleanup();
  }
});
