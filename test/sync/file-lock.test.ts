/**
 * One process per local database file (src/local/file-lock.ts): a second opener, in this process or
 * another, is refused with LOCKED at once; the kernel frees the lock when its holder is killed with
 * -9, and a new opener takes it at once. Real child processes (test/children/lock-app.ts), real
 * libSQL files, a real Azurite for drizzle().
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { count } from 'drizzle-orm';
import { azureBlobStore, type SnapshotStore } from 'drizzle-libsql-blob';
import { acquireFileLock, inspectFileLock, lockInfoPath, readLockHolder } from '../../src/local/file-lock.ts';
import { SyncError } from '../../src/errors.ts';
import { isCode, notes, open, readManifest } from '../helpers/fixtures.ts';
import { killAndWait, spawnTs, waitForLine } from '../helpers/child.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const fixture = useAzuriteAndTempDir('file-lock');
const CHILD = 'test/children/lock-app.ts';
/** "At once": well under the 1 s the brief allows (the contended acquire waits 100 ms for a passing reader). */
const AT_ONCE_MS = 1000;

/** Runs `attempt`, which must fail with LOCKED; returns the error and how long the refusal took. */
async function refused(attempt: () => Promise<unknown>): Promise<{ error: SyncError; ms: number }> {
  const started = performance.now();
  let error: unknown;
  try {
    await attempt();
  } catch (e) {
    error = e;
  }
  const ms = performance.now() - started;
  assert.ok(error instanceof SyncError, `expected SyncError LOCKED, got ${error === undefined ? 'success' : String(error)}`);
  assert.equal(error.code, 'LOCKED', error.message);
  assert.ok(ms < AT_ONCE_MS, `refused after ${ms.toFixed(0)} ms, not at once`);
  return { error, ms };
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await run();
  return { value, ms: performance.now() - started };
}

const children = new Set<ChildProcess>();
// A failed test must not leave a holder running: it would keep this test process alive.
after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

function holderChild(dbPath: string, mode: 'lock' | 'app', env: NodeJS.ProcessEnv = {}): { child: ChildProcess; ready: Promise<number> } {
  const child = spawnTs(CHILD, [dbPath, mode], env);
  children.add(child);
  return { child, ready: waitForLine(child, 'READY ').then((line) => Number(line.split(' ')[1])) };
}

function azure(container: string): SnapshotStore {
  return azureBlobStore({ connectionString: fixture.azurite.connectionString, container, prefix: 'app', createContainer: true });
}

describe('acquireFileLock', () => {
  test('a second acquire in the same process is refused at once, naming the holder; release lets it in', async () => {
    const dbPath = join(fixture.dir.path, 'same-process', 'app.db');
    await mkdir(join(fixture.dir.path, 'same-process'), { recursive: true });
    const first = await acquireFileLock(dbPath, 'test first');
    const holder = readLockHolder(dbPath);
    assert.equal(holder?.pid, process.pid);
    const { error } = await refused(() => acquireFileLock(dbPath, 'test second'));
    assert.match(error.message, new RegExp(`pid ${process.pid}\\b`));
    assert.match(error.message, new RegExp(`since ${holder!.since.replace(/\./g, '\\.')}`));
    assert.match(error.message, /test first/);
    assert.deepEqual(await inspectFileLock(dbPath), { held: true, holder });

    await first.release();
    await first.release(); // idempotent
    assert.equal(existsSync(lockInfoPath(dbPath)), false, 'the identity goes with the lock');
    assert.deepEqual(await inspectFileLock(dbPath), { held: false });
    const { value: again, ms } = await timed(() => acquireFileLock(dbPath, 'test again'));
    assert.ok(ms < AT_ONCE_MS, `re-taken after ${ms.toFixed(0)} ms`);
    await again.release();
  });

  test('another process holding it: refused at once with its pid; after kill -9 the lock is taken at once', async () => {
    const dir = join(fixture.dir.path, 'other-process');
    await mkdir(dir, { recursive: true });
    const dbPath = join(dir, 'app.db');
    const { child, ready } = holderChild(dbPath, 'lock');
    const pid = await ready;
    assert.equal(pid, child.pid);

    const { error } = await refused(() => acquireFileLock(dbPath, 'test parent'));
    assert.match(error.message, new RegExp(`pid ${pid}\\b`));
    assert.match(error.message, /test child, since \d{4}-\d\d-\d\dT/);
    assert.match(error.message, /Stop that process/);
    const state = await inspectFileLock(dbPath);
    assert.ok(state.held && state.holder?.pid === pid, `inspect reports the child: ${JSON.stringify(state)}`);

    const exit = await killAndWait(child, 'SIGKILL');
    assert.equal(exit.signal, 'SIGKILL');
    const { value: lock, ms } = await timed(() => acquireFileLock(dbPath, 'test parent'));
    assert.ok(ms < AT_ONCE_MS, `taken ${ms.toFixed(0)} ms after kill -9`);
    assert.equal(readLockHolder(dbPath)?.pid, process.pid, 'the new holder wrote its identity over the dead one');
    await lock.release();
  });
});

