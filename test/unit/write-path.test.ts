/**
 * The counting client's write path (issue 13): the cached read/write verdict, the write lock's
 * synchronous fast path, and that every hook and error path survives it. Over a real libSQL file.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createClient, type Client } from '@libsql/client';
import { WriteVerdictCache } from '../../src/client/sql-kind.ts';
import { WriteLock } from '../../src/client/write-lock.ts';
import { CountingClient, type CommitHooks, type CommitSource } from '../../src/client/counting-client.ts';
import { tempDir, type TempDir } from '../helpers/fixtures.ts';

let dir: TempDir;
before(async () => {
  dir = await tempDir('write-path');
});
after(async () => {
  await dir.cleanup();
});

// ---- the verdict cache ----

test('verdict cache: same verdicts as the classifier; a repeated text is a hit (kept once)', () => {
  const cache = new WriteVerdictCache(10);
  // Texts the leading-verb fast path leaves to the cache (drizzle's plain SELECT/INSERT/UPDATE/DELETE never reach it).
  const insert = 'with "v" as (select ?) insert into "notes" ("id", "body") select null, * from "v"';
  const select = 'with "v" as (select ?) select "id", "body" from "notes" where "notes"."id" in "v"';
  assert.equal(cache.isWrite(insert), true);
  assert.equal(cache.isWrite(select), false);
  assert.equal(cache.size, 2);
  // A different string object with the same text (drizzle builds a new one per query): a hit, no new entry.
  assert.equal(cache.isWrite(['with "v" as (select ?) insert into "notes"', '("id", "body") select null, * from "v"'].join(' ')), true);
  assert.equal(cache.size, 2);
  // The fast path answers without an entry.
  assert.equal(cache.isWrite('insert into "notes" ("id", "body") values (null, ?)'), true);
  assert.equal(cache.isWrite('select "id" from "notes"'), false);
  assert.equal(cache.size, 2);
});

test('verdict cache: bounded; the oldest entry goes first; over-long texts are classified but not kept', () => {
  const cache = new WriteVerdictCache(3, 50);
  for (let i = 0; i < 10; i++) assert.equal(cache.isWrite(`values (${i})`), false);
  assert.equal(cache.size, 3, 'never more than the capacity');
  const long = `replace into t values ('${'x'.repeat(100)}')`;
  assert.equal(cache.isWrite(long), true);
  assert.equal(cache.size, 3, 'a text longer than maxSqlLength is not kept');
  // The three newest remain: re-asking for them keeps the size; the evicted ones are classified again.
  for (const i of [7, 8, 9]) cache.isWrite(`values (${i})`);
  assert.equal(cache.size, 3);
});

// ---- the lock ----

test('write lock: tryAcquire takes a free lock synchronously and refuses a held one without queueing', async () => {
  const lock = new WriteLock();
  assert.equal(lock.tryAcquire(), true);
  assert.equal(lock.held, true);
  assert.equal(lock.tryAcquire(), false);
  const order: string[] = [];
  const waiter = lock.acquire().then((release) => {
    order.push('waiter');
    release();
  });
  lock.release(); // hands the lock to the waiter: it stays held, so a fast path now cannot overtake it
  assert.equal(lock.held, true);
  assert.equal(lock.tryAcquire(), false, 'a waiter was granted the lock: tryAcquire must not take it');
  await waiter;
  assert.deepEqual(order, ['waiter']);
  assert.equal(lock.held, false);
});

// ---- the client ----

interface Recorded {
  events: string[];
  commits: CommitSource[];
  refuseAdmit: boolean;
  refuseBefore: boolean;
}

function hooksRecording(): CommitHooks & Recorded {
  const r: Recorded = { events: [], commits: [], refuseAdmit: false, refuseBefore: false };
  return Object.assign(r, {
    admitWrite(kind: 'statement' | 'transaction') {
      r.events.push(`admit:${kind}`);
      if (r.refuseAdmit) throw new Error('refused by admitWrite');
    },
    beforeWrite() {
      r.events.push('before');
      if (r.refuseBefore) throw new Error('refused by beforeWrite');
    },
    committed(source: CommitSource) {
      r.events.push(`committed:${source}`);
      r.commits.push(source);
    },
  });
}

async function openClient(name: string): Promise<{ inner: Client; client: CountingClient; hooks: ReturnType<typeof hooksRecording> }> {
  const inner = createClient({ url: pathToFileURL(join(dir.path, `${name}.db`)).href });
  await inner.execute('PRAGMA journal_mode=WAL');
  await inner.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
  const hooks = hooksRecording();
  return { inner, client: new CountingClient(inner, hooks), hooks };
}

async function values(inner: Client): Promise<string[]> {
  return (await inner.execute('SELECT v FROM t ORDER BY id')).rows.map((r) => String(r[0]));
}

test('fast path: a write on a free lock reaches beforeWrite in the caller tick, holds the lock until it settles, then counts', async () => {
  const { inner, client, hooks } = await openClient('fast');
  try {
    const pending = client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['a'] });
    // Synchronously, before any await: admitted, beforeWrite ran, the lock is held by this write.
    assert.deepEqual(hooks.events, ['admit:statement', 'before']);
    assert.equal(client.writeLock.held, true);
    await pending;
    assert.deepEqual(hooks.events, ['admit:statement', 'before', 'committed:execute']);
    assert.equal(client.writeLock.held, false);
    assert.deepEqual(await values(inner), ['a']);
    // A read takes no lock and counts nothing.
    await client.execute('SELECT count(*) FROM t');
    assert.equal(hooks.commits.length, 1);
  } finally {
    inner.close();
  }
});

test('fast path keeps FIFO: writes queued behind a holder run in order, and a write issued as the lock is handed over waits its turn', async () => {
  const { inner, client, hooks } = await openClient('fifo');
  try {
    const release = await client.writeLock.acquire(); // e.g. an open transaction
    const insert = (v: string) => client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: [v] });
    const queued = [insert('1'), insert('2')];
    assert.deepEqual(hooks.events.filter((e) => e === 'before'), [], 'nothing reaches SQLite while the lock is held');
    release(); // granted to '1' (still held)
    const late = insert('3'); // issued now: must not take the lock ahead of '2'
    await Promise.all([...queued, late]);
    assert.deepEqual(await values(inner), ['1', '2', '3']);
    assert.equal(hooks.commits.length, 3);
    assert.equal(client.writeLock.held, false);
  } finally {
    inner.close();
  }
});

test('a statement that fails releases the lock and counts nothing; the next write takes the fast path', async () => {
  const { inner, client, hooks } = await openClient('throws');
  try {
    await assert.rejects(client.execute('INSERT INTO missing_table (v) VALUES (1)'), /missing_table/);
    assert.equal(client.writeLock.held, false, 'the failed write gave the lock back');
    assert.deepEqual(hooks.commits, []);
    const next = client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['after'] });
    assert.equal(client.writeLock.held, true, 'taken synchronously again');
    await next;
    assert.deepEqual(hooks.commits, ['execute']);
    // A failing batch and a failing script too.
    await assert.rejects(client.batch(['INSERT INTO t (v) VALUES (1)', 'INSERT INTO missing_table VALUES (1)'], 'write'));
    await assert.rejects(client.executeMultiple('INSERT INTO t (v) VALUES (1); INSERT INTO missing_table VALUES (1);'));
    assert.equal(client.writeLock.held, false);
    assert.deepEqual(hooks.commits, ['execute']);
  } finally {
    inner.close();
  }
});

test('admitWrite refusing rejects (never throws synchronously) and leaves the lock free; beforeWrite refusing runs nothing', async () => {
  const { inner, client, hooks } = await openClient('refuse');
  try {
    hooks.refuseAdmit = true;
    let pending: Promise<unknown> | undefined;
    assert.doesNotThrow(() => (pending = client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['x'] })));
    await assert.rejects(pending!, /refused by admitWrite/);
    assert.equal(client.writeLock.held, false);
    assert.ok(!hooks.events.includes('before'), 'never reached beforeWrite');
    hooks.refuseAdmit = false;
    hooks.refuseBefore = true;
    await assert.rejects(client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['y'] }), /refused by beforeWrite/);
    assert.equal(client.writeLock.held, false);
    assert.deepEqual(await values(inner), [], 'neither statement reached SQLite');
    assert.deepEqual(hooks.commits, []);
  } finally {
    inner.close();
  }
});

test('transactions: take the lock for their lifetime, count on commit only if they wrote', async () => {
  const { inner, client, hooks } = await openClient('tx');
  try {
    const tx = await client.transaction('write');
    assert.equal(client.writeLock.held, true);
    const queued = client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['after-tx'] });
    await tx.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['in-tx'] });
    await tx.commit();
    await queued;
    assert.deepEqual(await values(inner), ['in-tx', 'after-tx']);
    assert.deepEqual(hooks.commits, ['transaction', 'execute']);
    const readOnly = await client.transaction('write');
    await readOnly.execute('SELECT 1');
    await readOnly.commit();
    assert.deepEqual(hooks.commits, ['transaction', 'execute'], 'a transaction that only read counts nothing');
    assert.equal(client.writeLock.held, false);
  } finally {
    inner.close();
  }
});

test('interleaved execute, batch, migrate, script and transaction writes: FIFO behind an open transaction, each commit counted once with its own source', async () => {
  const { inner, client, hooks } = await openClient('interleaved');
  try {
    const tx = await client.transaction('write'); // holds the lock: every write below must queue, not hit SQLITE_BUSY
    const issued = [
      client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['e1'] }),
      client.batch([{ sql: 'INSERT INTO t (v) VALUES (?)', args: ['b1'] }, { sql: 'INSERT INTO t (v) VALUES (?)', args: ['b2'] }], 'write'),
      client.execute('SELECT count(*) FROM t'), // a read: no lock, no count, runs now
      client.executeMultiple("INSERT INTO t (v) VALUES ('s1'); INSERT INTO t (v) VALUES ('s2');"),
      client.migrate([{ sql: 'INSERT INTO t (v) VALUES (?)', args: ['m1'] }]),
      client.execute('INSERT INTO t (v) VALUES (?)', ['e2']),
    ];
    assert.deepEqual(hooks.events.filter((e) => e === 'before'), [], 'no queued write reached SQLite while the transaction is open');
    await tx.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['tx'] });
    const second = client.transaction('write'); // queued behind the writes above
    await tx.commit();
    await Promise.all(issued);
    const tx2 = await second;
    await tx2.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['tx2'] });
    await tx2.commit();
    // Then, with the lock free, each kind on the fast path.
    await client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['e3'] });
    await client.batch(['INSERT INTO t (v) VALUES (\'b3\')'], 'write');
    await client.executeMultiple("INSERT INTO t (v) VALUES ('s3');");
    await client.migrate(['INSERT INTO t (v) VALUES (\'m2\')']);
    assert.deepEqual(await values(inner), ['tx', 'e1', 'b1', 'b2', 's1', 's2', 'm1', 'e2', 'tx2', 'e3', 'b3', 's3', 'm2']);
    assert.deepEqual(hooks.commits, ['transaction', 'execute', 'batch', 'executeMultiple', 'migrate', 'execute', 'transaction', 'execute', 'batch', 'executeMultiple', 'migrate']);
    assert.equal(client.writeLock.held, false);
  } finally {
    inner.close();
  }
});

test('a committed hook that throws still gives the lock back; the write stays committed', async () => {
  const { inner, client, hooks } = await openClient('hook-throws');
  try {
    const committed = hooks.committed.bind(hooks);
    hooks.committed = (source) => {
      committed(source);
      throw new Error('committed hook failed');
    };
    await assert.rejects(client.execute({ sql: 'INSERT INTO t (v) VALUES (?)', args: ['kept'] }), /committed hook failed/);
    assert.equal(client.writeLock.held, false);
    assert.deepEqual(await values(inner), ['kept']);
    assert.deepEqual(hooks.commits, ['execute']);
  } finally {
    inner.close();
  }
});
