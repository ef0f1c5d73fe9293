/**
 * Checkpoints leave the app's thread (issue 13). SQLite's automatic checkpoint ran inside one of the
 * app's commits (a 140-295 ms write stall during a 1M-row snapshot). Now: `wal_autocheckpoint=0` on
 * every connection the writer's pool may hand a write, the snapshot's worker folds the WAL after its
 * read, and a checkpointer folds it in a worker whenever it passes its bound, store or no store.
 *
 * Real components: real libSQL files, the real directory store, the real worker thread. What SQLite
 * did is read from the WAL index (the -shm file's header: frames in the WAL, frames folded into the
 * file; https://www.sqlite.org/walformat.html), which reading does not change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { endianness } from 'node:os';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { createClient, type Client } from '@libsql/client';
import { directoryStore, SyncError, type SnapshotStore } from 'drizzle-libsql-blob';
import type { SyncLogger } from '../../src/log.ts';
import { CountingClient } from '../../src/client/counting-client.ts';
import { Checkpointer, WAL_CHECKPOINT_BYTES, WAL_FILE_LIMIT_BYTES, WRITER_BUSY_WAIT_MS, writerConnectionSetup } from '../../src/sync/checkpointer.ts';
import { ChangedPages } from '../../src/sync/wal/changed-pages.ts';
import { readWalIndex, scanFrames } from '../../src/sync/wal/wal-scan.ts';
import { notes, open, tempDir } from '../helpers/fixtures.ts';

const require = createRequire(import.meta.url);
const MiB = 1024 * 1024;
/** SQLite's default wal_autocheckpoint, in pages: a connection with the default folds the WAL past it. */
const SQLITE_AUTOCHECKPOINT_PAGES = 1000;

/**
 * The WAL index header: `walFrames` (mxFrame) frames in the WAL, `backfilled` (nBackfill) of them folded
 * into the file. (Reading opens and closes the -shm file, which drops this process's POSIX locks on it;
 * harmless here, where no other process uses these files: the library keeps its descriptor open.)
 */
async function walIndex(dbPath: string): Promise<{ walFrames: number; backfilled: number }> {
  for (;;) {
    const shm = await readFile(`${dbPath}-shm`);
    // Two copies of the header (bytes 0-47, 48-95): equal unless a writer was mid-update; read again then.
    if (!shm.subarray(0, 48).equals(shm.subarray(48, 96))) continue;
    const u32 = (offset: number) => (endianness() === 'LE' ? shm.readUInt32LE(offset) : shm.readUInt32BE(offset));
    return { walFrames: u32(16), backfilled: u32(96) };
  }
}

/** Bytes of frames in the WAL not yet folded into the file (what the checkpointer's bound is about). */
async function pendingBytes(dbPath: string): Promise<number> {
  const { walFrames, backfilled } = await walIndex(dbPath);
  return (walFrames - backfilled) * (4096 + 24);
}

async function walBytes(dbPath: string): Promise<number> {
  return stat(`${dbPath}-wal`).then((s) => s.size, () => 0);
}

/** A raw client on a new file, prepared as the library prepares the writer's connections (WAL file limit `walFileLimitBytes`), with a table t. */
async function writerClient(dbPath: string, walFileLimitBytes?: number): Promise<Client> {
  const inner = createClient({ url: pathToFileURL(dbPath).href });
  await inner.execute('PRAGMA journal_mode=WAL');
  await inner.executeMultiple(writerConnectionSetup('PRAGMA synchronous=NORMAL', walFileLimitBytes));
  await inner.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
  return inner;
}

/** A row that fills ~`bytes` of pages (random hex: no page is shared with another row). */
function body(bytes: number): string {
  return randomBytes(bytes / 2).toString('hex');
}

