/**
 * Fault injection, part 1b: a real TCP proxy between the library and a real Azurite that drops,
 * resets, swallows (blackhole) or delays connections.
 *
 * For each fault mode, one writer (in this process) goes through the proxy:
 *  - before: one acknowledged snapshot with the proxy passing;
 *  - during the fault: commits keep succeeding, each well under a request timeout (they never wait
 *    for the store); snapshots fail and are retried by the scheduler (at least 3 'snapshot-error'
 *    events); flush() rejects with a transient STORE_UNREACHABLE instead of resolving; nothing
 *    reaches the store (manifest bytes, ETag and blob list unchanged);
 *  - healed: the scheduler's own retry lands the pending snapshot (a 'snapshot' event with no new
 *    commit and no flush() call), then flush() resolves and a fresh read-only restore straight from
 *    Azurite holds every row.
 * With a 300 ms delay per chunk and a request timeout above it, snapshots are slow but land and
 * flush() resolves while the delay is still on. A restore through a delaying proxy completes; a restore
 * through a dead proxy (nothing listening, a blackhole, or a proxy that starts resetting once the
 * snapshot download begins) fails with STORE_UNREACHABLE and leaves no local file behind.
 * Across the whole scenario: no unhandled rejection, and the event loop never stalls 100 ms or more
 * (perf_hooks' delay histogram and a 10 ms interval's drift; the worst stalls are reported by step).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { BlobServiceClient } from '@azure/storage-blob';
import { asc, sql } from 'drizzle-orm';
import { azureBlobStore, drizzle, SyncError, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { startTcpProxy, type ProxyMode, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { nextEvent, notes, open, schema, tempDir } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';
import { faultSummary, startLoopMonitor, trapUnhandledRejections } from '../helpers/fault-report.ts';

const MAX_LOOP_STALL_MS = 100;
/** A commit that waited for the failing store would take at least one request timeout (250-500 ms). */
const MAX_COMMIT_MS = 200;
/** Names the step running now for the event-loop monitor's report (set by the scenario). */
let mark: (label: string) => void = () => {};
const PREFIX = 'app';

const fixture = useAzuriteAndTempDir('fault-net');
let serviceClient: BlobServiceClient | undefined;
/** Made on first use, inside a test: Azurite is up by then. */
const service = () => (serviceClient ??= BlobServiceClient.fromConnectionString(fixture.azurite.connectionString));

const viaProxy = (proxy: TcpProxy | { port: number }) => fixture.azurite.connectionString.replace(`:${fixture.azurite.port}/`, `:${proxy.port}/`);

async function newContainer(label: string): Promise<string> {
  const name = `${label}-${randomBytes(4).toString('hex')}`;
  await service().createContainer(name);
  return name;
}

/** The store as Azurite holds it: manifest bytes + ETag and every blob name. */
async function snapshotOfStore(container: string): Promise<string> {
  const client = service().getContainerClient(container);
  const names: string[] = [];
  for await (const blob of client.listBlobsFlat()) names.push(`${blob.name}:${blob.properties.etag}`);
  const manifest = client.getBlobClient(`${PREFIX}/${MANIFEST_KEY}`);
  const body = (await manifest.exists()) ? (await manifest.downloadToBuffer()).toString('base64') : '-';
  return JSON.stringify({ names: names.sort(), body });
}

/** Opens the store's latest snapshot read-only in a fresh directory, straight from Azurite, and returns the note bodies. */
async function restoredBodies(container: string): Promise<string[]> {
  const fresh = await tempDir('fault-net-fresh');
  try {
    const db = await drizzle({
      connection: { url: `file:${join(fresh.path, 'app.db')}` },
      schema,
      store: azureBlobStore({ connectionString: fixture.azurite.connectionString, container, prefix: PREFIX }),
      log: false,
      restore: 'required',
      role: 'replica',
      shutdown: { signals: false },
    });
    try {
      const restored = db.$sync.status().restoredFrom as { skipped?: unknown[] } | null;
      assert.ok(restored, 'restored from the store');
      assert.deepEqual(restored.skipped ?? [], [], 'a snapshot failed verification and was skipped');
      const [integrity] = (await db.all(sql`PRAGMA integrity_check`)) as Array<Record<string, unknown>>;
      assert.equal(Object.values(integrity ?? {})[0], 'ok');
      return (await db.select({ body: notes.body }).from(notes).orderBy(asc(notes.id))).map((r) => r.body);
    } finally {
      await db.$sync.close();
    }
  } finally {
    await fresh.cleanup();
  }
}

