/**
 * Page deltas (issue 14), end to end on real libSQL files and the real directory store: an upload
 * between chunk sets ships only the pages changed since the previous one; restoring any restore point
 * applies its chain (chunk set + deltas, in order, each verified) and gives the database exactly as it
 * was; a damaged delta falls back to the newest restore point that fully verifies, never a gap; a
 * replica follows by fetching deltas only, and can still be promoted.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile, rm, writeFile } from 'node:fs/promises';
import * as libsql from '@libsql/client/sqlite3';
import { sql } from 'drizzle-orm';
import { directoryStore, drizzle, type SnapshotStore } from 'drizzle-libsql-blob';
import { CHUNK_PREFIX } from '../../src/sync/chunks/chunk-index.ts';
import { downloadSnapshot } from '../../src/sync/restore.ts';
import { MANIFEST_KEY, deltaChain, type SnapshotEntry } from '../../src/sync/manifest.ts';
import { mulberry32 } from '../../bench/dataset.ts';
import { nextEvent, notes, open, readManifest, schema, tempDir, type TempDir } from '../helpers/fixtures.ts';
import { wholeFileAddresses } from '../helpers/page-image.ts';
import { runCliOk } from '../helpers/cli.ts';
import { POOL_SIZE, libsqlWarmWorkers, workersReady } from '../../src/sync/run-in-worker.ts';

let dir: TempDir;
before(async () => (dir = await tempDir('page-delta')));
after(() => dir.cleanup());

const CHUNK = 64 * 1024;
const MANUAL = { debounceMs: 600_000, maxIntervalMs: 600_000, maxCommits: 1_000_000, chunkSize: CHUNK };

function hexOf(rand: () => number): string {
  return Math.floor(rand() * 0xffffffff).toString(16).padStart(8, '0');
}

// maxDeltas 6: chunk sets between short chains; 40: long chains with level-1 deltas (every LEVEL_SPAN-th).
for (const maxDeltas of [6, 40]) test(`every restore point a delta publishes restores, through its chain, to the database exactly as it was; a one-row commit ships one page (maxDeltas ${maxDeltas})`, async () => {
  const store = directoryStore({ dir: join(dir.path, `rounds-${maxDeltas}`, 'store') });
  const dbPath = join(dir.path, `rounds-${maxDeltas}`, 'app.db');
  const db = await open(dbPath, store, { snapshot: { ...MANUAL, maxDeltas } });
  let liveRows: Array<{ id: number; body: string }> = [];
  const kinds: string[] = [];
  const long = maxDeltas === 40;
  let leveled = 0;
  /** Chunk sets the latest restore point was built on, round after round: compactions add them. */
  const bases = new Set<string>();
  try {
    await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8000) INSERT INTO notes (body) SELECT hex(randomblob(150)) FROM n`);
    assert.equal((await db.$sync.flush())!.kind, 'chunks', 'the first upload is a chunk set (it starts the record)');

    // One single-row commit: one page read and shipped, whatever the file's size.
    await db.update(notes).set({ body: 'one row' }).where(sql`id = 4000`);
    const one = (await db.$sync.flush())!;
    assert.equal(one.kind, 'delta');
    assert.ok(one.readBytes <= 2 * 4096, `a one-row commit read ${one.readBytes} bytes`);
    assert.ok(one.compressedBytes <= 32 * 1024, `a one-row commit uploaded ${one.compressedBytes} bytes`);
    // A writer uploading deltas has every pool worker load the driver now (readiness waits for it), so
    // the delta that runs on a worker a compaction did not take never pays the load (45-55 ms).
    await workersReady(POOL_SIZE, 30_000);
    assert.equal(libsqlWarmWorkers(), POOL_SIZE, 'every pool worker loaded the local-file driver after the first delta');

    const rand = mulberry32(21);
    let ids = 8000;
    // maxDeltas 6: every eighth round passes the WAL's bound (checkpoints and restarts), and VACUUMs;
    // 40: small rounds only, so one chunk set gets enough deltas for level-1 ones (bigger ones compact).
    for (let round = 0; round < (long ? 40 : 24); round++) {
      const kind = long ? round % 5 : round % 8;
      const writes = kind === 7 ? 2_500 : 1 + Math.floor(rand() * 30);
      for (let i = 0; i < writes; i++) {
        const r = rand();
        const id = 1 + Math.floor(rand() * ids);
        if (r < 0.6) await db.update(notes).set({ body: `r${round} ${hexOf(rand)}` }).where(sql`id = ${id}`);
        else if (r < 0.85) await db.insert(notes).values({ body: `new ${round} ${hexOf(rand).repeat(3)}` }).then(() => ids++);
        else await db.delete(notes).where(sql`id = ${id}`);
      }
      if (kind === 3) await db.run(sql`DELETE FROM notes WHERE id % 5 = 0`); // frees pages in the middle
      if (kind === 5 && !long) await db.run(sql`VACUUM`); // rewrites and shrinks the file
      const info = (await db.$sync.flush())!;
      kinds.push(info.kind);
      const manifest = await readManifest(store);
      const latest = manifest.snapshots[0]!;
      // A compaction finished meanwhile may have been published since (with a delta on it): as current.
      assert.ok(latest.seq >= info.seq, `round ${round}: the latest is seq ${latest.seq}, the flush published ${info.seq}`);
      const chain = deltaChain(manifest.snapshots, latest)!;
      bases.add(chain.base.key);
      if (chain.deltas.length < manifest.snapshots.filter((s) => s.base === chain.base.key).length) leveled++;
      const restored = join(dir.path, `rounds-${maxDeltas}`, `restored-${round}.db`);
      await downloadSnapshot(store, latest, restored, { snapshots: manifest.snapshots });
      assert.deepEqual(await wholeFileAddresses(restored, CHUNK), await wholeFileAddresses(dbPath, CHUNK), `round ${round} (${writes} writes, ${info.kind}): the restored page image differs from the live one`);
      await rm(restored);
      if (info.kind === 'delta' && kind < 3) assert.ok(info.readBytes <= (6 * writes + 4) * 4096, `round ${round}: ${writes} writes read ${info.readBytes} bytes`);
    }
    liveRows = await db.select().from(notes).orderBy(notes.id);
  } finally {
    await db.$sync.close();
  }
  assert.ok(kinds.filter((k) => k === 'delta').length >= 12, `mostly deltas: ${kinds.join(' ')}`);
  if (maxDeltas === 40) assert.ok(leveled >= 10, `level-1 deltas shortened the latest chain after ${leveled} uploads only`);
  if (maxDeltas === 6) assert.ok(bases.size >= 3, `maxDeltas 6 makes chunk sets between the deltas (compactions): ${bases.size} chunk sets under ${kinds.join(' ')}`);

  // Every retained restore point restores too, not only the latest: each chain verifies and applies.
  const manifest = await readManifest(store);
  for (const entry of manifest.snapshots.slice(0, 8)) {
    const path = join(dir.path, `rounds-${maxDeltas}`, `point-${entry.seq}.db`);
    await downloadSnapshot(store, entry, path, { snapshots: manifest.snapshots });
    await rm(path);
  }
  const fresh = await drizzle({ connection: { url: `file:${join(dir.path, `rounds-${maxDeltas}`, 'fresh.db')}` }, schema, store, restore: 'required', log: false, shutdown: { signals: false } });
  try {
    assert.deepEqual(await fresh.select().from(notes).orderBy(notes.id), liveRows, 'a restore on an empty disk has every row as it was');
  } finally {
    await fresh.$sync.close();
  }
});

/** A chain c1 <- d2 <- d3 <- d4 with rows 'seq N' written before each: returns the manifest's entries, newest first. */
async function chainOfThree(store: SnapshotStore, name: string): Promise<SnapshotEntry[]> {
  const db = await open(join(dir.path, name, 'seed.db'), store, { snapshot: MANUAL });
  try {
    for (let i = 1; i <= 4; i++) {
      await db.insert(notes).values({ body: `upload ${i}` });
      await db.$sync.flush();
    }
  } finally {
    await db.$sync.close();
  }
  const manifest = await readManifest(store);
  assert.deepEqual(manifest.snapshots.map((s) => s.kind), ['delta', 'delta', 'delta', 'chunks']);
  assert.deepEqual(deltaChain(manifest.snapshots, manifest.snapshots[0]!)!.deltas.map((d) => d.seq), [2, 3, 4]);
  return manifest.snapshots;
}

for (const [damage, apply] of [
  ['missing', async (_store: SnapshotStore, path: string) => rm(path)],
  ['truncated', async (_store: SnapshotStore, path: string) => writeFile(path, (await readFile(path)).subarray(0, 20))],
  ['bit-flipped', async (_store: SnapshotStore, path: string) => {
    const body = await readFile(path);
    body[body.length - 5]! ^= 0x08;
    await writeFile(path, body);
  }],
] as const) {
  test(`a ${damage} delta in the chain: restore falls back to the newest restore point before it, reports every one it skipped, never opens a gap`, async () => {
    const root = join(dir.path, `damaged-${damage}`, 'store');
    const store = directoryStore({ dir: root });
    const [d4, d3] = await chainOfThree(store, `damaged-${damage}`);
    await apply(store, join(root, d3!.key));
    const before = await readFile(join(root, MANIFEST_KEY));
    const errors: string[] = [];
    const log = { info() {}, warn() {}, error: (_: object, msg: string) => void errors.push(msg) };
    const restored: Array<{ seq: number; skipped: Array<{ seq: number }> }> = [];
    const db = await drizzle({ connection: { url: `file:${join(dir.path, `damaged-${damage}`, 'app.db')}` }, schema, store, log, shutdown: { signals: false }, snapshot: MANUAL });
    db.$sync.on('restore', (r) => void restored.push(r));
    try {
      const status = db.$sync.status().restoredFrom!;
      assert.equal(status.seq, 2, 'restored d2: the newest restore point whose whole chain verifies');
      const code = damage === 'missing' ? 'NOT_FOUND' : 'SNAPSHOT_CORRUPT';
      assert.deepEqual(status.skipped.map((s) => [s.seq, s.code]), [[d4!.seq, code], [d3!.seq, code]]);
      assert.match(status.skipped[0]!.message, /page delta seq 3 /i, 'seq 4 was skipped for the delta of seq 3 in its chain');
      assert.deepEqual((await db.select().from(notes)).map((r) => r.body), ['upload 1', 'upload 2'], "d2's rows: nothing of d3 or d4, no gap");
      assert.ok(errors.some((m) => /SNAPSHOT seq 3 FAILED VERIFICATION/.test(m)), 'the damaged delta is logged');
      assert.ok(errors.some((m) => /RESTORED AN OLDER SNAPSHOT \(seq 2\)/.test(m)), 'the fallback is logged');
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(restored.map((r) => [r.seq, r.skipped.map((s) => s.seq)]), [[2, [4, 3]]], "the 'restore' event says so too");
    } finally {
      await db.$sync.close();
    }
    assert.ok((await readFile(join(root, MANIFEST_KEY))).equals(before), 'a restore that fell back wrote nothing to the store');
  });
}

test('a replica follows 100 small commits by fetching deltas only, then is promoted', async () => {
  const inner = directoryStore({ dir: join(dir.path, 'replica', 'store') });
  const fetched = { chunks: 0, deltas: 0, deltaBytes: 0 };
  const store: SnapshotStore = {
    ...inner,
    download: (key) => {
      if (key.startsWith(CHUNK_PREFIX)) fetched.chunks++;
      const isDelta = key.endsWith('.delta');
      if (isDelta) fetched.deltas++;
      const stream = inner.download(key);
      return (async function* () {
        for await (const part of stream) {
          if (isDelta) fetched.deltaBytes += part.length;
          yield part;
        }
      })();
    },
  };
  const writer = await open(join(dir.path, 'replica', 'w.db'), inner, { snapshot: { ...MANUAL, maxDeltas: 200 } });
  await writer.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO notes (body) SELECT hex(randomblob(100)) FROM n`);
  await writer.$sync.flush();
  const replica = await drizzle({ connection: { url: `file:${join(dir.path, 'replica', 'r.db')}` }, schema, store, log: false, shutdown: { signals: false }, replica: { pollMs: 20 }, snapshot: MANUAL }); // the writer holds the lease: a replica that may take over
  assert.equal(replica.$sync.status().role, 'replica');
  const initialChunks = fetched.chunks;
  assert.ok(initialChunks > 20, `the first restore fetched the chunk set (${initialChunks} chunks)`);
  let uploaded = 0;
  let last = 0;
  // Checked and subscribed in one tick: an update that already came is not waited for.
  const caughtUp = async (seq: number) => {
    if (replica.$sync.status().localSeq! < seq) await nextEvent(replica.$sync, 'replica-update', (u) => u.seq >= seq);
  };
  let promoted: Promise<unknown> | undefined;
  try {
    for (let i = 1; i <= 100; i++) {
      await writer.update(notes).set({ body: `commit ${i}` }).where(sql`id = ${1 + ((i * 193) % 20000)}`);
      const info = (await writer.$sync.flush())!;
      assert.equal(info.kind, 'delta', `commit ${i} is a delta`);
      uploaded += info.compressedBytes;
      last = info.seq;
      if (i % 10 === 0) await caughtUp(last); // ten catch-ups, each fetching the deltas it lacks
    }
    assert.equal(fetched.chunks, initialChunks, 'no chunk fetched after the first restore');
    // Ten catch-ups; each fetches its new point's chain past the replica's own point (a level-1 delta
    // may stand for the ones it repeats): at most one per commit, never a chunk.
    assert.ok(fetched.deltas >= 10 && fetched.deltas <= 100, `deltas fetched: ${fetched.deltas}`);
    assert.ok(fetched.deltaBytes <= 2 * uploaded, `the replica fetched ${fetched.deltaBytes} bytes of deltas for ${uploaded} uploaded`);
    assert.ok(fetched.deltaBytes <= 100 * 16 * 1024, `about a page per commit: ${fetched.deltaBytes} bytes`);
    assert.equal((await replica.select().from(notes).where(sql`id = ${1 + ((100 * 193) % 20000)}`))[0]?.body, 'commit 100');
    promoted = nextEvent(replica.$sync, 'promoted', () => true, 20_000);
  } finally {
    await writer.$sync.close();
  }
  // Promotion: the writer is gone and released its lease; the replica takes over and writes.
  try {
    await promoted;
    await replica.insert(notes).values({ body: 'written by the promoted replica' });
    const info = (await replica.$sync.flush())!;
    assert.ok(info.seq > last, 'the promoted replica publishes after the writer');
  } finally {
    await replica.$sync.close();
  }
  const fresh = await drizzle({ connection: { url: `file:${join(dir.path, 'replica', 'fresh.db')}` }, schema, store: inner, restore: 'required', log: false, shutdown: { signals: false } });
  try {
    assert.equal((await fresh.select().from(notes).where(sql`body = 'written by the promoted replica'`)).length, 1);
    assert.equal((await fresh.select().from(notes)).length, 20_001);
  } finally {
    await fresh.$sync.close();
  }
});

