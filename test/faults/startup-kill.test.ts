/**
 * Fault injection: a process killed during its start-up must not orphan the writer lease (issue 11,
 * bug 8: the lease was taken but its id not yet recorded, so a restart on the same disk came up as a
 * read replica for ~30 s, refusing writes with a false "another instance holds the writer lease").
 *
 * Each run, on a real Azurite:
 *  - the store holds a snapshot of N rows, written and flushed by a setup instance that then closed
 *    cleanly on the run's disk (later runs: by the previous run's restart, which also closes cleanly),
 *    or, for the empty-store runs, a new container holds nothing at all; the local disk holds that
 *    clean file, or no file (the local files are removed);
 *  - a real child process (test/children/startup-killer.ts; role 'auto', lease 15 s) sends itself
 *    SIGKILL, or SIGINT in the second test, at one exact point of its start-up, found by counting its
 *    store calls: after probe, after the first manifest read, after the prefix listing (empty store),
 *    after acquireLease, after the second manifest read (only where the lease created the manifest),
 *    after the chunk index read, after the first and after the last chunk download (file not installed yet), after drizzle() resolved, after the
 *    first write committed (not flushed). Points that a start-up does not reach (no download when the
 *    clean local file is the latest snapshot; no listing when there is a manifest) are not run;
 *  - the next start on the same disk (in this process; role 'auto', lease 15 s, so waiting for a lease
 *    to expire would show) must resolve within 1 s as the writer holding the lease, log
 *    `started as writer: <why>`, hold every row of the store's snapshot (and the killed instance's
 *    committed write), and accept a write that flush() makes durable.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { asc, sql } from 'drizzle-orm';
import { azureBlobStore, drizzle, type SnapshotStore, type SyncLogger } from 'drizzle-libsql-blob';
import { CREATE_NOTES, notes, open, schema } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';
import { faultSummary, spawnLineChild, type LineChild } from '../helpers/fault-report.ts';
import type { StartupKillOrder, StartupPoint } from '../children/startup-killer.ts';

const CHILD = 'test/children/startup-killer.ts';
const PREFIX = 'app';
/** Rows in the store's snapshot: ~850 bytes each, so the database spans several 64 KiB chunks. */
const ROWS = 250;
const CHUNK_SIZE = 1 << 16;
const LEASE_SEC = 15;
/** A restart that had to wait for the lease would take up to LEASE_SEC; one that re-takes it, milliseconds. */
const MAX_RESTART_MS = 1_000;
const KILLED_WRITE = 'written by the killed instance';

type Disk = 'clean-file' | 'no-file';
type StoreKind = 'snapshot' | 'empty';
interface Run {
  store: StoreKind;
  disk: Disk;
  point: StartupPoint;
}

// The probe and the first manifest read run side by side; a lease granted on the manifest just read
// (same ETag) needs no second read, so 'manifest-read-2' is reached only where the lease created it.
const BEFORE_DOWNLOAD: StartupPoint[] = ['probe', 'manifest-read-1', 'lease'];
const AFTER_START: StartupPoint[] = ['resolved', 'first-write'];
const RUNS: Run[] = [
  // The clean local file is the store's latest snapshot: start-up keeps it and downloads nothing.
  ...[...BEFORE_DOWNLOAD, ...AFTER_START].map((point) => ({ store: 'snapshot', disk: 'clean-file', point }) as Run),
  ...[...BEFORE_DOWNLOAD, 'chunk-index', 'chunk-first', 'chunk-last', ...AFTER_START].map((point) => ({ store: 'snapshot', disk: 'no-file', point }) as Run),
  // No manifest: start-up lists the prefix, creates an empty manifest to lease, starts empty.
  ...['probe', 'manifest-read-1', 'listing', 'lease', 'manifest-read-2', ...AFTER_START].map((point) => ({ store: 'empty', disk: 'no-file', point }) as Run),
];

const fixture = useAzuriteAndTempDir('fault-startup-kill');
let serviceClient: BlobServiceClient | undefined;
const service = () => (serviceClient ??= BlobServiceClient.fromConnectionString(fixture.azurite.connectionString));
const storeFor = (container: string): SnapshotStore => azureBlobStore({ connectionString: fixture.azurite.connectionString, container, prefix: PREFIX });
const syncOptions = { mode: 'incremental', chunkSize: CHUNK_SIZE } as const;

/** One run's store and disk, and the rows the store's latest snapshot holds, in id order. */
interface Prepared {
  container: string;
  dbPath: string;
  rows: string[];
}