test('the writer: every pooled connection has wal_autocheckpoint 0 (also after reads opened more), synchronous NORMAL, journal_size_limit = the WAL file limit, busy_timeout = the write-lock wait', async (t) => {
  const dir = await tempDir('wal-pragmas');
  const db = await open(join(dir.path, 'app.db'), directoryStore({ dir: join(dir.path, 'store') }), { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } });
  t.after(() => db.$sync.close().catch(() => undefined));
  t.after(() => dir.cleanup()); // after close(): node:test runs after-hooks in the order they were added
  const client = db.$client;
  // Overlapping reads make the pool open connections of its own (the pool hands the last released one
  // to the next call: before issue 13 the next write landed on one of those, with SQLite's defaults).
  await Promise.all(Array.from({ length: 30 }, () => client.execute('SELECT count(*) FROM notes')));
  const tx = await client.transaction('write');
  await tx.execute({ sql: 'INSERT INTO notes (body) VALUES (?)', args: ['in a transaction'] });
  await Promise.all(Array.from({ length: 5 }, () => client.execute('SELECT count(*) FROM notes'))); // beside the open transaction
  await tx.commit();
  for (const [pragma, expected] of [['wal_autocheckpoint', 0], ['synchronous', 1], ['journal_size_limit', WAL_FILE_LIMIT_BYTES], ['busy_timeout', WRITER_BUSY_WAIT_MS]] as const) {
    // As many at once as the pool holds (and more): every connection answers.
    const answers = await Promise.all(Array.from({ length: 25 }, () => client.execute(`PRAGMA ${pragma}`)));
    assert.deepEqual(new Set(answers.map((r) => Number(r.rows[0]![0]))), new Set([expected]), `PRAGMA ${pragma} on every connection`);
  }
});

test("a write waits out SQLite's write lock held for a moment by another thread (as our scans take it to re-read a torn WAL index) instead of failing with SQLITE_BUSY", async (t) => {
  const dir = await tempDir('wal-busy');
  const dbPath = join(dir.path, 'app.db');
  const db = await open(dbPath, directoryStore({ dir: join(dir.path, 'store') }), { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } });
  t.after(() => db.$sync.close().catch(() => undefined));
  t.after(() => dir.cleanup());
  await db.insert(notes).values({ body: 'before' });
  // [0] 1 once the other thread holds the write lock; it keeps it HOLD_MS, then commits.
  const HOLD_MS = 40;
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const other = new Worker(
    `const { workerData } = require('node:worker_threads');
     const { createClient } = require(workerData.libsql);
     (async () => {
       const c = createClient({ url: workerData.url });
       const tx = await c.transaction('write'); // BEGIN IMMEDIATE: SQLite's write lock
       Atomics.store(workerData.flag, 0, 1);
       Atomics.wait(workerData.flag, 0, 1, ${HOLD_MS}); // holds the lock, this thread blocked as SQLite would be
       await tx.commit();
       c.close();
       require('node:worker_threads').parentPort.postMessage('done');
     })();`,
    { eval: true, workerData: { url: pathToFileURL(dbPath).href, flag, libsql: require.resolve('@libsql/client') } },
  );
  const done = new Promise((resolve, reject) => {
    other.once('message', resolve);
    other.once('error', reject);
  });
  while (Atomics.load(flag, 0) === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  const started = performance.now();
  await db.insert(notes).values({ body: 'while the lock was held' });
  const waited = performance.now() - started;
  await done;
  assert.ok(waited >= HOLD_MS / 2, `the write waited for the lock (${waited.toFixed(1)} ms)`);
  assert.ok(waited < WRITER_BUSY_WAIT_MS + HOLD_MS, `and no longer than needed (${waited.toFixed(1)} ms)`);
  assert.deepEqual((await db.select().from(notes)).map((n) => n.body), ['before', 'while the lock was held']);
});

// Full mode: its snapshot folds the WAL as soon as its copy is done. (Incremental mode leaves folding to
// the checkpointer, whose folds are pinned at what the page record has read: page-record.test.ts.)
test('the app never checkpoints (the WAL passes 1000 pages unfolded); a full snapshot folds every frame, in its worker', async (t) => {
  const dir = await tempDir('wal-snapshot');
  const dbPath = join(dir.path, 'app.db');
  const db = await open(dbPath, directoryStore({ dir: join(dir.path, 'store') }), { snapshot: { mode: 'full', debounceMs: 600_000, maxIntervalMs: 600_000 } });
  t.after(() => db.$sync.close().catch(() => undefined));
  t.after(() => dir.cleanup()); // after close(): node:test runs after-hooks in the order they were added
  await db.$sync.flush(); // folds the WAL: the first commit below restarts it (frames count from 0 again)
  // ~6 pages per commit, until just past SQLite's autocheckpoint mark (1000 pages), still below the
  // checkpointer's bound (4 MiB = 1018 frames): nobody may fold anything yet.
  let written = await walIndex(dbPath);
  while (written.walFrames <= SQLITE_AUTOCHECKPOINT_PAGES) {
    await db.insert(notes).values({ body: body(20_000) });
    written = await walIndex(dbPath);
  }
  assert.ok(written.walFrames * (4096 + 24) <= WAL_CHECKPOINT_BYTES, `wrote ${written.walFrames} frames, within the bound`);
  assert.equal(written.backfilled, 0, `no automatic checkpoint ran in any of the app's commits (${written.backfilled} of ${written.walFrames} frames folded)`);

  await db.$sync.flush();
  const after = await walIndex(dbPath);
  assert.equal(after.walFrames, written.walFrames, 'no write since');
  assert.equal(after.backfilled, after.walFrames, 'the snapshot folded every frame into the file');
  // The next commit restarts the WAL from its start (possible only after a complete checkpoint).
  await db.insert(notes).values({ body: 'after the snapshot' });
  assert.ok((await walIndex(dbPath)).walFrames < 10, 'the WAL restarted');
});

