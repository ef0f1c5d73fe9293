/**
 * A closed libSQL client keeps its native connection open until every prepared statement it made is
 * garbage-collected; that connection holds the file's locks and, closing later as the last one on its
 * inode, checkpoints and deletes `<db>-wal`/`<db>-shm` by path. Our close() leaves no such connection
 * behind, and a download never replaces a file this process still has open.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { setImmediate as macrotask } from 'node:timers/promises';
import { createClient } from '@libsql/client';
import { sql } from 'drizzle-orm';
import { azureBlobStore, drizzle, type SnapshotStore } from 'drizzle-libsql-blob';
import { collectGarbage } from '../../src/sync/collect-garbage.ts';
import { isCode, nextEvent, notes, open, schema } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const fixture = useAzuriteAndTempDir('closed-wal');

const MANUAL = { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } };

function azure(prefix: string): SnapshotStore {
  return azureBlobStore({ connectionString: fixture.azurite.connectionString, container: 'closed-wal', prefix, createContainer: true });
}

/** Lets V8 finalize whatever is unreachable now, then gives native finalizers their macrotask. */
async function finalizeGarbage(): Promise<void> {
  for (let round = 0; round < 3; round++) {
    collectGarbage('major');
    await macrotask();
  }
}

/** Descriptors of this process on the database file or its -wal/-shm (replaced inodes included). */
function descriptorsOn(dbPath: string): string[] {
  const real = join(realpathSync(dirname(dbPath)), basename(dbPath));
  const names = new Set([real, `${real}-wal`, `${real}-shm`].flatMap((p) => [p, `${p} (deleted)`]));
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (names.has(target)) out.push(target);
    } catch {
      // closed since the listing
    }
  }
  return out;
}

async function countNotes(dbPath: string): Promise<number> {
  const plain = createClient({ url: `file:${dbPath}` });
  try {
    return Number((await plain.execute('SELECT count(*) FROM notes')).rows[0]![0]);
  } finally {
    plain.close();
  }
}

/** A writer with two snapshots ([r1], [r1, r2]), read and written through many statements, closed. Returns the first's seq. */
async function writeAndClose(dbPath: string, store: SnapshotStore): Promise<number> {
  const a = await open(dbPath, store, MANUAL);
  await a.insert(notes).values({ body: 'r1' });
  const s1 = (await a.$sync.flush())!.seq;
  await a.insert(notes).values({ body: 'r2' });
  await a.$sync.flush();
  assert.equal((await a.select().from(notes)).length, 2);
  await a.$sync.close();
  return s1;
}

test('a roll-back installed over a closed writer keeps its WAL when the old connection is finally collected', async () => {
  const store = azure('rollback');
  const dbPath = join(fixture.dir.path, 'rollback', 'app.db');
  const s1 = await writeAndClose(dbPath, store);

  // b: the same path rolled back to s1 (a download installed over the file a had open), then writes.
  const b = await open(dbPath, store, { ...MANUAL, restore: { seq: s1 } });
  assert.deepEqual((await b.select().from(notes)).map((r) => r.body), ['r1']);
  await b.run(sql`INSERT INTO notes (body) SELECT 'b ' || value FROM generate_series(1, 50)`);
  const wal = statSync(`${dbPath}-wal`);
  const shm = statSync(`${dbPath}-shm`);
  assert.ok(wal.size > 0, 'b committed into its WAL');

  await finalizeGarbage();

  assert.equal(statSync(`${dbPath}-wal`, { throwIfNoEntry: false })?.ino, wal.ino, "b's -wal is still there, the same file");
  assert.equal(statSync(`${dbPath}-shm`, { throwIfNoEntry: false })?.ino, shm.ino, "b's -shm is still there, the same file");
  assert.equal((await b.select().from(notes)).length, 51, 'b reads every row it wrote');
  await b.$sync.close();
  assert.equal(await countNotes(dbPath), 51, 'the closed file holds every row b wrote');
});

