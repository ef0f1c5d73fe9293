import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { directoryStore, SyncError } from 'drizzle-libsql-blob';
import { notes, open, tempDir } from '../helpers/fixtures.ts';

let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('close')));
after(() => dir.cleanup());

test('close(): writes issued before it (even queued behind a transaction) land in the final snapshot; later ones are refused', async () => {
  const store = directoryStore({ dir: join(dir.path, 'store') });
  const db = await open(join(dir.path, 'a.db'), store, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } });
  let queued: Promise<unknown> | undefined;
  let closing: Promise<void> | undefined;
  let late: Promise<unknown> | undefined;
  await db.transaction(async (tx) => {
    await tx.insert(notes).values({ body: 'in tx' });
    // drizzle queries are lazy thenables: .run() sends it now; it then waits for the transaction's lock.
    queued = db.insert(notes).values({ body: 'queued before close' }).run();
    await new Promise((r) => setImmediate(r)); // let it reach the client's write queue
    closing = db.$sync.close();
    late = db.insert(notes).values({ body: 'after close' }).run();
    await tx.insert(notes).values({ body: 'in tx, after close began' });
  });
  await queued;
  await assert.rejects(late!, (e: unknown) => {
    const cause = (e as { cause?: unknown }).cause ?? e;
    return cause instanceof SyncError && cause.code === 'CLOSED';
  });
  await closing;
  assert.equal(db.$sync.status().state, 'closed');
  assert.equal(db.$sync.status().pendingCommits, 0);

  const fresh = await open(join(dir.path, 'b.db'), store);
  assert.deepEqual((await fresh.select().from(notes)).map((r) => r.body), ['in tx', 'in tx, after close began', 'queued before close']);
  await fresh.$sync.close();
});

test('close() is idempotent and flush() after close is a CLOSED error', async () => {
  const store = directoryStore({ dir: join(dir.path, 'store2') });
  const db = await open(join(dir.path, 'c.db'), store);
  const a = db.$sync.close();
  const b = db.$sync.close();
  assert.equal(a, b);
  await a;
  await assert.rejects(db.$sync.flush(), (e: unknown) => e instanceof SyncError && e.code === 'CLOSED');
});