test('store down: the WAL is folded (in the worker) each time it holds more than the bound (4 MiB) and restarts, its file within its limit; nothing reaches the store', async (t) => {
  const dir = await tempDir('wal-store-down');
  const dbPath = join(dir.path, 'app.db');
  const inner = directoryStore({ dir: join(dir.path, 'store') });
  let down = false;
  const refuse = () => Promise.reject(new SyncError('STORE_UNREACHABLE', 'injected: store down', { transient: true }));
  const store: SnapshotStore = {
    ...inner,
    list: (prefix) => (down ? refuse() : inner.list(prefix)),
    readSmall: (key) => (down ? refuse() : inner.readSmall(key)),
    uploadBuffer: (key, b) => (down ? refuse() : inner.uploadBuffer(key, b)),
    uploadFile: (key, path, metadata) => (down ? refuse() : inner.uploadFile(key, path, metadata)),
  };
  const checkpointed: Array<{ pendingBytes: number; outcome: string }> = [];
  let onCheckpoint = () => {};
  const log: SyncLogger = {
    info(fields, message) {
      if (message?.startsWith('WAL checkpointed')) {
        checkpointed.push(fields as { pendingBytes: number; outcome: string });
        onCheckpoint();
      }
    },
    warn() {},
    error() {},
  };
  const db = await open(dbPath, store, { log, snapshot: { debounceMs: 10, retryBaseMs: 50, retryMaxMs: 200 }, retry: { retries: 0, minTimeoutMs: 1, maxTimeoutMs: 1 } });
  t.after(() => db.$sync.close().catch(() => undefined));
  t.after(() => dir.cleanup()); // after close(): node:test runs after-hooks in the order they were added
  await db.$sync.flush();
  down = true;
  const ROW = 256 * 1024; // ~65 pages per commit
  const commitBytes = 70 * (4096 + 24); // one commit's frames, with room for the b-tree pages it touches
  let maxWal = 0;
  for (let cycle = 1; cycle <= 2; cycle++) {
    const folded = new Promise<void>((resolve) => (onCheckpoint = resolve));
    // Write until the WAL holds more than the bound unfolded, then stop: the checkpointer looks after the last commit by itself.
    for (let commits = 0; (await pendingBytes(dbPath)) <= WAL_CHECKPOINT_BYTES; commits++) {
      // 2x the bound in rows: a WAL that never passes the bound means someone else folds it (the app's own commits?).
      assert.ok(commits < (2 * WAL_CHECKPOINT_BYTES) / ROW, `cycle ${cycle}: ${commits} commits of ${ROW / 1024} KiB and the WAL still holds ${((await pendingBytes(dbPath)) / MiB).toFixed(1)} MiB unfolded`);
      await db.insert(notes).values({ body: body(ROW) });
      maxWal = Math.max(maxWal, await walBytes(dbPath));
    }
    await Promise.race([folded, new Promise((_, reject) => setTimeout(() => reject(new Error(`cycle ${cycle}: no checkpoint within 20 s of the WAL passing its bound`)), 20_000).unref())]);
    assert.equal(checkpointed.at(-1)?.outcome, 'complete');
    await db.insert(notes).values({ body: body(ROW) });
    const { walFrames } = await walIndex(dbPath);
    assert.ok(walFrames * (4096 + 24) <= commitBytes, `cycle ${cycle}: the next commit restarted the WAL (${walFrames} frames in it)`);
  }
  assert.ok(maxWal <= WAL_CHECKPOINT_BYTES + commitBytes, `the WAL file stayed within the bound + one commit (max ${(maxWal / MiB).toFixed(1)} MiB)`);
  const status = db.$sync.status();
  assert.equal(status.snapshotsOk, 1, 'only the snapshot before the store went down');
  assert.ok(status.snapshotsFailed >= 1, 'snapshots were attempted and failed meanwhile');
  assert.equal(checkpointed.length, 2);
  down = false; // close() lands the commits
});

