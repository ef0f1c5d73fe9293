import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { directoryStore, type SnapshotInfo, type SnapshotStore } from 'drizzle-libsql-blob';
import { countingStore, nextEvent, notes, open, tempDir } from '../helpers/fixtures.ts';

let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('schedule')));
after(() => dir.cleanup());

function storeFor(name: string) {
  return countingStore(directoryStore({ dir: join(dir.path, name, 'store') }));
}

test('a burst of 500 commits produces one snapshot (debounce), not 500', async () => {
  const store = storeFor('burst');
  const db = await open(join(dir.path, 'burst', 'app.db'), store, { snapshot: { debounceMs: 1_000, maxCommits: 10_000 } });
  await db.$sync.flush(); // settle the CREATE TABLE from open()
  const publishesBefore = store.calls.writeSmall;
  const okBefore = db.$sync.status().snapshotsOk;

  const snapshot = nextEvent(db.$sync, 'snapshot');
  for (let i = 0; i < 500; i++) await db.insert(notes).values({ body: `row ${i}` });
  const info = await snapshot;

  assert.equal(info.commits, 500, 'the one snapshot covers all 500 commits');
  assert.equal(db.$sync.status().snapshotsOk - okBefore, 1);
  assert.equal(db.$sync.status().pendingCommits, 0);
  assert.equal(store.calls.writeSmall - publishesBefore, 1, 'one manifest publish');
  await db.$sync.close();
  assert.equal(db.$sync.status().snapshotsOk - okBefore, 1, 'close found nothing left to snapshot');
});

test('maxCommits forces a snapshot before the debounce expires', async () => {
  const store = storeFor('max');
  const db = await open(join(dir.path, 'max', 'app.db'), store, { snapshot: { debounceMs: 120_000, maxIntervalMs: 600_000, maxCommits: 100 } });
  // 99 + the CREATE TABLE = 100 commits: the 100th must trigger at once.
  const snapshot = nextEvent(db.$sync, 'snapshot', undefined, 20_000);
  for (let i = 0; i < 99; i++) await db.insert(notes).values({ body: `row ${i}` });
  const info = await snapshot; // would take 120 s if only the debounce could trigger it
  assert.ok(info.commits >= 100, `snapshot covered ${info.commits} commits`);
  await db.$sync.close();
});

test('ceiling: a steady writer that keeps resetting the debounce still gets a snapshot within maxIntervalMs', async () => {
  const store = storeFor('ceiling');
  const maxIntervalMs = 1_500;
  const db = await open(join(dir.path, 'ceiling', 'app.db'), store, { snapshot: { debounceMs: 400, maxIntervalMs, maxCommits: 1_000_000 } });
  await db.$sync.flush();

  let firstCommitAt = 0;
  let snapshotAt = 0;
  let writes = 0;
  const snapshot = nextEvent(db.$sync, 'snapshot', undefined, 20_000).then((info) => {
    snapshotAt = Date.now();
    return info;
  });
  // Commits every ~50 ms: the 400 ms debounce never expires while this runs.
  while (snapshotAt === 0 && writes < 400) {
    await db.insert(notes).values({ body: `tick ${writes}` });
    if (writes === 0) firstCommitAt = Date.now();
    writes++;
    await new Promise((r) => setTimeout(r, 50));
  }
  const info = await snapshot;
  assert.ok(snapshotAt > 0, 'a snapshot landed while the writer was still writing');
  const elapsed = snapshotAt - firstCommitAt;
  // The snapshot starts at the ceiling; it lands after its own duration. 500 ms of timer slack on a busy machine.
  assert.ok(elapsed <= maxIntervalMs + info.durationMs + 500, `snapshot landed ${elapsed} ms after the first commit (ceiling ${maxIntervalMs} ms, snapshot ${Math.round(info.durationMs)} ms)`);
  assert.ok(elapsed >= maxIntervalMs - 50, `snapshot should come from the ceiling, not the debounce (${elapsed} ms)`);
  await db.$sync.close();
});

/**
 * A store whose uploads wait while the gate is closed: a snapshot can be held in the middle of its
 * upload for as long as the test needs (the wrapping style of countingStore, over a real store).
 */
