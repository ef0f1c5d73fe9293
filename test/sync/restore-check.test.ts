/**
 * Open first, check after (option `verify`): a restored database serves reads as soon as its chunks'
 * hashes verified; its quick_check and fsync run beside it, writes wait for them (and are refused with
 * SNAPSHOT_CORRUPT if the check fails), and nothing is uploaded before the check passed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createClient } from '@libsql/client';
import { count, sql, type SQL } from 'drizzle-orm';
import { directoryStore, drizzle, hasSyncError, type SnapshotStore, type SyncError } from 'drizzle-libsql-blob';
import { assessSync } from '../../app/sync-health.ts';
import { CREATE_NOTES, isCode, nextEvent, notes, schema, tempDir } from '../helpers/fixtures.ts';
import { readSidecar } from '../../src/local/sidecar.ts';

const FAST = { debounceMs: 50, maxIntervalMs: 60_000, chunkSize: 65_536 } as const;

function openDb(dbPath: string, store: SnapshotStore, extra: Record<string, unknown> = {}) {
  return drizzle({ connection: { url: `file:${dbPath}` }, schema, store, log: false, shutdown: { signals: false, timeoutMs: 20_000 }, snapshot: FAST, ...extra });
}

async function wipe(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
}

/** A store whose latest snapshot holds `notes` as `fill` left it, and the emptied local folder to restore into. */
async function seededStore(root: string, fill: SQL): Promise<{ store: SnapshotStore; live: string; dbPath: string }> {
  const store = directoryStore({ dir: join(root, 'store') });
  const live = join(root, 'live');
  const dbPath = join(live, 'app.db');
  const seed = await openDb(dbPath, store);
  await seed.run(CREATE_NOTES);
  await seed.run(fill);
  await seed.$sync.close();
  await wipe(live);
  return { store, live, dbPath };
}

/** Store listing with contents, to prove a test wrote nothing. */
async function storeState(root: string): Promise<string[]> {
  const names = (await readdir(root, { recursive: true })).sort();
  return Promise.all(names.map(async (name) => `${name}:${(await readFile(join(root, name)).catch(() => Buffer.alloc(0))).toString('base64').slice(0, 64)}`));
}

/**
 * A database whose `notes` table reads fine but whose `junk` table's root b-tree page has an invalid page
 * type: PRAGMA quick_check fails, every chunk hash is of these very bytes.
 */
async function writeCorruptDatabase(path: string): Promise<void> {
  const client = createClient({ url: `file:${path}` });
  await client.execute(CREATE_NOTES);
  await client.execute('CREATE TABLE junk (id INTEGER PRIMARY KEY, b BLOB)');
  await client.execute("INSERT INTO notes (body) SELECT 'note ' || value FROM generate_series(1, 200)");
  await client.execute('INSERT INTO junk (b) SELECT randomblob(300) FROM generate_series(1, 2000)');
  const root = Number((await client.execute("SELECT rootpage FROM sqlite_master WHERE name = 'junk'")).rows[0]![0]);
  const pageSize = Number((await client.execute('PRAGMA page_size')).rows[0]![0]);
  await client.execute('PRAGMA wal_checkpoint(TRUNCATE)');
  client.close();
  const fd = openSync(path, 'r+');
  try {
    const type = Buffer.alloc(1);
    readSync(fd, type, 0, 1, (root - 1) * pageSize);
    assert.equal(type[0], 0x05, 'the root of a 2000-row table is an interior table page');
    writeSync(fd, Buffer.from([0x07]), 0, 1, (root - 1) * pageSize); // no such page type
  } finally {
    closeSync(fd);
  }
}

/** Uploads the file at `dbPath` as the store's latest snapshot (restore: 'skip' keeps and uploads it), then wipes the local folder. */
async function uploadAsLatest(dbPath: string, store: SnapshotStore, mode: 'incremental' | 'full'): Promise<void> {
  const db = await openDb(dbPath, store, { restore: 'skip', snapshot: { ...FAST, mode } });
  const info = await db.$sync.flush();
  assert.ok(info?.uploaded, 'the file is the store latest');
  await db.$sync.close();
}

