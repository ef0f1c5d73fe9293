/**
 * Compaction beside the deltas (issue 14): once a chain of deltas passes its bounds, the chunk set that
 * replaces it is read and uploaded in the background while uploads go on as deltas, and durable()
 * keeps answering; it is then published together with a delta carrying every page changed since its
 * pin, in one manifest write. Real libSQL files and the real directory store; the store only holds the
 * compaction's chunk uploads at a gate, so "during the compaction" is a state the test controls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as libsql from '@libsql/client/sqlite3';
import { rm } from 'node:fs/promises';
import { sql } from 'drizzle-orm';
import { SyncError, directoryStore, type SnapshotStore } from 'drizzle-libsql-blob';
import { CHUNK_PREFIX } from '../../src/sync/chunks/chunk-index.ts';
import { downloadSnapshot } from '../../src/sync/restore.ts';
import { deltaChain, type SnapshotEntry } from '../../src/sync/manifest.ts';
import { notes, open, readManifest, tempDir } from '../helpers/fixtures.ts';
import { wholeFileAddresses } from '../helpers/page-image.ts';

const CHUNK = 64 * 1024;
const MANUAL = { debounceMs: 600_000, maxIntervalMs: 600_000, maxCommits: 1_000_000, chunkSize: CHUNK };

/** The directory store, with chunk uploads held at a gate while it is closed (the compaction's: deltas upload no chunk). */
function gatedStore(dir: string) {
  const inner = directoryStore({ dir });
  let gate: { open: Promise<void>; release: () => void; reached: Promise<void>; reach: () => void } | undefined;
  let failing = false;
  /** Chunk uploads that completed and chunk listings, in order: `upload` / `list`. */
  const events: Array<'upload' | 'list'> = [];
  const close = () => {
    let release!: () => void;
    let reach!: () => void;
    const opened = new Promise<void>((r) => (release = r));
    const reached = new Promise<void>((r) => (reach = r));
    gate = { open: opened, release, reached, reach };
    return gate;
  };
  const store: SnapshotStore = {
    ...inner,
    uploadBuffer: async (key, body) => {
      if (failing && key.startsWith(CHUNK_PREFIX)) throw new SyncError('STORE_UNREACHABLE', 'injected: chunk uploads refused', { transient: true });
      const g = gate;
      if (g && key.startsWith(CHUNK_PREFIX)) {
        g.reach();
        await g.open;
      }
      await inner.uploadBuffer(key, body);
      if (key.startsWith(CHUNK_PREFIX)) events.push('upload');
    },
    list: async (prefix) => {
      if (prefix === CHUNK_PREFIX) events.push('list');
      return inner.list(prefix);
    },
  };
  return {
    store,
    events,
    /** Chunk uploads fail from now on (a store that refuses them), until `failChunks(false)`. */
    failChunks: (on: boolean) => void (failing = on),
    /** Holds chunk uploads from now on; `reached` resolves when the first one waits. */
    hold: () => close(),
    release: () => {
      gate?.release();
      gate = undefined;
    },
  };
}

async function restoreAddresses(store: SnapshotStore, entry: SnapshotEntry, snapshots: SnapshotEntry[], path: string): Promise<string[]> {
  await downloadSnapshot(store, entry, path, { snapshots });
  const addresses = await wholeFileAddresses(path, CHUNK);
  await rm(path);
  return addresses;
}