test('checkpointer over the counting client (small bound, a check after every commit): the WAL never exceeds the bound + one commit; without a bound it grows past it', async (t) => {
  const dir = await tempDir('wal-bound');
  t.after(() => dir.cleanup());
  const BOUND = 1 * MiB;
  const ROW = 64 * 1024; // ~17 pages per commit
  const COMMITS = 120; // ~8 MiB of WAL in all
  const silent: SyncLogger = { info() {}, warn() {}, error() {} };

  async function run(name: string, boundBytes: number): Promise<{ maxWal: number; checkpoints: number; maxCommitBytes: number }> {
    const dbPath = join(dir.path, `${name}.db`);
    const inner = await writerClient(dbPath, BOUND);
    const checkpointer = new Checkpointer({ dbPath, log: silent, boundBytes, minCheckIntervalMs: 0 });
    const client = new CountingClient(inner, { admitWrite() {}, beforeWrite() {}, committed: () => checkpointer.noteCommit() });
    let maxWal = 0;
    let maxCommitBytes = 0;
    try {
      for (let i = 0; i < COMMITS; i++) {
        const { walFrames: framesBefore } = await walIndex(dbPath);
        await client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: [body(ROW)] });
        const { walFrames: framesAfter } = await walIndex(dbPath);
        if (framesAfter > framesBefore) maxCommitBytes = Math.max(maxCommitBytes, (framesAfter - framesBefore) * (4096 + 24));
        maxWal = Math.max(maxWal, await walBytes(dbPath));
        await checkpointer.idle();
      }
      await checkpointer.stop();
      return { maxWal, checkpoints: checkpointer.checkpoints, maxCommitBytes };
    } finally {
      inner.close();
      checkpointer.closeFiles();
    }
  }

  const bounded = await run('bounded', BOUND);
  assert.ok(bounded.checkpoints >= 3, `checkpointed ${bounded.checkpoints} times`);
  assert.ok(bounded.maxWal <= BOUND + bounded.maxCommitBytes, `max WAL ${(bounded.maxWal / MiB).toFixed(2)} MiB, bound ${BOUND / MiB} MiB + one commit ${(bounded.maxCommitBytes / MiB).toFixed(2)} MiB`);
  // Mutation check built in: the same writes with no bound (the app never checkpoints) grow the WAL past it.
  const unbounded = await run('unbounded', Number.POSITIVE_INFINITY);
  assert.equal(unbounded.checkpoints, 0);
  assert.ok(unbounded.maxWal > 3 * BOUND, `without a bound the WAL grew to ${(unbounded.maxWal / MiB).toFixed(2)} MiB`);
});

test('a writer that never yields to the event loop (a bulk import, bench/) still gets its WAL folded: the check and the checkpoint result are read synchronously on commits', async (t) => {
  const dir = await tempDir('wal-tight');
  t.after(() => dir.cleanup());
  const dbPath = join(dir.path, 'tight.db');
  const inner = await writerClient(dbPath, 1 * MiB);
  const checkpointer = new Checkpointer({ dbPath, log: { info() {}, warn() {}, error() {} }, boundBytes: 1 * MiB, minCheckIntervalMs: 0 });
  t.after(async () => {
    await checkpointer.stop();
    inner.close();
    checkpointer.closeFiles();
  });
  const client = new CountingClient(inner, { admitWrite() {}, beforeWrite() {}, committed: () => checkpointer.noteCommit() });
  let loopTurned = false;
  setImmediate(() => (loopTurned = true)); // runs at the first turn of the event loop
  const deadline = Date.now() + 30_000;
  const row = body(64 * 1024);
  // Settled promises only: no timer, I/O callback or worker message is delivered until this loop ends.
  while (checkpointer.checkpoints < 3 && Date.now() < deadline) await client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: [row] });
  assert.equal(loopTurned, false, 'the loop never yielded to the event loop');
  assert.ok(checkpointer.checkpoints >= 3, `checkpoints started while the loop ran: ${checkpointer.checkpoints}`);
  const { walFrames, backfilled } = await walIndex(dbPath);
  assert.ok(backfilled > 0, `frames were folded while the loop ran (${backfilled} of ${walFrames})`);
});

