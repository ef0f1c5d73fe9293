/**
 * Page tracking from the WAL on real libSQL files (src/sync/wal): a writer that never checkpoints
 * (wal_autocheckpoint=0, as the library's app connection), random updates, inserts and deletes, and
 * our pinned scans with checkpoints bounded by the pin, through several WAL restarts. Whatever differs
 * between the file at the start and at the end must be among the pages the record names; a checkpoint
 * by another connection, or a WAL reset behind our back, must be reported as a lost record.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { createClient, type Client } from '@libsql/client';
import * as libsql from '@libsql/client/sqlite3';
import { ChangedPages } from '../../src/sync/wal/changed-pages.ts';
import { writerConnectionSetup } from '../../src/sync/checkpointer.ts';
import { databaseFileStamp, pinnedScan, readWalIndex } from '../../src/sync/wal/wal-scan.ts';
import { mulberry32 } from '../../bench/dataset.ts';
import { tempDir, type TempDir } from '../helpers/fixtures.ts';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

let dir: TempDir;
before(async () => (dir = await tempDir('wal-scan')));
after(() => dir.cleanup());

const PAGE = 4096;

/** A database of `rows` rows of ~300 bytes, its WAL folded and emptied; the app connection never checkpoints. */
async function setup(name: string, rows = 3000): Promise<{ path: string; app: Client; base: string }> {
  const path = join(dir.path, `${name}.db`);
  const app = createClient({ url: pathToFileURL(path).href });
  await app.executeMultiple('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
  await app.execute({ sql: 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) INSERT INTO t SELECT i, randomblob(300) FROM n', args: [rows] });
  await app.execute('PRAGMA wal_checkpoint(TRUNCATE)');
  const base = `${path}.base`;
  await copyFile(path, base);
  return { path, app, base };
}

/** A record starting now (the WAL empty and folded), as after a whole-file upload. */
async function startRecord(path: string): Promise<ChangedPages> {
  const index = await readWalIndex(path);
  assert.ok(index && index !== 'unstable', 'the WAL index exists');
  assert.equal(index.mxFrame, 0);
  return new ChangedPages({ salt: index.salt.toString('hex'), frame: 0, base: 0, folded: true, fileStamp: await databaseFileStamp(path) });
}

async function randomWrites(app: Client, rand: () => number, count: number, rows: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const r = rand();
    const id = 1 + Math.floor(rand() * rows * 1.2);
    if (r < 0.7) await app.execute({ sql: 'UPDATE t SET v = randomblob(300) WHERE id = ?', args: [id] });
    else if (r < 0.9) await app.execute({ sql: 'INSERT OR REPLACE INTO t (id, v) VALUES (?, randomblob(280))', args: [id] });
    else await app.execute({ sql: 'DELETE FROM t WHERE id = ?', args: [id] });
  }
}

/** Pages that differ between two database images (or exist in only one). */
function differingPages(a: Buffer, b: Buffer): number[] {
  const pages: number[] = [];
  for (let p = 0; p * PAGE < Math.max(a.length, b.length); p++) {
    if (!a.subarray(p * PAGE, (p + 1) * PAGE).equals(b.subarray(p * PAGE, (p + 1) * PAGE))) pages.push(p + 1);
  }
  return pages;
}

test('the record names every page that changed, through WAL restarts, when every checkpoint is bounded by a pin', async () => {
  const rows = 3000;
  const { path, app, base } = await setup('restarts', rows);
  try {
    const record = await startRecord(path);
    const rand = mulberry32(7);
    const salts = new Set<string>([record.cursor.salt]);
    let folds = 0;
    for (let round = 0; round < 40; round++) {
      await randomWrites(app, rand, 5 + Math.floor(rand() * 60), rows);
      const { scan } = await pinnedScan(libsql, path, record.cursor, { checkpoint: round % 3 !== 2 });
      const verdict = record.apply(scan);
      assert.deepEqual(verdict, { kind: 'apply' }, `round ${round}: ${JSON.stringify(verdict)}`);
      salts.add(scan.salt);
      if (scan.folded) folds++;
    }
    assert.ok(folds >= 5, `the WAL was folded completely ${folds} times`);
    assert.ok(salts.size >= 5, `the WAL restarted: ${salts.size} generations seen`);
    const tracked = new Set(record.pagesUpTo(record.position));

    await app.execute('PRAGMA wal_checkpoint(TRUNCATE)'); // the app is idle: the file is now the database
    const changed = differingPages(await readFile(base), await readFile(path));
    assert.ok(changed.length > 50, `${changed.length} pages changed`);
    const missed = changed.filter((p) => !tracked.has(p));
    assert.deepEqual(missed, [], `pages changed but not in the record (${tracked.size} tracked)`);
    assert.equal(record.lost, undefined);
  } finally {
    app.close();
  }
});

test('a writer in another thread never pauses: scans with checkpoints bounded by the pin still miss no page', async () => {
  const rows = 3000;
  const { path, app, base } = await setup('concurrent', rows);
  const record = await startRecord(path);
  app.close(); // the writer thread is the app here; its first frame starts a fresh WAL (new random salts, checkpoint sequence 0)
  // [stop, hold, held]: every third round the writer is held while we fold (as the checkpointer's
  // 'hold-writes' pass does), so the WAL restarts; the other rounds run beside it.
  // [3]: updates made, so the rounds start once the writer is writing (a held fold of a WAL with no
  // frame yet cannot say it folded anything: the index is not initialised).
  const stop = new Int32Array(new SharedArrayBuffer(16));
  const writer = new Worker(
    `const { workerData } = require('node:worker_threads');
     const { createClient } = require(workerData.libsql);
     (async () => {
       const app = createClient({ url: workerData.url });
       await app.executeMultiple(workerData.setup); // as the library sets up the app's connections
       let n = 0;
       while (Atomics.load(workerData.stop, 0) === 0) {
         if (Atomics.load(workerData.stop, 1) === 1) {
           Atomics.store(workerData.stop, 2, 1);
           while (Atomics.load(workerData.stop, 1) === 1 && Atomics.load(workerData.stop, 0) === 0) await new Promise((resolve) => setTimeout(resolve, 1));
           Atomics.store(workerData.stop, 2, 0);
         }
         await app.execute({ sql: 'UPDATE t SET v = randomblob(300) WHERE id = ?', args: [1 + (n++ * 7919) % ${rows}] });
         Atomics.store(workerData.stop, 3, n);
       }
       app.close();
       require('node:worker_threads').parentPort.postMessage(n);
     })();`,
    { eval: true, workerData: { url: pathToFileURL(path).href, stop, libsql: require.resolve('@libsql/client'), setup: writerConnectionSetup('PRAGMA synchronous=NORMAL') } },
  );
  const written = new Promise<number>((resolve, reject) => {
    writer.once('message', resolve);
    writer.once('error', reject);
  });
  try {
    const salts = new Set<string>();
    while (Atomics.load(stop, 3) === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    const started = performance.now();
    const hist: string[] = [];
    for (let round = 0; performance.now() - started < 2_000; round++) {
      const hold = round % 3 === 2;
      if (hold) {
        Atomics.store(stop, 1, 1);
        while (Atomics.load(stop, 2) !== 1) await new Promise((resolve) => setTimeout(resolve, 1));
      }
      const before = JSON.stringify(record.cursor);
      const { scan, checkpoint } = await pinnedScan(libsql, path, record.cursor, { checkpoint: true });
      const verdict = record.apply(scan);
      hist.push(`${hold ? 'HOLD ' : ''}from ${before}: ${JSON.stringify({ ...scan, pages: scan.pages.length })} ${JSON.stringify(checkpoint)}`);
      assert.deepEqual(verdict, { kind: 'apply' }, hist.slice(-4).join('\n'));
      salts.add(scan.salt);
      if (hold) {
        assert.equal(scan.folded, true, 'with the writer held, the checkpoint folds every frame\n' + hist.slice(-3).join('\n'));
        Atomics.store(stop, 1, 0);
      }
    }
    Atomics.store(stop, 0, 1);
    const updates = await written;
    record.apply((await pinnedScan(libsql, path, record.cursor, { checkpoint: false })).scan);
    assert.ok(updates > 200, `${updates} updates`);
    assert.ok(salts.size >= 5, `the WAL restarted under the writer: ${salts.size} generations`);
    const tracked = new Set(record.pagesUpTo(record.position));
    const last = createClient({ url: pathToFileURL(path).href });
    await last.execute('PRAGMA wal_checkpoint(TRUNCATE)');
    last.close();
    const missed = differingPages(await readFile(base), await readFile(path)).filter((p) => !tracked.has(p));
    assert.deepEqual(missed, [], 'pages changed but not in the record');
  } finally {
    Atomics.store(stop, 0, 1);
    await writer.terminate();
  }
});

test('uploaded(upTo) forgets what an upload holds and keeps what came after', async () => {
  const { path, app } = await setup('uploaded', 2000);
  try {
    const record = await startRecord(path);
    await app.execute({ sql: 'UPDATE t SET v = randomblob(300) WHERE id = ?', args: [10] });
    record.apply((await pinnedScan(libsql, path, record.cursor, { checkpoint: false })).scan);
    const upTo = record.position;
    const first = record.pagesUpTo(upTo);
    assert.ok(first.length >= 1);
    await app.execute({ sql: 'UPDATE t SET v = randomblob(300) WHERE id = ?', args: [1900] });
    record.apply((await pinnedScan(libsql, path, record.cursor, { checkpoint: true })).scan);
    record.uploaded(upTo, false);
    const left = record.pagesUpTo(record.position);
    assert.ok(left.length >= 1, 'the later update is still pending');
    assert.ok(record.size < first.length + left.length || !left.every((p) => first.includes(p)), 'pages of the first update were dropped');
  } finally {
    app.close();
  }
});

test('a checkpoint by another connection, or a WAL reset behind our back, is reported as a lost record', async (t) => {
  await t.test('another connection folds frames we have not read, then the WAL restarts', async () => {
    const { path, app } = await setup('foreign-checkpoint', 2000);
    try {
      const record = await startRecord(path);
      await randomWrites(app, mulberry32(3), 30, 2000);
      record.apply((await pinnedScan(libsql, path, record.cursor, { checkpoint: false })).scan);
      await randomWrites(app, mulberry32(4), 30, 2000); // not read by us
      const other = createClient({ url: pathToFileURL(path).href });
      await other.execute('PRAGMA wal_checkpoint(PASSIVE)');
      other.close();
      await randomWrites(app, mulberry32(5), 5, 2000); // restarts the WAL over the unread frames
      const before = record.position;
      const verdict = record.apply((await pinnedScan(libsql, path, record.cursor, { checkpoint: false })).scan);
      assert.equal(verdict.kind, 'lost');
      assert.match(record.lost ?? '', /restarted before every frame of its previous generation was read/);
      assert.ok(record.size > 0, 'the frames after the break are recorded');
      // A whole-file upload holding everything up to the break mends it; one from before does not.
      record.uploaded(before, true);
      assert.ok(record.lost);
      record.uploaded(before + 1, true);
      assert.equal(record.lost, undefined);
    } finally {
      app.close();
    }
  });
  await t.test('TRUNCATE by another connection, then new writes', async () => {
    const { path, app } = await setup('foreign-truncate', 2000);
    try {
      const record = await startRecord(path);
      await randomWrites(app, mulberry32(8), 30, 2000);
      record.apply((await pinnedScan(libsql, path, record.cursor, { checkpoint: false })).scan);
      const other = createClient({ url: pathToFileURL(path).href });
      await other.execute('PRAGMA wal_checkpoint(TRUNCATE)');
      other.close();
      await randomWrites(app, mulberry32(9), 5, 2000);
      const verdict = record.apply((await pinnedScan(libsql, path, record.cursor, { checkpoint: false })).scan);
      assert.equal(verdict.kind, 'lost', JSON.stringify(verdict));
    } finally {
      app.close();
    }
  });
});