const isUnreachable = (error: unknown) => {
  assert.ok(error instanceof SyncError, `expected a SyncError, got ${String(error)}`);
  assert.equal(error.code, 'STORE_UNREACHABLE', error.message);
  assert.equal(error.transient, true);
  return true;
};

interface Totals {
  faults: number;
  acked: number;
  lost: number;
  snapshotFailures: number;
  maxCommitMs: number;
}

interface OutageCase {
  name: string;
  mode: ProxyMode;
  requestTimeoutMs: number;
}

const OUTAGES: OutageCase[] = [
  { name: 'drop', mode: 'drop', requestTimeoutMs: 500 },
  { name: 'reset', mode: 'reset', requestTimeoutMs: 500 },
  { name: 'blackhole', mode: 'blackhole', requestTimeoutMs: 500 },
  // Slower than the request timeout: every request times out although the network "works".
  { name: 'delay-300ms-over-timeout', mode: { delayMs: 300 }, requestTimeoutMs: 250 },
];

async function outage(c: OutageCase, totals: Totals): Promise<string> {
  const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: fixture.azurite.port });
  const container = await newContainer(`net-${c.name.slice(0, 10)}`);
  const store = azureBlobStore({ connectionString: viaProxy(proxy), container, prefix: PREFIX, requestTimeoutMs: c.requestTimeoutMs });
  const db = await open(join(fixture.dir.path, c.name, 'app.db'), store, {
    snapshot: { debounceMs: 20, retryBaseMs: 50, retryMaxMs: 200 },
    retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 20 },
  });
  const written: string[] = [];
  let maxCommitMs = 0;
  const insert = async (body: string) => {
    const t0 = performance.now();
    await db.insert(notes).values({ body });
    maxCommitMs = Math.max(maxCommitMs, performance.now() - t0);
    written.push(body);
  };
  try {
    await insert('before');
    assert.ok(await db.$sync.flush(), 'baseline snapshot');
    const storeBefore = await snapshotOfStore(container);
    const failedBefore = db.$sync.status().snapshotsFailed;

    proxy.setMode(c.mode);
    totals.faults++;
    // Commits keep succeeding; each round waits for the next failed (re)try of the snapshot.
    for (let round = 0; round < 3; round++) {
      const failed = nextEvent(db.$sync, 'snapshot-error', undefined, 20_000);
      for (let i = 0; i < 5; i++) await insert(`${c.name} ${round}.${i}`);
      const error = await failed;
      assert.equal(error.code, 'STORE_UNREACHABLE', error.message);
    }
    await assert.rejects(db.$sync.flush(), isUnreachable, 'flush() must not resolve while the store is unreachable');
    const during = db.$sync.status();
    assert.ok(during.pendingCommits >= 15, `pending commits: ${during.pendingCommits}`);
    assert.ok(during.snapshotsFailed - failedBefore >= 4, `failed snapshots: ${during.snapshotsFailed - failedBefore}`);
    assert.equal(during.lastError?.code, 'STORE_UNREACHABLE');
    assert.notEqual(during.state, 'stopped');
    assert.equal(await snapshotOfStore(container), storeBefore, 'nothing may reach the store during the outage');

    // Heal: the scheduler's pending retry lands it, without a new commit or a flush() call.
    const landed = nextEvent(db.$sync, 'snapshot', undefined, 20_000);
    proxy.setMode('pass');
    const info = await landed;
    assert.ok(info.uploaded, 'the healed snapshot uploaded');
    await db.$sync.flush();
    const after = db.$sync.status();
    assert.equal(after.pendingCommits, 0);
    const failures = after.snapshotsFailed - failedBefore;

    const restored = await restoredBodies(container);
    const lost = written.filter((b) => !restored.includes(b)).length;
    assert.equal(lost, 0, `rows lost: ${written.filter((b) => !restored.includes(b)).join(', ')}`);
    assert.deepEqual(restored, written);
    totals.acked += written.length;
    totals.lost += lost;
    totals.snapshotFailures += failures;
    totals.maxCommitMs = Math.max(totals.maxCommitMs, maxCommitMs);
    return `${c.name}: ${written.length} rows, ${failures} failed snapshot attempts, max commit ${maxCommitMs.toFixed(1)} ms`;
  } finally {
    proxy.setMode('pass');
    await db.$sync.close().catch(() => undefined);
    await proxy.close();
  }
}

