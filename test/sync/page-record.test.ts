/**
 * Incremental snapshots that follow the page record (issue 14): after the first upload, a snapshot reads
 * only the chunks holding pages changed since the last one and keeps every other chunk's address. The
 * property that makes that safe: each published chunk index equals the one a whole-file read of the same
 * database gives, chunk for chunk. Checked over random rounds of updates, inserts, deletes, a growing
 * and shrinking file, WAL checkpoints and restarts, on real libSQL files and the real directory store;
 * then a restore on an empty disk has every row. Deltas off (maxDeltas 0): these are the chunk sets a
 * compaction writes; page deltas have their own tests (page-delta.test.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as libsql from '@libsql/client/sqlite3';
import { sql } from 'drizzle-orm';
import { directoryStore, drizzle, type SnapshotInfo } from 'drizzle-libsql-blob';
import { decodeChunkIndex } from '../../src/sync/chunks/chunk-index.ts';
import { mulberry32 } from '../../bench/dataset.ts';
import { notes, open, readManifest, schema, tempDir, type TempDir } from '../helpers/fixtures.ts';
import { wholeFileAddresses } from '../helpers/page-image.ts';

let dir: TempDir;
before(async () => (dir = await tempDir('page-record')));
after(() => dir.cleanup());

const CHUNK = 64 * 1024;

test('each snapshot that follows the record publishes the chunk index a whole-file read gives, reading a fraction of the file', async () => {
  const store = directoryStore({ dir: join(dir.path, 'store') });
  const dbPath = join(dir.path, 'app.db');
  let liveRows: Array<{ id: number; body: string }> = [];
  const lines: string[] = [];
  const log = { info: (o: object, m: string) => void lines.push(`${m} ${JSON.stringify(o)}`), warn: (o: object, m: string) => void lines.push(`WARN ${m} ${JSON.stringify(o)}`), error: (o: object, m: string) => void lines.push(`ERROR ${m} ${JSON.stringify(o)}`) };
  const db = await open(dbPath, store, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000, chunkSize: CHUNK, maxDeltas: 0 }, log: log as never });
  try {
    await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8000) INSERT INTO notes (body) SELECT hex(randomblob(150)) FROM n`);
    const first = (await db.$sync.flush())!;
    assert.equal(first.readBytes, first.bytes, 'the first upload reads the whole file (it starts the record)');
    const rand = mulberry32(11);
    let ids = 8000;
    const reads: number[] = [];
    for (let round = 0; round < 30; round++) {
      const kind = round % 10;
      const writes = kind === 9 ? 2_500 : 1 + Math.floor(rand() * 40); // every tenth round passes the WAL's bound: a checkpoint and a restart
      for (let i = 0; i < writes; i++) {
        const r = rand();
        const id = 1 + Math.floor(rand() * ids);
        if (r < 0.6) await db.update(notes).set({ body: `r${round} ${hexOf(rand)}` }).where(sql`id = ${id}`);
        else if (r < 0.85) await db.insert(notes).values({ body: `new ${round} ${hexOf(rand).repeat(3)}` }).then(() => ids++);
        else await db.delete(notes).where(sql`id = ${id}`);
      }
      if (kind === 4) await db.run(sql`DELETE FROM notes WHERE id % 3 = 0`); // frees pages in the middle
      if (kind === 7) await db.run(sql`VACUUM`); // rewrites and shrinks the file
      const info: SnapshotInfo | null = await db.$sync.flush();
      assert.ok(info, `round ${round}: a snapshot`);
      const manifest = await readManifest(store);
      const index = decodeChunkIndex((await store.readSmall(manifest.snapshots[0]!.key))!.body, 'index');
      const expected = await wholeFileAddresses(dbPath, CHUNK);
      assert.equal(index.bytes, info.bytes);
      assert.deepEqual(index.chunks, expected, `round ${round} (${writes} writes${kind === 4 ? ', deletes' : kind === 7 ? ', VACUUM' : ''}): the published chunks differ from a whole-file read`);
      reads.push(info.readBytes / info.bytes);
      // What a few writes touch: a leaf, maybe its parents and neighbours, the page 1 header. Not the file.
      if (kind < 4) assert.ok(info.readBytes <= (4 * writes + 2) * CHUNK && info.readBytes < info.bytes, `round ${round}: ${writes} writes read ${info.readBytes} of ${info.bytes} bytes\n${lines.filter((l) => !/^WAL checkpointed|^snapshot uploaded|^snapshot unchanged/.test(l)).slice(-8).join('\n')}`);
    }
    const small = reads.filter((_, round) => round % 10 < 4);
    assert.ok(small.reduce((a, b) => a + b, 0) / small.length < 0.6, `rounds of a few writes read ${small.map((r) => r.toFixed(2)).join(' ')} of the file`);
    liveRows = await db.select().from(notes).orderBy(notes.id);
  } finally {
    await db.$sync.close();
  }
  const fresh = await drizzle({ connection: { url: `file:${join(dir.path, 'fresh.db')}` }, schema, store, restore: 'required', log: false, shutdown: { signals: false } });
  try {
    assert.deepEqual(await fresh.select().from(notes).orderBy(notes.id), liveRows, 'a restore on an empty disk has every row as it was');
  } finally {
    await fresh.$sync.close();
  }
});

function hexOf(rand: () => number): string {
  return Math.floor(rand() * 0xffffffff).toString(16).padStart(8, '0');
}

test('writes keep coming while snapshots run: the last index still equals a whole-file read, and a restore has every row', async () => {
  const store = directoryStore({ dir: join(dir.path, 'busy-store') });
  const dbPath = join(dir.path, 'busy.db');
  const db = await open(dbPath, store, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000, maxCommits: 1_000_000, chunkSize: CHUNK, maxDeltas: 0 } });
  let liveRows: Array<{ id: number; body: string }> = [];
  try {
    await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8000) INSERT INTO notes (body) SELECT hex(randomblob(150)) FROM n`);
    await db.$sync.flush();
    const rand = mulberry32(5);
    let stop = false;
    let written = 0;
    // As requests would, a write every millisecond or so: snapshots and checkpoints run in between, and
    // each snapshot's pin sees writes land right before and after it. The rows are updated in order, so
    // a page changes for a few milliseconds and then no more: a change the record dropped while the
    // image did not hold it would never be read again, and the last index would differ.
    const writer = (async () => {
      while (!stop) {
        const id = 1 + ((written * 3) % 8000);
        await db.update(notes).set({ body: `busy ${written++} ${hexOf(rand)}` }).where(sql`id = ${id}`);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    let partial = 0;
    for (let i = 0; i < 20; i++) {
      const info = await db.$sync.flush();
      if (info && info.readBytes < info.bytes) partial++;
    }
    stop = true;
    await writer;
    const last = (await db.$sync.flush())!;
    const manifest = await readManifest(store);
    const index = decodeChunkIndex((await store.readSmall(manifest.snapshots[0]!.key))!.body, 'index');
    assert.deepEqual(index.chunks, await wholeFileAddresses(dbPath, CHUNK), 'the last index differs from a whole-file read');
    assert.ok(written > 200, `${written} writes during the snapshots`);
    assert.ok(partial >= 10, `${partial} of 20 snapshots read only the changed chunks`);
    assert.ok(last.seq > 1);
    liveRows = await db.select().from(notes).orderBy(notes.id);
  } finally {
    await db.$sync.close();
  }
  const fresh = await drizzle({ connection: { url: `file:${join(dir.path, 'busy-fresh.db')}` }, schema, store, restore: 'required', log: false, shutdown: { signals: false } });
  try {
    assert.deepEqual(await fresh.select().from(notes).orderBy(notes.id), liveRows);
  } finally {
    await fresh.$sync.close();
  }
});

test('another connection checkpoints and restarts the WAL behind the library: detected, the next snapshot reads the whole file, a restore has every row', async () => {
  const store = directoryStore({ dir: join(dir.path, 'foreign-store') });
  const dbPath = join(dir.path, 'foreign.db');
  const lines: string[] = [];
  const log = { info: (o: object, m: string) => void lines.push(`${m} ${JSON.stringify(o)}`), warn: () => {}, error: () => {} };
  const db = await open(dbPath, store, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000, chunkSize: CHUNK }, log: log as never });
  let liveRows: Array<{ id: number; body: string }> = [];
  try {
    await db.run(sql`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) INSERT INTO notes (body) SELECT hex(randomblob(150)) FROM n`);
    await db.$sync.flush(); // starts the record
    await db.update(notes).set({ body: 'followed' }).where(sql`id = 5`);
    const followed = (await db.$sync.flush())!;
    assert.ok(followed.readBytes < followed.bytes, 'a snapshot that follows the record');

    // Another process (a sqlite3 shell, a migration tool) writes, checkpoints and writes again: the
    // second write restarts the WAL over frames the record never read.
    const other = libsql.createClient({ url: `file:${dbPath}` });
    try {
      await other.execute({ sql: 'UPDATE notes SET body = ? WHERE id = ?', args: ['changed behind the library', 3000] });
      await other.execute('PRAGMA wal_checkpoint(PASSIVE)');
      await other.execute({ sql: 'UPDATE notes SET body = ? WHERE id = ?', args: ['and again', 3001] });
    } finally {
      other.close();
    }
    await db.update(notes).set({ body: 'after' }).where(sql`id = 6`);
    const next = (await db.$sync.flush())!;
    assert.equal(next.readBytes, next.bytes, 'the snapshot after the break reads the whole file');
    assert.ok(lines.some((l) => /reads the whole file: the record of changed pages broke/.test(l)), `the log says why:\n${lines.join('\n')}`);
    const manifest = await readManifest(store);
    const index = decodeChunkIndex((await store.readSmall(manifest.snapshots[0]!.key))!.body, 'index');
    assert.deepEqual(index.chunks, await wholeFileAddresses(dbPath, CHUNK));
    await db.update(notes).set({ body: 'mended' }).where(sql`id = 7`);
    const mended = (await db.$sync.flush())!;
    assert.ok(mended.readBytes < mended.bytes, 'the record is whole again after the whole-file upload');
    liveRows = await db.select().from(notes).orderBy(notes.id);
  } finally {
    await db.$sync.close();
  }
  const fresh = await drizzle({ connection: { url: `file:${join(dir.path, 'foreign-fresh.db')}` }, schema, store, restore: 'required', log: false, shutdown: { signals: false } });
  try {
    const rows = await fresh.select().from(notes).orderBy(notes.id);
    assert.deepEqual(rows, liveRows);
    assert.equal(rows.find((r) => r.id === 3000)?.body, 'changed behind the library');
  } finally {
    await fresh.$sync.close();
  }
});
