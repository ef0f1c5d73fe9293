/**
 * db.$sync.durable(): resolves only once every commit made before the call is in the store (a restore
 * on a wiped disk has it), starts that upload at once, shares uploads between callers (group commit),
 * waits through failed uploads within its timeout, and rejects with a code that says why when the
 * commits will not get there (NOT_DURABLE, LEASE_LOST, CLOSED). Real directory store, real files.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { directoryStore, drizzle, SyncError, type SnapshotStore } from 'drizzle-libsql-blob';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { countingStore, isCode, nextEvent, notes, open, readManifest, schema, tempDir, type TempDir } from '../helpers/fixtures.ts';

let dir: TempDir;
before(async () => (dir = await tempDir('durable')));
after(() => dir.cleanup());

/** No scheduled upload within any test: whatever reaches the store, durable() (or close) sent. */
const MANUAL = { debounceMs: 600_000, maxIntervalMs: 600_000, maxCommits: 1_000_000 };

/** A directory store whose uploads fail (transient) while `down` is set. */
function flakyStore(path: string) {
  const inner = directoryStore({ dir: path });
  const state = { down: false, uploads: 0, refused: 0 };
  const refuse = () => {
    state.refused++;
    return Promise.reject(new SyncError('STORE_UNREACHABLE', 'injected: store down', { transient: true }));
  };
  const store: SnapshotStore = {
    ...inner,
    uploadBuffer: (key, body) => (state.down ? refuse() : (state.uploads++, inner.uploadBuffer(key, body))),
    uploadFile: (key, path, metadata) => (state.down ? refuse() : (state.uploads++, inner.uploadFile(key, path, metadata))),
  };
  return { store, state };
}

/** Every note body a fresh instance restores from the store onto an empty disk. */
async function restoredBodies(label: string, store: SnapshotStore): Promise<string[]> {
  const fresh = await drizzle({ connection: { url: `file:${join(dir.path, label, `fresh-${Date.now()}.db`)}` }, schema, store, restore: 'required', role: 'replica', log: false, shutdown: { signals: false } });
  try {
    return (await fresh.select().from(notes)).map((r) => r.body);
  } finally {
    await fresh.$sync.close();
  }
}

test('nothing pending: resolves at once, without a store request', async () => {
  const store = countingStore(directoryStore({ dir: join(dir.path, 'idle', 'store') }));
  const db = await open(join(dir.path, 'idle', 'app.db'), store, { snapshot: MANUAL });
  try {
    await db.$sync.flush();
    const before = store.total();
    await db.$sync.durable();
    await db.$sync.durable({ timeoutMs: 1 });
    assert.equal(store.total(), before, 'durable() with nothing pending made a store request');
  } finally {
    await db.$sync.close();
  }
});

test('resolves once the commit is in the store, uploading at once (no debounce); a wiped disk restores it', async () => {
  const store = directoryStore({ dir: join(dir.path, 'one', 'store') });
  const db = await open(join(dir.path, 'one', 'app.db'), store, { snapshot: MANUAL });
  try {
    await db.insert(notes).values({ body: 'acknowledged' });
    const commits = db.$sync.status().commits;
    assert.ok(db.$sync.status().pendingCommits > 0);
    const started = performance.now();
    await db.$sync.durable();
    const ms = performance.now() - started;
    const status = db.$sync.status();
    assert.equal(status.pendingCommits, 0, 'durable() resolved with commits still pending');
    assert.ok(status.commits >= commits);
    assert.equal((await readManifest(store)).seq, status.lastSnapshot!.seq, 'the store holds the snapshot durable() waited for');
    assert.ok(ms < 10_000, `durable() took ${ms.toFixed(0)} ms`);
    assert.deepEqual(await restoredBodies('one', store), ['acknowledged']);
  } finally {
    await db.$sync.close();
  }
});

test('group commit: 60 writers each awaiting durable() share far fewer uploads, and each resolves only once its row is covered', async () => {
  const { store, state } = flakyStore(join(dir.path, 'group', 'store'));
  const db = await open(join(dir.path, 'group', 'app.db'), store, { snapshot: MANUAL });
  try {
    await db.$sync.flush();
    let uploads = 0;
    db.$sync.on('snapshot', (info) => void (info.uploaded && uploads++));
    const writers = 60;
    const early: string[] = [];
    await Promise.all(
      Array.from({ length: writers }, async (_, i) => {
        await new Promise((resolve) => setTimeout(resolve, i * 5)); // staggered over 300 ms, as requests arrive
        await db.insert(notes).values({ body: `w${i}` });
        const mine = db.$sync.status().commits;
        await db.$sync.durable();
        const s = db.$sync.status();
        if (s.commits - s.pendingCommits < mine) early.push(`w${i}: covered ${s.commits - s.pendingCommits} < ${mine}`);
      }),
    );
    assert.deepEqual(early, [], 'durable() resolved before its commit was covered');
    assert.ok(uploads >= 1, 'nothing was uploaded');
    // Writers arrive every 5 ms; an upload (a page delta: one small object and the manifest) takes
    // longer, so the ones that came meanwhile share the next one. Without sharing: one upload each.
    assert.ok(uploads <= writers / 2, `${uploads} uploads for ${writers} durable() calls: no group commit`);
    assert.ok(state.uploads > 0);
    const bodies = await restoredBodies('group', store);
    assert.equal(bodies.length, writers, `${bodies.length} of ${writers} rows restored`);
  } finally {
    await db.$sync.close();
  }
});