/** A 300 ms delay per chunk under a 2 s request timeout: slow, but snapshots land and flush() resolves. */
async function slowButWorking(totals: Totals): Promise<string> {
  const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: fixture.azurite.port });
  const container = await newContainer('net-delay');
  const store = azureBlobStore({ connectionString: viaProxy(proxy), container, prefix: PREFIX, requestTimeoutMs: 2_000 });
  const db = await open(join(fixture.dir.path, 'delay', 'app.db'), store, {
    snapshot: { debounceMs: 20, retryBaseMs: 50, retryMaxMs: 200 },
    retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 20 },
  });
  const written: string[] = [];
  let maxCommitMs = 0;
  try {
    await db.$sync.flush();
    proxy.setMode({ delayMs: 300 });
    totals.faults++;
    const failedBefore = db.$sync.status().snapshotsFailed;
    const started = performance.now();
    for (let i = 0; i < 5; i++) {
      await db.insert(notes).values({ body: `slow first ${i}` });
      written.push(`slow first ${i}`);
    }
    // Keep committing (one row every 20 ms) while the flush crawls through the delay.
    let flushed = false;
    const flush = db.$sync.flush().finally(() => (flushed = true));
    for (let i = 0; !flushed; i++) {
      assert.ok(performance.now() - started < 30_000, 'flush() did not resolve within 30 s');
      const t0 = performance.now();
      await db.insert(notes).values({ body: `slow ${i}` });
      maxCommitMs = Math.max(maxCommitMs, performance.now() - t0);
      written.push(`slow ${i}`);
      await delay(20);
    }
    assert.ok(await flush, 'flush() resolved with the snapshot that covers the first rows');
    const ms = performance.now() - started;
    assert.ok(ms >= 600, `the flush took ${ms.toFixed(0)} ms: the delay was not in effect`);
    await db.$sync.flush(); // the rows written meanwhile, still through the delay
    assert.equal(db.$sync.status().snapshotsFailed - failedBefore, 0, 'a slow network within the timeout must not fail snapshots');
    assert.equal(db.$sync.status().pendingCommits, 0);
    proxy.setMode('pass');
    const restored = await restoredBodies(container);
    assert.deepEqual(restored, written);
    totals.acked += written.length;
    totals.maxCommitMs = Math.max(totals.maxCommitMs, maxCommitMs);
    return `delay-300ms: first flush ${ms.toFixed(0)} ms, ${written.length} rows, max commit ${maxCommitMs.toFixed(1)} ms`;
  } finally {
    proxy.setMode('pass');
    await db.$sync.close().catch(() => undefined);
    await proxy.close();
  }
}

/** A store holding one snapshot of `rows` notes, written straight to Azurite. */
async function seeded(label: string, rows: number): Promise<{ container: string; bodies: string[] }> {
  const container = await newContainer(label);
  const store = azureBlobStore({ connectionString: fixture.azurite.connectionString, container, prefix: PREFIX });
  mark(`seed ${label}: open`);
  const db = await open(join(fixture.dir.path, `${label}-seed`, 'app.db'), store);
  mark(`seed ${label}: insert`);
  const bodies = Array.from({ length: rows }, (_, i) => `seed ${i} ${randomBytes(24).toString('hex')}`);
  for (let i = 0; i < rows; i += 100) {
    await db.insert(notes).values(bodies.slice(i, i + 100).map((body) => ({ body })));
    // Local writes complete synchronously underneath: without a yield this setup loop alone would
    // hold the event loop for its whole length and be reported as a stall.
    await new Promise((resolve) => setImmediate(resolve));
  }
  mark(`seed ${label}: close`);
  await db.$sync.close();
  mark(`after seed ${label}`);
  return { container, bodies };
}