function gatedStore(inner: SnapshotStore) {
  let gate: Promise<void> | undefined;
  let open_: () => void = () => {};
  let reached: () => void = () => {};
  let uploadReached = new Promise<void>((resolve) => (reached = resolve));
  const hold = async () => {
    if (!gate) return;
    reached();
    await gate;
  };
  const store: SnapshotStore = {
    ...inner,
    uploadBuffer: async (key, body) => {
      await hold();
      return inner.uploadBuffer(key, body);
    },
    uploadFile: async (key, path, metadata) => {
      await hold();
      return inner.uploadFile(key, path, metadata);
    },
  };
  return {
    store,
    /** Holds every upload from now on; resolves `uploadReached` when the first one waits. */
    close() {
      uploadReached = new Promise<void>((resolve) => (reached = resolve));
      gate = new Promise<void>((resolve) => (open_ = resolve));
    },
    get uploadReached() {
      return uploadReached;
    },
    release() {
      gate = undefined;
      open_();
    },
  };
}

test('commits made during a snapshot schedule the next one (by the scheduler itself, no flush)', async () => {
  const gated = gatedStore(directoryStore({ dir: join(dir.path, 'during', 'store') }));
  const db = await open(join(dir.path, 'during', 'app.db'), gated.store, { snapshot: { debounceMs: 30, maxIntervalMs: 600_000 } });
  await db.$sync.flush(); // settle the CREATE TABLE from open()

  const events: SnapshotInfo[] = [];
  let second!: () => void;
  const secondSnapshot = new Promise<void>((resolve) => (second = resolve));
  db.$sync.on('snapshot', (info) => {
    events.push(info);
    if (events.length === 2) second();
  });

  gated.close();
  await db.insert(notes).values({ body: 'first' });
  await gated.uploadReached; // the debounced snapshot is now in its upload, held
  assert.equal(db.$sync.status().state, 'snapshotting');
  await db.insert(notes).values({ body: 'during' }); // committed while the snapshot runs
  assert.equal(db.$sync.status().pendingCommits, 2, "'first' (being snapshotted) and 'during'");
  gated.release();

  // No flush(): only the controller's own reschedule can produce this second snapshot.
  const timeout = setTimeout(() => second(), 5_000);
  await secondSnapshot;
  clearTimeout(timeout);
  assert.equal(events.length, 2, `the scheduler took no snapshot of the commit made during the first one (events: ${events.map((e) => e.seq).join(', ')})`);
  const [a, b] = events as [SnapshotInfo, SnapshotInfo];
  assert.equal(a.commits, 1, 'the first snapshot covered the commit made before it started');
  assert.equal(b.commits, 1, 'the second covered the commit made during the first');
  assert.ok(b.seq > a.seq && b.uploaded, `second snapshot seq ${b.seq} after ${a.seq}`);
  assert.equal(db.$sync.status().pendingCommits, 0);
  assert.equal(db.$sync.status().state, 'idle');
  await db.$sync.close();
  const reopened = await open(join(dir.path, 'during', 'app2.db'), gated.store);
  assert.equal(reopened.$sync.status().restoredFrom?.seq, b.seq);
  assert.deepEqual((await reopened.select().from(notes)).map((r) => r.body), ['first', 'during']);
  await reopened.$sync.close();
});

test('the ceiling holds even for a writer in a tight loop that never lets timers run', async () => {
  const store = storeFor('tight');
  const db = await open(join(dir.path, 'tight', 'app.db'), store, { snapshot: { debounceMs: 200, maxIntervalMs: 200, maxCommits: 1_000_000 } });
  await db.$sync.flush();
  // Local libSQL statements settle at once, so this loop runs on microtasks only: no timer can fire in it.
  const started = Date.now();
  let sawSnapshotting = false;
  while (Date.now() - started < 2_000 && !sawSnapshotting) {
    await db.insert(notes).values({ body: 'tight' });
    sawSnapshotting = db.$sync.status().state === 'snapshotting';
  }
  assert.ok(sawSnapshotting, 'a snapshot started from the commit path once the ceiling passed');
  assert.ok(Date.now() - started >= 200, 'not before the ceiling');
  await db.$sync.close();
});