const newContainer = async () => {
  const container = `sk-${randomBytes(5).toString('hex')}`;
  await service().createContainer(container);
  return container;
};

/**
 * The 'snapshot' runs of one test share a store: a setup instance writes ROWS rows, flushes and closes
 * cleanly on the disk, and from then on each run's restart (which closes cleanly after its flush) leaves
 * the store and the disk as the next run needs them. 'no-file' removes the local files first.
 */
async function snapshotStore(label: string): Promise<Prepared> {
  const container = await newContainer();
  const dbPath = join(fixture.dir.path, label, 'app.db');
  const db = await open(dbPath, storeFor(container), { lease: { durationSec: LEASE_SEC }, snapshot: syncOptions });
  const rows = Array.from({ length: ROWS }, (_, i) => `row ${i + 1} ${randomBytes(400).toString('hex')}`);
  await db.transaction(async (tx) => {
    for (const body of rows) await tx.insert(notes).values({ body });
  });
  assert.ok(await db.$sync.flush(), 'the setup snapshot');
  await db.$sync.close();
  return { container, dbPath, rows };
}

/** The store, every call forwarded, calling `taken` each time an acquireLease succeeds. */
function onLeaseTaken(inner: SnapshotStore, taken: () => void): SnapshotStore {
  const forwarded = Object.fromEntries(Object.entries(inner).map(([name, value]) => [name, typeof value === 'function' ? value.bind(inner) : value]));
  return {
    ...(forwarded as unknown as SnapshotStore),
    async acquireLease(key, leaseId, durationSec) {
      await inner.acquireLease(key, leaseId, durationSec);
      taken();
    },
  };
}

interface LogLine {
  level: string;
  fields: Record<string, unknown>;
  message: string | undefined;
}

function capturingLog(): { log: SyncLogger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (fields: object, message?: string) => void lines.push({ level, fields: fields as Record<string, unknown>, message });
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error') } };
}