test('point-in-time at delta granularity: drizzle({ restore: { seq } }) and the CLI restore --seq land on a delta; list names each delta and what it extends', async () => {
  const storeDir = join(dir.path, 'pitr', 'store');
  const store = directoryStore({ dir: storeDir });
  const entries = await chainOfThree(store, 'pitr'); // newest first: d4, d3, d2, c1
  const d3 = entries[1]!;
  assert.equal(d3.kind, 'delta');

  const rolled = await drizzle({ connection: { url: `file:${join(dir.path, 'pitr', 'rolled.db')}` }, schema, store, log: false, shutdown: { signals: false }, restore: { seq: d3.seq }, snapshot: MANUAL });
  try {
    assert.deepEqual((await rolled.select().from(notes)).map((r) => r.body), ['upload 1', 'upload 2', 'upload 3'], 'the state at the middle delta');
    const published = (await rolled.$sync.flush())!;
    assert.equal(published.kind, 'chunks', 'a roll-back is published as a chunk set (it starts a new generation)');
  } finally {
    await rolled.$sync.close();
  }

  const target = join(dir.path, 'pitr', 'cli.db');
  await runCliOk(['restore', '--backup-dir', storeDir, '--seq', String(d3.seq), '--to', target, '--quiet']);
  const client = libsql.createClient({ url: `file:${target}` });
  try {
    assert.deepEqual((await client.execute('SELECT body FROM notes ORDER BY id')).rows.map((r) => r[0]), ['upload 1', 'upload 2', 'upload 3']);
  } finally {
    client.close();
  }
  const listed = (await runCliOk(['list', '--backup-dir', storeDir])).stdout;
  assert.match(listed, new RegExp(`^\\s*${d3.seq}\\s+delta on ${d3.seq - 1} \\(\\d+ pages\\)`, 'm'), listed);
});