async function restoreThroughDelay(totals: Totals): Promise<string> {
  const { container, bodies } = await seeded('net-rdelay', 2_000);
  const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: fixture.azurite.port });
  proxy.setMode({ delayMs: 300 });
  totals.faults++;
  const target = join(fixture.dir.path, 'restore-delay', 'app.db');
  try {
    const started = performance.now();
    mark('restore through delay: drizzle()');
    const db = await drizzle({
      connection: { url: `file:${target}` },
      schema,
      store: azureBlobStore({ connectionString: viaProxy(proxy), container, prefix: PREFIX, requestTimeoutMs: 2_000 }),
      log: false,
      restore: 'required',
      role: 'replica',
      shutdown: { signals: false },
    });
    const ms = performance.now() - started;
    try {
      assert.ok(db.$sync.status().restoredFrom, 'restored from the store');
      assert.ok(ms >= 900, `the restore took ${ms.toFixed(0)} ms: the delay was not in effect`);
      mark('restore through delay: select');
      assert.deepEqual((await db.select({ body: notes.body }).from(notes).orderBy(asc(notes.id))).map((r) => r.body), bodies);
    } finally {
      mark('restore through delay: close');
      await db.$sync.close();
    }
    return `restore through a 300 ms delay: ${ms.toFixed(0)} ms, ${bodies.length} rows`;
  } finally {
    await proxy.close();
  }
}

type DeadHow = 'nothing-listening' | 'blackhole' | 'reset-during-download';

async function restoreThroughDeadProxy(how: DeadHow, totals: Totals): Promise<string> {
  const { container } = await seeded(`net-dead-${how.slice(0, 5)}`, 2_000);
  const before = await snapshotOfStore(container);
  const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: fixture.azurite.port });
  const port = proxy.port;
  if (how === 'nothing-listening') await proxy.close();
  if (how === 'blackhole') proxy.setMode('blackhole');
  totals.faults++;
  const local = join(fixture.dir.path, `restore-dead-${how}`);
  const inner = azureBlobStore({ connectionString: viaProxy({ port }), container, prefix: PREFIX, requestTimeoutMs: 500 });
  let downloads = 0;
  // The real store; only the moment of the fault is chosen: the proxy starts resetting as the snapshot download begins.
  const store: SnapshotStore =
    how === 'reset-during-download'
      ? {
          ...inner,
          download(key) {
            downloads++;
            proxy.setMode('reset');
            return inner.download(key);
          },
        }
      : inner;
  try {
    const started = performance.now();
    mark(`restore through dead proxy (${how}): drizzle()`);
    await assert.rejects(
      drizzle({
        connection: { url: `file:${join(local, 'app.db')}` },
        schema,
        store,
        log: false,
        restore: 'required',
        retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 20 },
        shutdown: { signals: false },
      }),
      isUnreachable,
    );
    const ms = performance.now() - started;
    if (how === 'reset-during-download') assert.ok(downloads >= 1, 'the download was reached');
    // The file lock (<db>.lock, src/local/file-lock.ts) stays: it is never deleted, and means nothing without a holder.
    const left = (await readdir(local)).filter((name) => !name.endsWith('.lock'));
    if (how === 'reset-during-download' && left.includes('app.db.sync.json')) {
      // The lease was taken before the download broke, and its release could not reach the store: the
      // sidecar keeps the lease id, and only that (no database, no position), so a restart on this disk
      // re-takes the lease at once instead of waiting for it to expire.
      const sidecar = JSON.parse(await readFile(join(local, 'app.db.sync.json'), 'utf8')) as { seq: number; generation: string; leaseId?: string };
      assert.deepEqual({ seq: sidecar.seq, generation: sidecar.generation, hasLeaseId: typeof sidecar.leaseId === 'string' }, { seq: 0, generation: '', hasLeaseId: true });
      left.splice(left.indexOf('app.db.sync.json'), 1);
    }
    assert.deepEqual(left, [], 'a failed restore must leave no local file behind');
    assert.equal(await snapshotOfStore(container).then((s) => JSON.parse(s).body), JSON.parse(before).body, 'manifest untouched');
    return `restore through a dead proxy (${how}): STORE_UNREACHABLE after ${ms.toFixed(0)} ms, local dir empty`;
  } finally {
    if (how !== 'nothing-listening') await proxy.close();
  }
}