test('a compaction runs beside the deltas: uploads and durable() go on while its chunks upload, then it is published with a delta bridging it to the latest; every restore point restores as it was', async () => {
  const dir = await tempDir('compaction');
  const gated = gatedStore(join(dir.path, 'store'));
  const dbPath = join(dir.path, 'app.db');
  // gcGraceMs 0 and a short retention: deltas published during the compaction drop restore points and
  // collect their chunks at once; the compaction's chunks must survive that.
  const db = await open(dbPath, gated.store, { snapshot: { ...MANUAL, maxDeltas: 3, gcGraceMs: 0, retain: { count: 3 } } });
  try {
    await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000) INSERT INTO notes (body) SELECT hex(randomblob(150)) FROM n`);
    assert.equal((await db.$sync.flush())!.kind, 'chunks');
    const first = (await readManifest(gated.store)).snapshots[0]!;
    for (let i = 0; i < 3; i++) {
      await db.update(notes).set({ body: `spread ${i}` }).where(sql`id % 50 = ${i}`);
      assert.equal((await db.$sync.flush())!.kind, 'delta');
    }

    // The fourth upload finds the chain at maxDeltas: it is a delta too, and starts a compaction.
    const gate = gated.hold();
    await db.update(notes).set({ body: 'at the pin' }).where(sql`id = 10`);
    const fourth = (await db.$sync.flush())!;
    assert.equal(fourth.kind, 'delta', 'the upload that starts the compaction is a delta');
    const atPin = await wholeFileAddresses(dbPath, CHUNK); // nothing was written since the compaction's pin
    await gate.reached;

    // While its chunks wait at the gate: commits upload as deltas on the old chunk set, and durable() answers.
    for (let i = 0; i < 4; i++) {
      await db.update(notes).set({ body: `during ${i}` }).where(sql`id = ${100 + i * 1000}`);
      await db.$sync.durable({ timeoutMs: 5_000 });
      const manifest = await readManifest(gated.store);
      assert.equal(deltaChain(manifest.snapshots, manifest.snapshots[0]!)!.base.key, first.key, 'the latest is still a delta on the first chunk set');
    }
    assert.equal(db.$sync.status().pendingCommits, 0);
    const beforePublish = await readManifest(gated.store);

    // Released: the compaction's chunks upload, and an upload publishes it without waiting for a commit.
    const published = new Promise<void>((resolve) =>
      db.$sync.on('snapshot', () => void readManifest(gated.store).then((m) => deltaChain(m.snapshots, m.snapshots[0]!)!.base.key !== first.key && resolve())),
    );
    gated.release();
    await published;
    const manifest = await readManifest(gated.store);
    const [bridge, chunkSet] = manifest.snapshots as [SnapshotEntry, SnapshotEntry];
    assert.equal(chunkSet.kind, 'chunks', 'the compaction is listed right after the latest');
    assert.equal(manifest.seq, beforePublish.seq + 2, 'the chunk set and its bridging delta came in one manifest write');
    assert.deepEqual([bridge.kind, bridge.parent, bridge.base], ['delta', chunkSet.key, chunkSet.key], 'the latest is a delta on the new chunk set');
    const taken = manifest.snapshots.find((s) => s.seq === fourth.seq)!;
    assert.ok(Date.parse(chunkSet.createdAt) <= Date.parse(beforePublish.snapshots[0]!.createdAt), "the chunk set is dated at its pin, before the deltas taken meanwhile");
    assert.ok(Date.parse(chunkSet.createdAt) >= Date.parse(taken.createdAt));

    const live = await wholeFileAddresses(dbPath, CHUNK);
    assert.deepEqual(await restoreAddresses(gated.store, bridge, manifest.snapshots, join(dir.path, 'bridge.db')), live, 'the latest (chunk set + bridge) restores to the live file');
    assert.deepEqual(await restoreAddresses(gated.store, chunkSet, manifest.snapshots, join(dir.path, 'pin.db')), atPin, 'the chunk set alone restores to the file as of its pin');
    // Every retained restore point restores (the collections during the compaction deleted none of its chunks).
    for (const entry of manifest.snapshots) await restoreAddresses(gated.store, entry, manifest.snapshots, join(dir.path, `point-${entry.seq}.db`));

    // The record follows the new chunk set: the next upload is a delta on the bridge.
    await db.update(notes).set({ body: 'after' }).where(sql`id = 7`);
    const next = (await db.$sync.flush())!;
    assert.equal(next.kind, 'delta');
    const after = await readManifest(gated.store);
    assert.equal(after.snapshots[0]!.parent, bridge.key);
  } finally {
    gated.release();
    await db.$sync.close();
    await dir.cleanup();
  }
});

test('close() during a compaction publishes it once its chunks are in, after the final upload', async () => {
  const dir = await tempDir('compaction-close');
  const gated = gatedStore(join(dir.path, 'store'));
  const db = await open(join(dir.path, 'app.db'), gated.store, { snapshot: { ...MANUAL, maxDeltas: 1 } });
  let closed: Promise<void> | undefined;
  try {
    await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO notes (body) SELECT hex(randomblob(150)) FROM n`);
    await db.$sync.flush();
    const first = (await readManifest(gated.store)).snapshots[0]!;
    await db.update(notes).set({ body: 'one' }).where(sql`id = 1`);
    await db.$sync.flush();
    const gate = gated.hold();
    await db.update(notes).set({ body: 'two' }).where(sql`id = 2`);
    await db.$sync.flush(); // the chain is at maxDeltas: a delta, and a compaction starts
    await gate.reached;
    const seqBefore = (await readManifest(gated.store)).seq;
    await db.update(notes).set({ body: 'three' }).where(sql`id = 3`);
    closed = db.$sync.close();
    // The final upload (a delta on the first chunk set) lands while the compaction still waits.
    const final = await new Promise<SnapshotEntry>((resolve) => {
      const poll = () => void readManifest(gated.store).then((m) => (m.seq > seqBefore ? resolve(m.snapshots[0]!) : setTimeout(poll, 20)));
      poll();
    });
    assert.deepEqual([final.kind, final.base], ['delta', first.key]);
    gated.release();
    await closed;
    const manifest = await readManifest(gated.store);
    const chain = deltaChain(manifest.snapshots, manifest.snapshots[0]!)!;
    assert.notEqual(chain.base.key, final.base, 'published at close: the latest is on the new chunk set');
    assert.ok(chain.deltas.length <= 1);
    const restored = join(dir.path, 'restored.db');
    await downloadSnapshot(gated.store, manifest.snapshots[0]!, restored, { snapshots: manifest.snapshots });
    assert.deepEqual(await wholeFileAddresses(restored, CHUNK), await wholeFileAddresses(join(dir.path, 'app.db'), CHUNK));
  } finally {
    gated.release();
    await (closed ?? db.$sync.close()).catch(() => undefined);
    await dir.cleanup();
  }
});