test('a writer that never pauses: one short pass with its writes held lets the WAL restart (without it the file only grows)', async (t) => {
  const dir = await tempDir('wal-hold');
  t.after(() => dir.cleanup());
  const BOUND = 1 * MiB;

  /** Writes 2 KiB rows back to back until the WAL restarted twice, its file reached `capBytes`, or 20 s passed. */
  async function run(name: string, holdWrites: boolean, capBytes: number): Promise<{ restarts: number; heldWrites: number; maxWal: number }> {
    const dbPath = join(dir.path, `${name}.db`);
    const inner = await writerClient(dbPath, BOUND);
    let client: CountingClient | undefined;
    const checkpointer = new Checkpointer({ dbPath, log: { info() {}, warn() {}, error() {} }, boundBytes: BOUND, fileLimitBytes: BOUND, minCheckIntervalMs: 0, writeLock: () => (holdWrites ? client?.writeLock : undefined) });
    client = new CountingClient(inner, { admitWrite() {}, beforeWrite() {}, committed: () => checkpointer.noteCommit() });
    const frames = () => readFileSync(`${dbPath}-shm`).readUInt32LE(16); // synchronous: the loop must not pause
    const row = body(2 * 1024);
    let restarts = 0;
    let maxWal = 0;
    try {
      const deadline = Date.now() + 20_000;
      let last = 0;
      while (restarts < 2 && maxWal < capBytes && Date.now() < deadline) {
        await client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: [row] });
        const now = frames();
        if (now < last) restarts++;
        last = now;
        maxWal = Math.max(maxWal, statSync(`${dbPath}-wal`).size);
      }
      return { restarts, heldWrites: checkpointer.heldWrites, maxWal };
    } finally {
      await checkpointer.stop();
      inner.close();
      checkpointer.closeFiles();
    }
  }

  // The first checkpoints start a worker thread each (slow under tsx): the file overshoots meanwhile.
  const held = await run('held', true, Number.POSITIVE_INFINITY);
  assert.ok(held.heldWrites >= 1, `writes were held ${held.heldWrites} times`);
  assert.equal(held.restarts, 2, `the WAL restarted while the writer never paused (file at most ${(held.maxWal / MiB).toFixed(1)} MiB)`);
  // The same writer with no way to hold writes: checkpoints run, the WAL does not restart twice (a
  // PASSIVE pass that happens to catch up with the last commit lets it restart once now and then: 2 runs
  // in 6 of this file beside three others), and the file grows past what the held writer ever needed.
  const free = await run('free', false, Math.max(128 * BOUND, 2 * held.maxWal));
  assert.equal(free.heldWrites, 0);
  assert.ok(free.restarts < 2, `without held writes the WAL restarted ${free.restarts} times under a writer that never pauses`);
  assert.ok(free.maxWal > held.maxWal, `${(free.maxWal / MiB).toFixed(1)} MiB vs ${(held.maxWal / MiB).toFixed(1)} MiB`);
});