describe('drizzle() holds the file lock', () => {
  test('a second drizzle() in the same process is refused at once; the first keeps working; after close a new one opens', async () => {
    const store = azure('same-process-drizzle');
    const dbPath = join(fixture.dir.path, 'drizzle-same', 'app.db');
    const first = await open(dbPath, store);
    try {
      await first.insert(notes).values({ body: 'one' });
      const manifestBefore = await readManifest(store);
      const { error } = await refused(() => open(dbPath, store));
      assert.match(error.message, /this very process/);
      assert.match(error.message, /drizzle\(\)/);
      await first.insert(notes).values({ body: 'two' });
      assert.equal(first.$sync.status().lease.state, 'held', 'the refused opener did not touch the lease');
      assert.deepEqual(await readManifest(store), manifestBefore, 'the refused opener did not touch the store');
    } finally {
      await first.$sync.close();
    }

    const second = await open(dbPath, store);
    const [row] = await second.select({ n: count() }).from(notes);
    assert.equal(row!.n, 2);
    await second.$sync.close();
  });

  test('drizzle() in another process: refused at once here; after kill -9 of it the lock is free at once and drizzle() opens', async () => {
    const container = 'other-process-drizzle';
    const store = azure(container);
    const dbPath = join(fixture.dir.path, 'drizzle-other', 'app.db');
    const { child, ready } = holderChild(dbPath, 'app', { DLB_AZURE_CONNECTION_STRING: fixture.azurite.connectionString, DLB_AZURE_CONTAINER: container });
    const pid = await ready;
    const manifestBefore = await store.readSmall('manifest.json');

    const { error } = await refused(() => open(dbPath, store, { role: 'writer' }));
    assert.match(error.message, new RegExp(`pid ${pid} \\(drizzle\\(\\), since `));
    assert.equal((await store.readSmall('manifest.json'))?.etag, manifestBefore?.etag, 'the refused opener did not touch the store');

    await killAndWait(child, 'SIGKILL');
    const { value: lock, ms } = await timed(() => acquireFileLock(dbPath, 'test parent'));
    assert.ok(ms < AT_ONCE_MS, `lock taken ${ms.toFixed(0)} ms after kill -9`);
    await lock.release();
    // The dead writer's two unsaved rows are still in the file; its lease id in the sidecar is re-taken at once.
    const db = await open(dbPath, store, { role: 'writer' });
    const [row] = await db.select({ n: count() }).from(notes);
    assert.equal(row!.n, 5);
    await db.$sync.close();
  });
});

test('a failed start releases the lock (LEASE_HELD here): the next opener is not refused', async () => {
  const store = azure('failed-start');
  const writer = await open(join(fixture.dir.path, 'failed-start-a', 'app.db'), store);
  try {
    const dbPath = join(fixture.dir.path, 'failed-start-b', 'app.db');
    await assert.rejects(open(dbPath, store, { role: 'writer' }), isCode('LEASE_HELD'));
    assert.deepEqual(await inspectFileLock(dbPath), { held: false });
    const lock = await acquireFileLock(dbPath, 'test after');
    await lock.release();
  } finally {
    await writer.$sync.close();
  }
});
