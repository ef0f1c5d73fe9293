/**
 * Fault injection: shutdown is bounded even when nothing is pending (issue 11, bug 4). With the store
 * silently dropping packets (a blackhole in the real TCP proxy between the library and a real
 * Azurite), a writer with pending commits exited within `shutdown.timeoutMs`, but an idle one took a
 * whole request timeout: its lease release, and a replica's stop (waiting for its poll in flight),
 * were not raced against the deadline.
 *
 * One idle writer (every commit flushed), one role-'auto' replica (the writer holds the lease) and one
 * role-'replica' instance, each on its own disk, all through the proxy with a 10 s request timeout
 * and `shutdown.timeoutMs` 2 s. The proxy turns to blackhole; once each replica has a store request in
 * flight (its poll: the lease attempt, or the manifest read), all three close() at once, and each must
 * return within timeoutMs + 1 s. Then the proxy heals and the writer restarts on its disk (role
 * 'auto', lease 15 s): whether the blackholed release reached the store or the lease was left to
 * expire, the restart is the writer at once with the same lease id, holds every row, and a fresh
 * restore straight from Azurite holds every row plus the restart's write.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { asc } from 'drizzle-orm';
import { azureBlobStore, drizzle, type DrizzleBlobConfig, type SnapshotStore } from 'drizzle-libsql-blob';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { startTcpProxy } from '../helpers/tcp-proxy.ts';
import { notes, open, schema, tempDir } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';
import { faultSummary } from '../helpers/fault-report.ts';

const PREFIX = 'app';
const SHUTDOWN_TIMEOUT_MS = 2_000;
/** Far above the shutdown bound: a step not raced against the deadline shows as a ~10 s close. */
const REQUEST_TIMEOUT_MS = 10_000;
const LEASE_SEC = 15;
const MAX_CLOSE_MS = SHUTDOWN_TIMEOUT_MS + 1_000;
const MAX_RESTART_MS = 1_000;

const fixture = useAzuriteAndTempDir('fault-idle-shutdown');

/**
 * The store, every call forwarded; `busySince(t)` resolves (with the call's name) once a request that
 * started at or after `t` (performance.now()) is in flight: now, or when the next one starts. Once the
 * blackhole is on, such a request never returns.
 */
function watched(inner: SnapshotStore): SnapshotStore & { busySince(t: number): Promise<string> } {
  const forwarded = Object.fromEntries(Object.entries(inner).map(([name, value]) => [name, typeof value === 'function' ? value.bind(inner) : value]));
  const inFlight = new Map<symbol, { name: string; at: number }>();
  let waiters: Array<(name: string) => void> = [];
  const busySince = (t: number) =>
    new Promise<string>((resolve) => {
      const started = [...inFlight.values()].find((call) => call.at >= t);
      if (started) resolve(started.name);
      else waiters.push(resolve);
    });
  const store = { ...(forwarded as unknown as SnapshotStore), busySince };
  for (const name of ['probe', 'readSmall', 'writeSmall', 'acquireLease', 'renewLease', 'releaseLease', 'list', 'downloadToFile', 'uploadBuffer', 'uploadFile', 'delete'] as const) {
    const call = (inner[name] as (...args: unknown[]) => Promise<unknown>).bind(inner);
    (store as Record<string, unknown>)[name] = (...args: unknown[]) => {
      const id = Symbol(name);
      inFlight.set(id, { name, at: performance.now() });
      const woken = waiters;
      waiters = [];
      for (const wake of woken) wake(name);
      return call(...args).finally(() => inFlight.delete(id));
    };
  }
  return store;
}

async function timed(close: () => Promise<void>): Promise<{ ms: number; error?: string }> {
  const t0 = performance.now();
  try {
    await close();
    return { ms: performance.now() - t0 };
  } catch (error) {
    return { ms: performance.now() - t0, error: String(error) };
  }
}

/** Within `ms`, or rejects: a step the fix no longer bounds must fail the test, not hang it. */
function bounded<T>(what: string, step: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    step.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
    }),
  ]);
}