// Incremental (the default) only: a full snapshot is VACUUM INTO's rebuilt copy, which cannot carry a
// damaged b-tree (VACUUM reads every row and fails on it).
{
  const mode = 'incremental';
  test(`verify 'background' (${mode}): a snapshot whose hashes verify but which fails quick_check opens for reads, refuses writes with SNAPSHOT_CORRUPT, uploads nothing; 'before-open' does not open`, async () => {
    const dir = await tempDir('restore-check-corrupt');
    try {
      const root = join(dir.path, 'store');
      const store = directoryStore({ dir: root });
      const live = join(dir.path, 'live');
      const dbPath = join(live, 'app.db');
      await mkdir(live);
      await writeCorruptDatabase(dbPath);
      await uploadAsLatest(dbPath, store, mode);
      const before = await storeState(root);

      // Restart on a wiped disk.
      await wipe(live);
      const db = await openDb(dbPath, store);
      const checked = nextEvent(db.$sync, 'restore-check');
      assert.equal(db.$sync.status().restoredFrom?.check.state, 'running', 'opened before the check finished');
      assert.equal(db.$sync.status().restoredFrom?.check.verify, 'background');
      // Issued while the check runs: it waits, then is refused (never reaches SQLite).
      const early = db.insert(notes).values({ body: 'early' }).run();
      const rows = await db.select({ n: count() }).from(notes);
      assert.equal(rows[0]!.n, 200, 'reads are served at once');

      const event = await checked;
      assert.equal(event.ok, false);
      assert.equal(event.error?.code, 'SNAPSHOT_CORRUPT');
      assert.match(event.error!.message, /quick_check/);
      assert.match(event.error!.message, /restore --seq|verify: 'before-open'/, 'names the way out');
      await assert.rejects(early, (e: unknown) => hasSyncError(e, 'SNAPSHOT_CORRUPT'));
      await assert.rejects(db.insert(notes).values({ body: 'late' }).run(), (e: unknown) => hasSyncError(e, 'SNAPSHOT_CORRUPT'));
      await assert.rejects(db.transaction(async (tx) => tx.insert(notes).values({ body: 'in tx' }).run()), (e: unknown) => hasSyncError(e, 'SNAPSHOT_CORRUPT'));
      assert.equal(await db.$sync.flush(), null, 'nothing pending, nothing uploaded');
      assert.equal((await db.select({ n: count() }).from(notes))[0]!.n, 200, 'nothing was written; reads still served');

      const status = db.$sync.status();
      assert.equal(status.restoredFrom?.check.state, 'failed');
      assert.equal(status.role, 'stopped');
      assert.equal(status.state, 'stopped');
      assert.equal(status.lastError?.code, 'SNAPSHOT_CORRUPT');
      const health = assessSync(status, undefined, Date.now(), 60_000);
      assert.equal(health.status, 'unhealthy');
      assert.match(health.reasons.join(' '), /failed its check/);
      // A late listener is told too.
      const replayed = await nextEvent(db.$sync, 'restore-check');
      assert.equal(replayed.ok, false);

      await db.$sync.close();
      assert.deepEqual(await storeState(root), before, 'nothing was uploaded, before or at close');
      assert.equal(readSidecar(dbPath)?.restoring, true, 'the file stays marked as an unfinished restore: a restart downloads again');

      // 'before-open': the check runs before drizzle() resolves; no older snapshot passes, so it refuses.
      await wipe(live);
      await assert.rejects(openDb(dbPath, store, { verify: 'before-open' }), isCode('SNAPSHOT_CORRUPT'));
      assert.deepEqual(await storeState(root), before, 'nothing uploaded');
      assert.ok(!(await readdir(live)).includes('app.db'), 'no database file was installed');
    } finally {
      await dir.cleanup();
    }
  });
}