test('network faults through a TCP proxy: commits continue, snapshots retry and land once healed, restores fail closed', { timeout: 240_000 }, async (t) => {
  const startedAt = performance.now();
  const unhandled = trapUnhandledRejections();
  // First use in this process, before the monitor: under tsx the library's lazily imported modules are
  // transpiled on the main thread when first reached (100-300 ms each time in a profile), which the
  // packaged JavaScript does not pay, and the SDK loads Node's bundled undici on its first request.
  const warm = await seeded('warm-up', 200);
  const warmDb = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'warm-up-restore', 'app.db')}` }, schema, store: azureBlobStore({ connectionString: fixture.azurite.connectionString, container: warm.container, prefix: PREFIX }), log: false, restore: 'required', role: 'replica', shutdown: { signals: false } });
  await warmDb.$sync.close();
  const loop = startLoopMonitor();
  mark = (label) => loop.mark(label);
  const totals: Totals = { faults: 0, acked: 0, lost: 0, snapshotFailures: 0, maxCommitMs: 0 };
  let runs = 0;
  const only = process.env.FAULT_ONLY; // development aid: run the sub-scenarios whose name contains this
  const sub = async (name: string, fn: () => Promise<string>) => {
    await t.test(name, { skip: only !== undefined && !name.includes(only), timeout: 60_000 }, async (st) => {
      mark(name);
      const detail = await fn();
      st.diagnostic(detail);
      runs++;
    });
  };
  try {
    for (const c of OUTAGES) await sub(`${c.name}: commits continue, snapshots fail and retry, heal lands them`, () => outage(c, totals));
    await sub('delay 300 ms within the timeout: snapshots slow but land, flush resolves', () => slowButWorking(totals));
    await sub('restore through a 300 ms delaying proxy completes', () => restoreThroughDelay(totals));
    for (const how of ['nothing-listening', 'blackhole', 'reset-during-download'] as const) {
      await sub(`restore through a dead proxy (${how}) fails STORE_UNREACHABLE, no local db`, () => restoreThroughDeadProxy(how, totals));
    }
  } finally {
    unhandled.stop();
  }
  const stall = loop.stop();
  t.diagnostic(`worst event-loop stalls: ${stall.worst.join('; ') || 'none over 20 ms'}`);
  const expected = OUTAGES.length + 5;
  faultSummary(
    t,
    'network',
    {
      runs: only === undefined ? expected : runs,
      faults: totals.faults,
      passed: runs,
      acked: totals.acked,
      lost: totals.lost,
      'snapshot-failures-retried': totals.snapshotFailures,
      'max-commit-ms': totals.maxCommitMs.toFixed(1),
      'max-loop-stall-ms': stall.maxStallMs.toFixed(1),
      unhandled: unhandled.reasons.length,
    },
    startedAt,
  );
  if (only === undefined) assert.equal(runs, expected, 'every sub-scenario passed');
  assert.deepEqual(unhandled.reasons, [], 'no unhandled rejection');
  assert.ok(
    stall.maxStallMs < MAX_LOOP_STALL_MS,
    `the event loop stalled ${stall.maxStallMs.toFixed(1)} ms (histogram ${stall.histogramMaxMs.toFixed(1)}, drift ${stall.driftMaxMs.toFixed(1)}); worst: ${stall.worst.join('; ')}`,
  );
  assert.ok(totals.maxCommitMs < MAX_COMMIT_MS, `a commit took ${totals.maxCommitMs.toFixed(1)} ms: commits must not wait for the store`);
  assert.equal(totals.lost, 0);
});