test(`with the store blackholed, an idle writer and two replicas close within shutdown.timeoutMs + 1 s; the writer restarts at once after healing`, { timeout: 120_000 }, async (t) => {
  const startedAt = performance.now();
  const service = BlobServiceClient.fromConnectionString(fixture.azurite.connectionString);
  const container = `idle-${randomBytes(4).toString('hex')}`;
  await service.createContainer(container);
  const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: fixture.azurite.port });
  const viaProxy = fixture.azurite.connectionString.replace(`:${fixture.azurite.port}/`, `:${proxy.port}/`);
  const proxied = () => watched(azureBlobStore({ connectionString: viaProxy, container, prefix: PREFIX, requestTimeoutMs: REQUEST_TIMEOUT_MS }));
  const common = {
    lease: { durationSec: LEASE_SEC },
    shutdown: { signals: false, timeoutMs: SHUTDOWN_TIMEOUT_MS },
    retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 20 },
  } satisfies Partial<DrizzleBlobConfig<typeof schema>>;
  const writerPath = join(fixture.dir.path, 'writer', 'app.db');
  const fields: Record<string, string | number> = {};
  const summary = (result: string) => faultSummary(t, 'idle-shutdown-blackhole', { ...fields, result }, startedAt);

  try {
    const writer = await open(writerPath, proxied(), { ...common, role: 'auto' });
    const written = Array.from({ length: 20 }, (_, i) => `row ${i + 1}`);
    for (const body of written) await writer.insert(notes).values({ body });
    assert.ok(await writer.$sync.flush(), 'the writer published its rows');
    assert.equal(writer.$sync.status().role, 'writer');
    const leaseId = (JSON.parse(readFileSync(`${writerPath}.sync.json`, 'utf8')) as { leaseId?: string }).leaseId;
    assert.ok(leaseId, 'the sidecar records the lease id');

    const replicaOptions = (dir: string, role: 'auto' | 'replica', store: SnapshotStore) =>
      drizzle({ connection: { url: `file:${join(fixture.dir.path, dir, 'app.db')}` }, schema, store, log: false, ...common, role, replica: { pollMs: 50 } });
    const autoStore = proxied();
    const replicaStore = proxied();
    const auto = await replicaOptions('auto', 'auto', autoStore);
    const replica = await replicaOptions('replica', 'replica', replicaStore);
    assert.equal(auto.$sync.status().role, 'replica', "role 'auto' while the writer holds the lease");
    assert.equal(replica.$sync.status().role, 'replica');
    // Idle: nothing pending anywhere.
    for (const db of [writer, auto, replica]) assert.equal(db.$sync.status().pendingCommits, 0);

    proxy.setMode('blackhole');
    const blackholedAt = performance.now();
    // Each replica's poll (every 50 ms) has a request in flight that the store never answers.
    const polls = Promise.all([autoStore.busySince(blackholedAt), replicaStore.busySince(blackholedAt)]);
    const [autoCall, replicaCall] = await bounded('a replica poll in flight', polls, 5_000);
    fields['in-flight'] = `auto:${autoCall},replica:${replicaCall}`;

    const [w, a, r] = await Promise.all([timed(() => writer.$sync.close()), timed(() => auto.$sync.close()), timed(() => replica.$sync.close())]);
    Object.assign(fields, { 'timeout-ms': SHUTDOWN_TIMEOUT_MS, 'writer-close-ms': Math.round(w.ms), 'auto-close-ms': Math.round(a.ms), 'replica-close-ms': Math.round(r.ms) });
    assert.ok(w.ms < MAX_CLOSE_MS, `the idle writer's close() took ${Math.round(w.ms)} ms (bound ${MAX_CLOSE_MS} ms)`);
    assert.ok(a.ms < MAX_CLOSE_MS, `the role-'auto' replica's close() took ${Math.round(a.ms)} ms (bound ${MAX_CLOSE_MS} ms)`);
    assert.ok(r.ms < MAX_CLOSE_MS, `the role-'replica' instance's close() took ${Math.round(r.ms)} ms (bound ${MAX_CLOSE_MS} ms)`);
    // Idle: nothing was lost, so none of them reports an error from close() (a replica's abandoned poll
    // is not a failed "final snapshot").
    assert.deepEqual([w.error, a.error, r.error], [undefined, undefined, undefined]);

    // The release never reached the store (blackholed): the lease is left to expire, or was released.
    const manifestBlob = service.getContainerClient(container).getBlobClient(`${PREFIX}/${MANIFEST_KEY}`);
    fields['lease-after-close'] = (await manifestBlob.getProperties()).leaseState ?? 'unknown';

    proxy.setMode('pass');
    const t0 = performance.now();
    const restarted = await drizzle({ connection: { url: `file:${writerPath}` }, schema, store: proxied(), log: false, ...common, role: 'auto' });
    const restartMs = performance.now() - t0;
    fields['restart-ms'] = Math.round(restartMs);
    try {
      assert.equal(restarted.$sync.status().role, 'writer', `the restart on the writer's disk is not the writer (lease ${fields['lease-after-close']})`);
      assert.ok(restartMs < MAX_RESTART_MS, `the restart took ${Math.round(restartMs)} ms`);
      const sidecar = JSON.parse(readFileSync(`${writerPath}.sync.json`, 'utf8')) as { leaseId?: string };
      assert.equal(sidecar.leaseId, leaseId, 'the restart uses the same lease id');
      const bodies = (await restarted.select({ body: notes.body }).from(notes).orderBy(asc(notes.id))).map((row) => row.body);
      assert.deepEqual(bodies, written, 'the restarted writer holds every row');
      await restarted.insert(notes).values({ body: 'after the restart' });
      assert.ok(await restarted.$sync.flush(), 'the restart publishes');
    } finally {
      await restarted.$sync.close();
    }

    // Straight from Azurite, into a fresh directory: every row is in the store.
    const fresh = await tempDir('idle-shutdown-fresh');
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
        const bodies = (await db.select({ body: notes.body }).from(notes).orderBy(asc(notes.id))).map((row) => row.body);
        assert.deepEqual(bodies, [...written, 'after the restart'], 'a fresh restore holds every row');
        fields.lost = written.length + 1 - bodies.length;
      } finally {
        await db.$sync.close();
      }
    } finally {
      await fresh.cleanup();
    }
    summary('ok');
  } catch (error) {
    summary('FAILED');
    throw error;
  } finally {
    await proxy.close();
  }
});