test('another connection writes and truncates the WAL while the app is stopped: the next start uploads the whole file, and a restore has every row', async () => {
  const store = directoryStore({ dir: join(dir.path, 'stopped', 'store') });
  const dbPath = join(dir.path, 'stopped', 'app.db');
  const first = await open(dbPath, store, { snapshot: MANUAL });
  await first.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO notes (body) SELECT hex(randomblob(100)) FROM n`);
  await first.$sync.flush();
  await first.update(notes).set({ body: 'by the app' }).where(sql`id = 10`);
  assert.equal((await first.$sync.flush())!.kind, 'delta');
  await first.$sync.close();

  // As drizzle-kit migrate would, between two runs of the app: its own connection, its own checkpoint.
  const other = libsql.createClient({ url: `file:${dbPath}` });
  await other.execute("UPDATE notes SET body = 'by another process' WHERE id = 2000");
  await other.execute('ALTER TABLE notes ADD COLUMN extra TEXT');
  await other.execute('PRAGMA wal_checkpoint(TRUNCATE)');
  other.close();

  const lines: string[] = [];
  const log = { info: (o: object, m: string) => void lines.push(`${m} ${JSON.stringify(o)}`), warn: (o: object, m: string) => void lines.push(m), error: (o: object, m: string) => void lines.push(m) };
  const second = await open(dbPath, store, { snapshot: MANUAL, log: log as never });
  try {
    await second.update(notes).set({ body: 'after the restart' }).where(sql`id = 11`);
    const info = (await second.$sync.flush())!;
    assert.equal(info.kind, 'chunks', `the first upload after a start is a chunk set, never a delta on a base the file may not extend\n${lines.join('\n')}`);
    assert.equal(info.readBytes, info.bytes, 'it read the whole file');
  } finally {
    await second.$sync.close();
  }
  const restored = await drizzle({ connection: { url: `file:${join(dir.path, 'stopped', 'fresh.db')}` }, schema, store, restore: 'required', log: false, shutdown: { signals: false } });
  try {
    const rows = await restored.all<{ id: number; body: string; extra: string | null }>(sql`SELECT id, body, extra FROM notes WHERE id IN (10, 11, 2000) ORDER BY id`);
    assert.deepEqual(rows.map((r) => r.body), ['by the app', 'after the restart', 'by another process'], 'every change: the app\'s, the other process\'s, and after the restart');
    assert.equal((await restored.all(sql`SELECT 1 FROM pragma_table_info('notes') WHERE name = 'extra'`)).length, 1, "the other process's schema change");
  } finally {
    await restored.$sync.close();
  }
});

test('a start on the latest restore point (restored on an empty disk, or kept clean) records from there: its first upload is a delta, and a start that changes nothing uploads nothing', async () => {
  const store = directoryStore({ dir: join(dir.path, 'seeded', 'store') });
  const first = await open(join(dir.path, 'seeded', 'a.db'), store, { snapshot: MANUAL });
  await first.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO notes (body) SELECT hex(randomblob(100)) FROM n`);
  await first.$sync.flush();
  await first.update(notes).set({ body: 'on the old disk' }).where(sql`id = 5`);
  await first.$sync.close(); // its final upload: a delta

  for (const disk of ['b.db', 'b.db']) { // an empty disk (restored), then the same disk again (kept clean)
    const seq = (await readManifest(store)).seq;
    const db = await open(join(dir.path, 'seeded', disk), store, { snapshot: MANUAL });
    try {
      assert.equal((await db.$sync.flush())?.uploaded ?? false, false, 'nothing changed: nothing uploaded');
      assert.equal((await readManifest(store)).seq, seq);
      await db.update(notes).set({ body: `on ${disk}` }).where(sql`id = 6`);
      const info = (await db.$sync.flush())!;
      assert.equal(info.kind, 'delta', 'the first upload after the start is a delta on the restore point it started from');
      assert.ok(info.readBytes <= 2 * 4096, `it read ${info.readBytes} bytes`);
    } finally {
      await db.$sync.close();
    }
  }
  const fresh = await drizzle({ connection: { url: `file:${join(dir.path, 'seeded', 'fresh.db')}` }, schema, store, restore: 'required', log: false, shutdown: { signals: false } });
  try {
    assert.deepEqual((await fresh.select().from(notes).where(sql`id IN (5, 6)`).orderBy(notes.id)).map((r) => r.body), ['on the old disk', 'on b.db']);
    assert.equal((await fresh.select().from(notes)).length, 3000);
  } finally {
    await fresh.$sync.close();
  }
});