/** Exits within `ms`, or rejects with the child's output. */
async function exitWithin(child: LineChild, ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the child did not exit within ${ms} ms of its kill point\n${child.tail()}`)), ms);
  });
  try {
    return await Promise.race([child.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

for (const signal of ['SIGKILL', 'SIGINT'] as const) {
  test(`${signal} at each start-up point: the next start on the same disk is the writer within ${MAX_RESTART_MS} ms with every row`, { timeout: 300_000 }, async (t) => {
    const startedAt = performance.now();
    const env = { FAULT_CONNECTION_STRING: fixture.azurite.connectionString };
    // Spawned one run ahead: module loading (~1.5 s) overlaps the previous run.
    const spawnChild = () => spawnLineChild(CHILD, [], env);
    let next: LineChild | undefined = spawnChild();
    let child: LineChild | undefined;
    let shared: Prepared | undefined;
    const restartMs: number[] = [];
    const leaseTimes: number[] = [];
    let writerAtOnce = 0;
    let done = 0;
    const history: string[] = [];
    const summary = (result: string) =>
      faultSummary(
        t,
        `startup-kill-${signal}`,
        {
          runs: RUNS.length,
          done,
          'writer-at-once': writerAtOnce,
          'max-lease-retaken-ms': Math.round(Math.max(0, ...leaseTimes.filter((ms) => !Number.isNaN(ms)))),
          'max-resolve-ms': Math.round(Math.max(0, ...restartMs)),
          'median-resolve-ms': Math.round([...restartMs].sort((a, b) => a - b)[Math.floor(restartMs.length / 2)] ?? 0),
          lost: 0,
          result,
        },
        startedAt,
      );
    try {
      for (const [i, run] of RUNS.entries()) {
        const label = `${signal}-${i}-${run.store}-${run.disk}-${run.point}`;
        child = next!;
        next = RUNS[i + 1] ? spawnChild() : undefined;
        let prepared: Prepared;
        if (run.store === 'snapshot') {
          prepared = shared ??= await snapshotStore(`${signal}-shared`);
          if (run.disk === 'no-file') rmSync(dirname(prepared.dbPath), { recursive: true, force: true });
        } else {
          prepared = { container: await newContainer(), dbPath: join(fixture.dir.path, label, 'app.db'), rows: [] };
        }
        await child.waitFor(/^LOADED$/, { timeoutMs: 30_000 });
        const order: StartupKillOrder = { dbPath: prepared.dbPath, container: prepared.container, prefix: PREFIX, point: run.point, signal };
        child.send(`GO ${JSON.stringify(order)}`);
        await child.waitFor(new RegExp(`^DYING ${run.point} ${signal}$`), { timeoutMs: 30_000 });
        const exit = await exitWithin(child, 20_000);
        assert.deepEqual(exit, { code: null, signal }, `${label}: the child did not end by its ${signal}\n${child.tail()}`);
        const killedWrote: boolean = child.lines.some((l) => l.startsWith('WROTE '));
        // The next child loads its modules meanwhile: on a 2-core machine that would slow the timed restart.
        await next?.waitFor(/^LOADED$/, { timeoutMs: 30_000 });

        // The restart: same disk, same options as the killed instance.
        const { log, lines } = capturingLog();
        const t0 = performance.now();
        let leaseMs = Number.NaN;
        const db = await drizzle({
          connection: { url: `file:${prepared.dbPath}` },
          schema,
          store: onLeaseTaken(storeFor(prepared.container), () => (leaseMs = performance.now() - t0)),
          log,
          role: 'auto',
          lease: { durationSec: LEASE_SEC },
          snapshot: { ...syncOptions, debounceMs: 50 },
          shutdown: { signals: false, timeoutMs: 10_000 },
        });
        const ms = performance.now() - t0;
        restartMs.push(ms);
        leaseTimes.push(leaseMs);
        try {
          const status = db.$sync.status();
          const started = lines.find((l) => l.message?.startsWith('started as '));
          const restored = lines.find((l) => l.message === 'restored database from snapshot')?.fields;
          const restoreMs = restored ? Number(restored.downloadMs) + Number(restored.verifyMs) : 0;
          const restoreNote = restored ? ` (restore ${Math.round(restoreMs)} ms)` : '';
          history.push(`${label}: lease ${Math.round(leaseMs)} ms, resolved ${Math.round(ms)} ms${restoreNote}, role ${status.role}, ${started?.message ?? 'no start-up line'}`);
          assert.equal(status.role, 'writer', `${label}: the restart is not the writer (${started?.message ?? 'no start-up line'})\n${child.tail()}`);
          assert.equal(status.lease.state, 'held', `${label}: the restart does not hold the lease`);
          assert.ok(leaseMs < MAX_RESTART_MS, `${label}: the restart took ${Math.round(leaseMs)} ms to re-take the lease (over ${MAX_RESTART_MS} ms)`);
          // From sources each restore boots tsx in its worker thread (0.6-0.8 s on this 2-core machine under
          // load): the restore's own time is reported by the library and left out of the bound.
          assert.ok(ms - restoreMs < MAX_RESTART_MS, `${label}: drizzle() took ${Math.round(ms)} ms to resolve (restore ${Math.round(restoreMs)} ms of it): it waited for something`);
          writerAtOnce++;
          // The start-up log line says the role and why: "<role>: <lease>; <local file action>".
          assert.ok(started, `${label}: no 'started as ...' log line`);
          assert.match(started.message!, /^started as writer: the writer lease was free \(or is ours\); \S.+$/, `${label}: start-up log line`);
          assert.equal(started.fields.role, 'writer');
          assert.equal(typeof started.fields.action, 'string');

          await db.run(sql.raw(CREATE_NOTES)); // a store that started empty has no table yet
          const bodies = (await db.select({ body: notes.body }).from(notes).orderBy(asc(notes.id))).map((r) => r.body);
          assert.deepEqual(bodies.slice(0, prepared.rows.length), prepared.rows, `${label}: rows of the store's snapshot missing or changed`);
          const expected: string[] = [...prepared.rows, ...(killedWrote ? [KILLED_WRITE] : [])];
          assert.deepEqual(bodies, expected, `${label}: the killed instance's committed write is ${killedWrote ? 'missing' : 'unexpected'}`);
          // A write succeeds and is made durable under the re-taken lease.
          const body = `written after the restart of ${label}`;
          await db.insert(notes).values({ body });
          const info = await db.$sync.flush();
          assert.ok(info, `${label}: flush after the restart published nothing`);
          prepared.rows = [...expected, body]; // all in the store now; the next run on this store expects them
        } finally {
          await db.$sync.close();
        }
        done++;
      }
      summary('ok');
      for (const line of history) t.diagnostic(line);
    } catch (error) {
      summary(`FAILED at run ${done}`);
      console.log(history.join('\n'));
      throw error;
    } finally {
      await child?.kill();
      await next?.kill();
    }
  });
}