test("verify 'background': writes issued while the check runs wait, then all succeed; a restart finds every row", async () => {
  const dir = await tempDir('restore-check-writes');
  try {
    const { store, live, dbPath } = await seededStore(dir.path, sql`INSERT INTO notes (body) SELECT hex(randomblob(300)) FROM generate_series(1, 20000)`);
    const db = await openDb(dbPath, store);
    let checkedAt = 0;
    const checked = nextEvent(db.$sync, 'restore-check').then((e) => ((checkedAt = performance.now()), e));
    assert.equal(db.$sync.status().restoredFrom?.check.state, 'running');
    const settledAt: number[] = [];
    const writes = [
      ...Array.from({ length: 20 }, (_, i) => db.insert(notes).values({ body: `during ${i}` }).run().then(() => settledAt.push(performance.now()))),
      db.transaction(async (tx) => {
        await tx.insert(notes).values({ body: 'during tx' });
      }).then(() => settledAt.push(performance.now())),
    ];
    const flushed = db.$sync.flush(); // nothing pending yet; must not upload before the check either
    const event = await checked;
    assert.equal(event.ok, true, `check passed: ${event.error?.message}`);
    await Promise.all(writes);
    assert.equal(settledAt.length, 21);
    assert.ok(settledAt.every((t) => t >= checkedAt), 'no write committed before the check passed');
    await flushed;
    const info = await db.$sync.flush();
    assert.ok(info && info.commits >= 21, 'the writes are durable in the store');
    assert.equal(db.$sync.status().restoredFrom?.check.state, 'passed');
    assert.equal(readSidecar(dbPath)?.restoring, undefined, 'recorded as started once the check passed');
    await db.$sync.close();

    await wipe(live);
    const again = await openDb(dbPath, store, { verify: 'hash-only' });
    assert.equal((await again.select({ n: count() }).from(notes))[0]!.n, 20_021, 'every row, none lost');
    const hashOnly = await nextEvent(again.$sync, 'restore-check');
    assert.equal(hashOnly.ok, true);
    assert.equal(hashOnly.verify, 'hash-only');
    await again.$sync.close();
  } finally {
    await dir.cleanup();
  }
});

test('verify: a wrong value is a CONFIG error naming the three modes', async () => {
  await assert.rejects(
    drizzle({ connection: { url: 'file:./never-created/app.db' }, store: directoryStore({ dir: './never-created-store' }), verify: 'sometimes' as never }),
    (e: SyncError) => e.code === 'CONFIG' && /'background', 'before-open', 'hash-only'/.test(e.message),
  );
});

/** Header bytes of a database file: [18, 19] = write/read format version (2 = WAL), 24-27 = file change counter. */
function header(path: string): { format: [number, number]; changeCounter: number } {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(28);
    readSync(fd, b, 0, 28, 0);
    return { format: [b[18]!, b[19]!], changeCounter: b.readUInt32BE(24) };
  } finally {
    closeSync(fd);
  }
}

for (const verify of ['background', 'before-open'] as const) {
  test(`verify '${verify}': the restored file is installed as a WAL database, so opening it commits nothing (no whole-file sync before the first query)`, async () => {
    const dir = await tempDir('restore-check-wal-header');
    try {
      const { store, dbPath } = await seededStore(dir.path, sql`INSERT INTO notes (body) SELECT 'note ' || value FROM generate_series(1, 500)`);
      const db = await openDb(dbPath, store, { verify });
      if (verify === 'background') await nextEvent(db.$sync, 'restore-check'); // 'before-open' checked before drizzle() resolved
      assert.equal((await db.select({ n: count() }).from(notes))[0]!.n, 500);
      // Snapshots store the legacy format with a change counter of 1 (canonical header). Had the app's
      // `PRAGMA journal_mode=WAL` switched the file, that switch would be a commit (counter 2) that syncs the file.
      assert.deepEqual(header(dbPath), { format: [2, 2], changeCounter: 1 });
      await db.insert(notes).values({ body: 'after' }).run();
      await db.$sync.close();
      assert.equal(header(dbPath).format[0], 2, 'still a WAL database after a write and close');
    } finally {
      await dir.cleanup();
    }
  });
}