test('$sync.close() closes the file for real: no descriptor left, the WAL folded and removed, no lock held', { skip: !existsSync('/proc/self/fd') }, async () => {
  const store = azure('closed');
  const dbPath = join(fixture.dir.path, 'closed', 'app.db');
  await writeAndClose(dbPath, store);

  // No collection here: whatever was left open after close() is still open.
  assert.deepEqual(descriptorsOn(dbPath), [], 'no descriptor of this process on the database, its -wal or -shm');
  assert.equal(existsSync(`${dbPath}-wal`), false, 'the last connection checkpointed and removed the WAL');
  assert.equal(existsSync(`${dbPath}-shm`), false, 'and the WAL index');
  // A lingering connection keeps its SHARED lock: leaving WAL mode needs the file to itself.
  const plain = createClient({ url: `file:${dbPath}` });
  try {
    assert.deepEqual((await plain.execute('PRAGMA journal_mode=DELETE')).rows.map((r) => r[0]), ['delete']);
  } finally {
    plain.close();
  }
  assert.equal(await countNotes(dbPath), 2);
});

test('a download is not installed over a file this process still has open: LOCKED, nothing replaced', { skip: !existsSync('/proc/self/fd') }, async () => {
  const store = azure('held');
  const dbPath = join(fixture.dir.path, 'held', 'app.db');
  const s1 = await writeAndClose(dbPath, store);
  const before = readFileSync(dbPath);

  const kept = createClient({ url: `file:${dbPath}` }); // never closed while the roll-back runs
  try {
    assert.equal(Number((await kept.execute('SELECT count(*) FROM notes')).rows[0]![0]), 2);
    const outcome: Awaited<ReturnType<typeof open>> | Error = await open(dbPath, store, { ...MANUAL, restore: { seq: s1 } }).catch((error: unknown) => error as Error);
    if (!(outcome instanceof Error)) {
      await outcome.$sync.close(); // a failure must not leave an open instance keeping the process alive
      assert.fail('the roll-back was installed over a file this process still had open');
    }
    isCode('LOCKED')(outcome);
    assert.match(outcome.message, /still open in this process .* Close every client on that file/);
    assert.deepEqual(readFileSync(dbPath), before, 'the local file was not replaced');
  } finally {
    kept.close();
  }
  // Once it is closed, the same roll-back goes through.
  const b = await open(dbPath, store, { ...MANUAL, restore: { seq: s1 } });
  assert.deepEqual((await b.select().from(notes)).map((r) => r.body), ['r1']);
  await b.$sync.close();
});

test("a replica's close() also closes the connections of the files it swapped out", { skip: !existsSync('/proc/self/fd') }, async () => {
  const store = azure('replica');
  const writer = await open(join(fixture.dir.path, 'replica', 'writer.db'), store, MANUAL);
  await writer.insert(notes).values({ body: 'w1' });
  await writer.$sync.flush();
  const replicaPath = join(fixture.dir.path, 'replica', 'replica.db');
  const replica = await drizzle({ connection: { url: `file:${replicaPath}` }, schema, store, log: false, shutdown: { signals: false }, ...MANUAL, role: 'replica', replica: { pollMs: 50 } });
  try {
    for (const body of ['w2', 'w3']) {
      await writer.insert(notes).values({ body });
      const { seq } = (await writer.$sync.flush())!;
      await nextEvent(replica.$sync, 'replica-update', (update) => update.seq === seq);
      await replica.select().from(notes); // a query on the swapped-in file
    }
    assert.deepEqual((await replica.select().from(notes)).map((r) => r.body), ['w1', 'w2', 'w3']);
  } finally {
    await replica.$sync.close();
  }
  assert.deepEqual(descriptorsOn(replicaPath), [], 'no descriptor on the replica file nor on the ones it replaced');
  await writer.$sync.close();
});