test('store down: waits through failed uploads (honouring the backoff), a short timeout rejects NOT_DURABLE naming the last error, and the commit lands once it heals', async () => {
  const { store, state } = flakyStore(join(dir.path, 'down', 'store'));
  const db = await open(join(dir.path, 'down', 'app.db'), store, {
    snapshot: { ...MANUAL, retryBaseMs: 300, retryMaxMs: 300 },
    retry: { retries: 0, minTimeoutMs: 1, maxTimeoutMs: 1 },
  });
  try {
    await db.$sync.flush();
    state.down = true;
    await db.insert(notes).values({ body: 'while down' });
    const failed = nextEvent(db.$sync, 'snapshot-error');
    const patient = db.$sync.durable();
    let patientSettled = false;
    void patient.then(() => (patientSettled = true), () => (patientSettled = true));
    const started = performance.now();
    await assert.rejects(db.$sync.durable({ timeoutMs: 400 }), (error: unknown) => {
      isCode('NOT_DURABLE')(error);
      const e = error as SyncError;
      assert.ok(e.transient, 'NOT_DURABLE is transient: calling again may succeed');
      assert.match(e.message, /1 commit\(s\) made before the call were not in the store .* after 400 ms; the last upload failed with STORE_UNREACHABLE: injected: store down/);
      assert.match(e.message, /call durable\(\) again to keep waiting, or pass a longer durable\(\{ timeoutMs \}\)/);
      return true;
    });
    assert.ok(performance.now() - started >= 390, 'rejected before its timeout');
    await failed;
    assert.equal(patientSettled, false, 'the patient caller gave up while the store was down');
    // 400 ms with a 300 ms backoff: the first attempt and at most two retries, however many callers wait.
    assert.ok(state.refused >= 1 && state.refused <= 3, `${state.refused} upload attempts in 400 ms: the backoff was not honoured`);
    assert.equal(db.$sync.status().pendingCommits, 1, 'the commit is still pending (and local)');

    state.down = false;
    await patient;
    assert.equal(db.$sync.status().pendingCommits, 0);
    assert.deepEqual(await restoredBodies('down', store), ['while down']);
  } finally {
    await db.$sync.close();
  }
});

test('lease lost: a waiter rejects with LEASE_LOST; commits covered before it still resolve', async () => {
  const label = 'lease';
  const store = directoryStore({ dir: join(dir.path, label, 'store') });
  const a = await open(join(dir.path, label, 'a.db'), store, { snapshot: MANUAL });
  await a.insert(notes).values({ body: 'a1' });
  await a.$sync.durable();
  // A's lease is gone and another writer takes it: A's next publish is refused by the store.
  await rm(join(dir.path, label, 'store', `${MANIFEST_KEY}.lease`));
  const b = await drizzle({ connection: { url: `file:${join(dir.path, label, 'b.db')}` }, schema, store, role: 'writer', log: false, shutdown: { signals: false } });
  try {
    await a.insert(notes).values({ body: 'a2 (never durable)' });
    await assert.rejects(a.$sync.durable(), isCode('LEASE_LOST'));
    assert.equal(a.$sync.status().state, 'stopped');
    await assert.rejects(a.$sync.durable(), isCode('LEASE_LOST'), 'a later call is told at once');
  } finally {
    await a.$sync.close().catch(() => undefined);
    await b.$sync.close();
  }
});

test('close(): its final snapshot covers a waiter; when it cannot upload, the waiter rejects CLOSED; afterwards durable() answers at once', async () => {
  {
    const store = directoryStore({ dir: join(dir.path, 'close-ok', 'store') });
    const db = await open(join(dir.path, 'close-ok', 'app.db'), store, { snapshot: MANUAL });
    await db.insert(notes).values({ body: 'before close' });
    const waiting = db.$sync.durable();
    await db.$sync.close();
    await waiting;
    await db.$sync.durable(); // nothing pending after a clean close
    assert.deepEqual(await restoredBodies('close-ok', store), ['before close']);
  }
  {
    const { store, state } = flakyStore(join(dir.path, 'close-down', 'store'));
    const db = await open(join(dir.path, 'close-down', 'app.db'), store, {
      snapshot: MANUAL,
      retry: { retries: 0, minTimeoutMs: 1, maxTimeoutMs: 1 },
      shutdown: { signals: false, timeoutMs: 2_000 },
    });
    await db.$sync.flush();
    state.down = true;
    await db.insert(notes).values({ body: 'stranded' });
    const waiting = db.$sync.durable({ timeoutMs: 60_000 });
    await assert.rejects(db.$sync.close());
    await assert.rejects(waiting, (error: unknown) => isCode('CLOSED')(error) && /remain only in the local file/.test((error as Error).message));
    await assert.rejects(db.$sync.durable(), isCode('CLOSED'), 'a call after close() with commits still local');
  }
});

test('a read replica commits nothing: durable() resolves at once; bad options reject with CONFIG', async () => {
  const label = 'replica';
  const store = directoryStore({ dir: join(dir.path, label, 'store') });
  const w = await open(join(dir.path, label, 'w.db'), store, { snapshot: MANUAL });
  const r = await drizzle({ connection: { url: `file:${join(dir.path, label, 'r.db')}` }, schema, store, role: 'replica', log: false, shutdown: { signals: false } });
  try {
    await w.$sync.durable();
    await r.$sync.durable();
    await assert.rejects(w.$sync.durable({ timeoutMs: 0 }), isCode('CONFIG'));
    await assert.rejects(w.$sync.durable({ timeoutMS: 5 } as never), (e: unknown) => isCode('CONFIG')(e) && /did you mean 'timeoutMs'/.test((e as Error).message));
  } finally {
    await r.$sync.close();
    await w.$sync.close();
  }
});