test('a writer that yields between writes (a request loop), default bound: the WAL restarts after every checkpoint as plain libSQL\'s does after its automatic ones, each cycle stays near the bound, and one worker serves every checkpoint', async (t) => {
  const dir = await tempDir('wal-routine');
  t.after(() => dir.cleanup());
  const dbPath = join(dir.path, 'routine.db');
  const inner = await writerClient(dbPath);
  let client: CountingClient | undefined;
  const checkpointer = new Checkpointer({ dbPath, log: { info() {}, warn() {}, error() {} }, writeLock: () => client?.writeLock });
  client = new CountingClient(inner, { admitWrite() {}, beforeWrite() {}, committed: () => checkpointer.noteCommit() });
  t.after(async () => {
    await checkpointer.stop();
    inner.close();
    checkpointer.closeFiles();
  });
  const row = body(16 * 1024);
  let restarts = 0;
  let last = 0;
  /** The most frames a WAL cycle held, after the first restart (the first cycle may wait for the worker's boot: ~0.5 s under tsx). */
  let maxCycleFrames = 0;
  const deadline = Date.now() + 30_000;
  while (restarts < 4 && Date.now() < deadline) {
    await client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: [row] });
    const { walFrames } = await walIndex(dbPath);
    if (walFrames < last) restarts++;
    last = walFrames;
    if (restarts >= 1) maxCycleFrames = Math.max(maxCycleFrames, walFrames);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const maxCycleBytes = maxCycleFrames * (4096 + 24);
  assert.equal(restarts, 4, `the WAL restarted after its checkpoints (${checkpointer.checkpoints} checkpoints, ${checkpointer.heldWrites} with writes held)`);
  // 4x: on a slower disk every second pass once ran past a fixed 15 ms hold, the WAL restarted about once
  // in 5 checkpoints and a cycle reached 212 MiB; the hold's cap now follows what the passes take (nextHoldCapMs).
  t.diagnostic(`largest WAL cycle ${(maxCycleBytes / MiB).toFixed(1)} MiB; ${checkpointer.checkpoints} checkpoints, ${checkpointer.heldWrites} with writes held, ${restarts} restarts`);
  assert.ok(maxCycleBytes <= 4 * WAL_CHECKPOINT_BYTES, `each WAL cycle after the first stayed within 4x the bound: at most ${(maxCycleBytes / MiB).toFixed(1)} MiB (${checkpointer.checkpoints} checkpoints, ${checkpointer.heldWrites} with writes held)`);
  assert.ok(checkpointer.checkpoints >= 4, `${checkpointer.checkpoints} checkpoints`);
  assert.equal(checkpointer.workerStarts, 1, `one worker thread for ${checkpointer.checkpoints} checkpoints`);
});

test("a held pass that folds every frame starts the WAL over in the checkpoint's worker, not in the app's next commit (whose thread then never syncs the new WAL header); the data is untouched", async (t) => {
  const dir = await tempDir('wal-restart');
  t.after(() => dir.cleanup());
  const dbPath = join(dir.path, 'restart.db');
  const inner = await writerClient(dbPath);
  await inner.execute('PRAGMA user_version = 7');
  let client: CountingClient | undefined;
  const checkpointer = new Checkpointer({ dbPath, log: { info() {}, warn() {}, error() {} }, boundBytes: 256 * 1024, minCheckIntervalMs: 0, writeLock: () => client?.writeLock });
  client = new CountingClient(inner, { admitWrite() {}, beforeWrite() {}, committed: () => checkpointer.noteCommit() });
  t.after(async () => {
    await checkpointer.stop();
    inner.close();
    checkpointer.closeFiles();
  });
  /** The WAL's generation (its salts, in the WAL index header; a restart draws new ones). */
  const generation = () => {
    const index = readWalIndex(dbPath);
    assert.ok(index && index !== 'unstable', 'the WAL index reads');
    return index.salt.toString('hex');
  };
  const row = body(16 * 1024);
  let commits = 0;
  let byCommit = 0; // times a commit of the app started a new generation
  let byWorker = 0; // times one began between commits, with only the checkpointer at work
  let last = generation();
  const deadline = Date.now() + 30_000;
  while (byWorker < 3 && Date.now() < deadline) {
    if (generation() !== last) byWorker++;
    const before = generation();
    await client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: [row] });
    commits++;
    last = generation();
    if (last !== before) byCommit++;
    await checkpointer.idle(); // the checkpoint this commit may have started settles before the next commit
    await new Promise((resolve) => setImmediate(resolve));
  }
  t.diagnostic(`${commits} commits, ${checkpointer.checkpoints} checkpoints (${checkpointer.heldWrites} held), WAL started over by the worker ${checkpointer.walRestarts} times, by a commit ${byCommit} times`);
  assert.ok(byWorker >= 3, `the WAL started over between commits ${byWorker} times (the worker says ${checkpointer.walRestarts})`);
  assert.equal(byWorker, checkpointer.walRestarts);
  assert.ok(byCommit < byWorker, `commits started the WAL over ${byCommit} times (a hold whose cap ran out before the restart leaves it to the commit), the worker ${byWorker} times`);
  assert.equal(Number((await inner.execute('PRAGMA user_version')).rows[0]![0]), 7, 'user_version as it was (the restart sets it to itself)');
  assert.equal(Number((await inner.execute('SELECT count(*) FROM t')).rows[0]![0]), commits);
  assert.equal(String((await inner.execute('PRAGMA integrity_check')).rows[0]![0]), 'ok');
});

