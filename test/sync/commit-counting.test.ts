import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { sql, eq } from 'drizzle-orm';
import { directoryStore } from 'drizzle-libsql-blob';
import { countingStore, notes, open, tempDir } from '../helpers/fixtures.ts';

let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('count')));
after(() => dir.cleanup());

async function openCounted(name: string) {
  const store = countingStore(directoryStore({ dir: join(dir.path, name, 'store') }));
  // A debounce far beyond the test: counting is observed through status(), not snapshots.
  const db = await open(join(dir.path, name, 'app.db'), store, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } });
  return { db, store };
}

test('every write path is counted once per commit; reads, rollbacks and failures are not', async () => {
  const { db } = await openCounted('paths');
  const commits = () => db.$sync.status().commits;
  const c0 = commits(); // the CREATE TABLE in open()

  await db.insert(notes).values({ body: 'a' });
  assert.equal(commits(), c0 + 1, 'execute of an INSERT');
  await db.update(notes).set({ body: 'b' }).where(eq(notes.id, 1));
  assert.equal(commits(), c0 + 2, 'execute of an UPDATE');

  await db.batch([db.insert(notes).values({ body: 'c' }), db.insert(notes).values({ body: 'd' })]);
  assert.equal(commits(), c0 + 3, 'one batch is one commit');

  await db.$client.migrate([{ sql: 'CREATE TABLE m (a)', args: [] }]);
  assert.equal(commits(), c0 + 4, 'client.migrate');

  await db.$client.executeMultiple('INSERT INTO notes (body) VALUES (1); INSERT INTO notes (body) VALUES (2);');
  assert.equal(commits(), c0 + 5, 'executeMultiple');

  await db.transaction(async (tx) => {
    await tx.insert(notes).values({ body: 'tx' });
    await tx.select().from(notes);
  });
  assert.equal(commits(), c0 + 6, 'transaction commit');

  // Not counted: reads of every kind.
  await db.select().from(notes);
  await db.query.notes.findMany();
  await db.all(sql`SELECT count(*) FROM notes`);
  await db.batch([db.select().from(notes), db.select().from(notes)]);
  await db.$client.executeMultiple('SELECT 1; SELECT 2;');
  await db.transaction(async (tx) => {
    await tx.select().from(notes);
  });
  assert.equal(commits(), c0 + 6, 'reads');

  // Not counted: rollbacks.
  await assert.rejects(
    db.transaction(async (tx) => {
      await tx.insert(notes).values({ body: 'rolled back' });
      tx.rollback();
    }),
  );
  const tx = await db.$client.transaction('write');
  await tx.execute('INSERT INTO notes (body) VALUES (9)');
  await tx.rollback();
  assert.equal(commits(), c0 + 6, 'rollbacks');

  // Not counted: failed statements and failed batches.
  await assert.rejects(db.run(sql`INSERT INTO no_such_table VALUES (1)`));
  await assert.rejects(db.insert(notes).values({ body: null as unknown as string }));
  await assert.rejects(db.batch([db.insert(notes).values({ body: 'x' }), db.run(sql`INSERT INTO nope VALUES (1)`)]));
  assert.equal(commits(), c0 + 6, 'failures');

  const rows = await db.select().from(notes);
  assert.equal(rows.some((r) => r.body === 'rolled back' || r.body === 'x'), false, 'rolled back rows are really gone');
  assert.equal(db.$sync.status().pendingCommits, db.$sync.status().commits);
  await db.$sync.close();
});

test('a write during an open transaction waits for it instead of failing with SQLITE_BUSY', async () => {
  const { db } = await openCounted('serialize');
  let outsideDone = false;
  let outside: Promise<unknown> | undefined;
  await db.transaction(async (tx) => {
    await tx.insert(notes).values({ body: 'inside' });
    outside = db.insert(notes).values({ body: 'outside' }).then(() => (outsideDone = true));
    // Give the outside write every chance to run early: it must still be waiting.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.equal(outsideDone, false, 'outside write must wait for the transaction');
    await tx.insert(notes).values({ body: 'inside 2' });
  });
  await outside;
  const bodies = (await db.select().from(notes)).map((r) => r.body);
  assert.deepEqual(bodies, ['inside', 'inside 2', 'outside']);
  await db.$sync.close();
});

test('an idle database makes no storage requests', async () => {
  const store = countingStore(directoryStore({ dir: join(dir.path, 'idle', 'store') }));
  const db = await open(join(dir.path, 'idle', 'app.db'), store, { snapshot: { debounceMs: 20, maxIntervalMs: 100 } });
  const snap = await db.$sync.flush(); // the CREATE TABLE from open()
  assert.ok(snap, 'the first commit is snapshotted');
  const afterFlush = store.total();
  // Several debounce and ceiling periods pass; reads keep happening; nothing is pending.
  const until = Date.now() + 500;
  while (Date.now() < until) {
    await db.select().from(notes);
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(store.total(), afterFlush, `idle database made ${store.total() - afterFlush} store requests`);
  assert.equal(await db.$sync.flush(), null, 'flush with nothing pending does nothing');
  assert.equal(store.total(), afterFlush);
  await db.$sync.close();
  assert.equal(store.total(), afterFlush, 'close with nothing pending uploads nothing');
});

test('reopening an unchanged database uploads nothing (snapshots are canonical)', async () => {
  const store = countingStore(directoryStore({ dir: join(dir.path, 'canonical', 'store') }));
  const first = await open(join(dir.path, 'canonical', 'a.db'), store);
  await first.insert(notes).values({ body: 'x' });
  await first.$sync.close();
  const uploads = store.calls.uploadFile + store.calls.uploadBuffer;
  // A restored copy runs CREATE TABLE IF NOT EXISTS (counted as a write) and switches to WAL: same content.
  const second = await open(join(dir.path, 'canonical', 'b.db'), store);
  const info = await second.$sync.flush();
  assert.equal(info?.uploaded, false, 'identical content is not uploaded again');
  await second.$sync.close();
  assert.equal(store.calls.uploadFile + store.calls.uploadBuffer, uploads);
  // One publish, plus the empty manifest the first writer creates so it has a blob to take the lease on.
  assert.equal(store.calls.writeSmall, 2, 'one manifest publish in total');
});

test("synchronous defaults to NORMAL on the writing connections (no fsync per commit); 'full' is honoured", async () => {
  const level = async (db: Awaited<ReturnType<typeof open>>) => Number((await db.$client.execute('PRAGMA synchronous')).rows[0]![0]);
  const normal = await open(join(dir.path, 'sync', 'n.db'), directoryStore({ dir: join(dir.path, 'sync', 's1') }));
  assert.equal(await level(normal), 1);
  // A read during a transaction opens a second pooled connection; the transaction's own connection is configured.
  await normal.transaction(async (tx) => {
    await normal.select().from(notes);
    assert.equal(Number((await tx.all<{ synchronous: number }>(sql`PRAGMA synchronous`))[0]!.synchronous), 1);
    await tx.insert(notes).values({ body: 'x' });
  });
  await normal.$sync.close();
  const full = await open(join(dir.path, 'sync', 'f.db'), directoryStore({ dir: join(dir.path, 'sync', 's2') }), { synchronous: 'full' });
  assert.equal(await level(full), 2);
  await full.$sync.close();
});