test('a compaction that fails (its chunk uploads refused) is dropped: uploads go on as deltas past maxDeltas, nothing is published half-done, and every restore point restores', async () => {
  const dir = await tempDir('compaction-fails');
  const gated = gatedStore(join(dir.path, 'store'));
  const dbPath = join(dir.path, 'app.db');
  const warnings: string[] = [];
  const log = { info() {}, warn: (_: object, message?: string) => void warnings.push(message ?? ''), error() {} };
  // No retry of a refused request here: the compaction fails at once (the store's own retries are tested elsewhere).
  const db = await open(dbPath, gated.store, { log, snapshot: { ...MANUAL, maxDeltas: 2, retryBaseMs: 10 }, retry: { retries: 0, minTimeoutMs: 1, maxTimeoutMs: 1 } });
  try {
    await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO notes (body) SELECT hex(randomblob(150)) FROM n`);
    await db.$sync.flush();
    const first = (await readManifest(gated.store)).snapshots[0]!;
    gated.failChunks(true);
    for (let i = 0; i < 8; i++) {
      await db.update(notes).set({ body: `round ${i}` }).where(sql`id = ${1 + i * 300}`);
      assert.equal((await db.$sync.flush())!.kind, 'delta', `upload ${i} is a delta, whatever the compaction does`);
      if (i === 2) await new Promise<void>((resolve) => {
        const poll = () => (warnings.some((w) => w.startsWith('compaction failed')) ? resolve() : setTimeout(poll, 10));
        poll();
      });
    }
    const manifest = await readManifest(gated.store);
    assert.ok(manifest.snapshots.every((s) => s.kind !== 'chunks' || s.key === first.key), 'no chunk set was published but the first');
    assert.equal(deltaChain(manifest.snapshots, manifest.snapshots[0]!)!.base.key, first.key);
    const live = await wholeFileAddresses(dbPath, CHUNK);
    assert.deepEqual(await restoreAddresses(gated.store, manifest.snapshots[0]!, manifest.snapshots, join(dir.path, 'latest.db')), live);
    for (const entry of manifest.snapshots) await restoreAddresses(gated.store, entry, manifest.snapshots, join(dir.path, `point-${entry.seq}.db`));
  } finally {
    gated.failChunks(false);
    await db.$sync.close();
    await dir.cleanup();
  }
});

test('an upload that must read a chunk set (the record broke) while a compaction uploads its chunks stops the compaction at its next chunk instead of waiting for the rest, and deletes what it uploaded', async () => {
  const dir = await tempDir('compaction-drop');
  const gated = gatedStore(join(dir.path, 'store'));
  const dbPath = join(dir.path, 'app.db');
  const lines: string[] = [];
  const log = { info: (_: object, message?: string) => void lines.push(message ?? ''), warn: (_: object, message?: string) => void lines.push(message ?? ''), error() {} };
  const db = await open(dbPath, gated.store, { log, snapshot: { ...MANUAL, maxDeltas: 1 } });
  try {
    // ~13 MiB: ~200 chunks of 64 KiB, and a spread update touches nearly every one.
    await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000) INSERT INTO notes (body) SELECT hex(randomblob(150)) FROM n`);
    await db.$sync.flush();
    await db.update(notes).set({ body: 'spread' }).where(sql`id % 13 = 0`);
    await db.$sync.flush();
    const gate = gated.hold();
    await db.update(notes).set({ body: 'starts it' }).where(sql`id = 2`);
    assert.equal((await db.$sync.flush())!.kind, 'delta'); // the chain is at maxDeltas: a compaction starts
    await gate.reached; // its first chunk upload waits at the gate, ~200 to go

    // Another process writes, checkpoints and writes again: the record breaks, the next upload reads a chunk set.
    const other = libsql.createClient({ url: `file:${dbPath}` });
    try {
      await other.execute("UPDATE notes SET body = 'behind the library' WHERE id = 3000");
      await other.execute('PRAGMA wal_checkpoint(PASSIVE)');
      await other.execute("UPDATE notes SET body = 'and again' WHERE id = 3001");
    } finally {
      other.close();
    }
    await db.update(notes).set({ body: 'after' }).where(sql`id = 6`);
    const before = gated.events.length;
    const flushed = db.$sync.flush();
    gated.release();
    const info = (await flushed)!;
    assert.equal(info.kind, 'chunks');
    // Between the release and the chunk set's own listing (after the drop), only the compaction's chunk
    // in flight and at most one more: not its remaining ~200, one per 50 ms of giving way to this upload.
    const sinceRelease = gated.events.slice(before);
    const listedAt = sinceRelease.indexOf('list');
    assert.ok(listedAt >= 0 && listedAt <= 2, `the compaction stopped: ${listedAt} of its chunk uploads ran before the chunk set listed the store\n${lines.join('\n')}`);
    assert.ok(lines.some((l) => l === 'compaction dropped'), lines.join('\n'));
    assert.ok(!lines.some((l) => l.startsWith('compaction failed')), 'a dropped compaction is not reported as failed');

    // The chunk set is whole: every chunk it names is in the store (none deleted as the compaction's), and it restores to the live file.
    const manifest = await readManifest(gated.store);
    assert.deepEqual(await restoreAddresses(gated.store, manifest.snapshots[0]!, manifest.snapshots, join(dir.path, 'latest.db')), await wholeFileAddresses(dbPath, CHUNK));
    // Deltas, and a compaction later, go on.
    await db.update(notes).set({ body: 'next' }).where(sql`id = 7`);
    assert.equal((await db.$sync.flush())!.kind, 'delta');
  } finally {
    gated.release();
    await db.$sync.close();
    await dir.cleanup();
  }
});