test('close() right after the first commit started the checkpoint worker resolves: the worker is never referenced, so its termination holds the event loop open itself', async (t) => {
  const dir = await tempDir('wal-stop');
  t.after(() => dir.cleanup());
  // Timing-dependent (the worker's boot against the loop emptying): without the fix about 1 run in 3 of 6 rounds failed.
  for (let i = 0; i < 16; i++) {
    const checkpointer = new Checkpointer({ dbPath: join(dir.path, `stop-${i}.db`), log: { info() {}, warn() {}, error() {} } });
    checkpointer.noteCommit(); // the first commit starts the worker (no checkpoint yet: there is no WAL)
    assert.equal(checkpointer.workerStarts, 1);
    if (i % 2 === 1) await new Promise((resolve) => setTimeout(resolve, 10 * i)); // also once it may be online
    await checkpointer.stop(); // nothing else keeps the loop alive here
    checkpointer.closeFiles();
    // The same through drizzle(): its first commit (CREATE TABLE) starts the worker, close() stops it.
    const db = await open(join(dir.path, `db-${i}.db`), directoryStore({ dir: join(dir.path, `store-${i}`) }));
    await db.$sync.close();
  }
});

test('with a page record, a reader of the WAL (a delta) gets its turn once the checkpoint\'s scan is in the record, while the fold and its fsync still run; the fold\'s outcome follows into the record', async (t) => {
  const dir = await tempDir('wal-turn');
  t.after(() => dir.cleanup());
  const dbPath = join(dir.path, 'turn.db');
  const inner = await writerClient(dbPath, 1024 * MiB);
  const checkpointer = new Checkpointer({ dbPath, log: { info() {}, warn() {}, error() {} }, boundBytes: 1 * MiB, minCheckIntervalMs: 0 });
  t.after(async () => {
    await checkpointer.stop();
    inner.close();
    checkpointer.closeFiles();
  });
  await inner.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: [body(64 * 1024)] });
  const start = readWalIndex(dbPath);
  assert.ok(start && start !== 'unstable');
  checkpointer.record = new ChangedPages({ salt: start.salt.toString('hex'), frame: 0, base: 0, folded: false });
  // ~160 MiB of WAL over the same few pages: the scan reads 40k frame headers (milliseconds), the fold
  // has to fsync the whole WAL first (hundreds of milliseconds).
  for (let i = 0; i < 2_400; i++) await inner.execute({ sql: 'UPDATE t SET v = ? WHERE id = 1', args: [body(64 * 1024)] });
  const { walFrames } = await walIndex(dbPath);
  checkpointer.noteCommit(); // past the bound: a checkpoint starts (passive: no write lock here)
  assert.equal(checkpointer.checkpoints, 1);
  const asked = performance.now();
  await checkpointer.pause();
  const turnMs = performance.now() - asked;
  const atTurn = await walIndex(dbPath);
  assert.equal(checkpointer.record.position, walFrames, 'the checkpoint\'s scan is in the record when the turn begins');
  assert.ok(atTurn.backfilled < walFrames, `the fold was still running when the turn began (${atTurn.backfilled} of ${walFrames} frames folded, turn after ${turnMs.toFixed(0)} ms)`);
  assert.equal(checkpointer.record.cursor.folded, false, 'not folded until the fold says so');
  await checkpointer.folded();
  const folded = await walIndex(dbPath);
  assert.equal(folded.backfilled, walFrames, 'folded() waits for the fold');
  assert.equal(checkpointer.record.cursor.folded, true, 'the fold\'s outcome is in the record: the next generation is expected');
  checkpointer.resume();
  await checkpointer.idle();
  // The WAL restarts at the next commit, and the record follows it (the next generation, not a foreign restart).
  await inner.execute({ sql: 'UPDATE t SET v = ? WHERE id = 1', args: [body(64 * 1024)] });
  const restarted = readWalIndex(dbPath);
  assert.ok(restarted && restarted !== 'unstable' && !restarted.salt.equals(start.salt), 'the WAL restarted');
  assert.equal(checkpointer.record.apply(scanFrames(dbPath, checkpointer.record.cursor)).kind, 'apply');
  assert.equal(checkpointer.record.lost, undefined);
});
