import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type DataPoint,
  type Histogram,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { directoryStore, drizzle, SyncError, type SnapshotInfo, type Leaser, type SnapshotStore, type SyncHandle, type SyncStatus } from 'drizzle-libsql-blob';
import { METER_NAME, METRIC, SyncMetrics, metricAttributes } from '../../src/telemetry/metrics.ts';
import { CREATE_NOTES, nextEvent, notes, open, schema, tempDir } from '../helpers/fixtures.ts';

/** An SDK pipeline collected on demand: forceFlush() exports one cumulative collection to memory. */
function sdk() {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const provider = new MeterProvider({ readers: [reader] });
  return {
    provider,
    async collect(): Promise<Collected> {
      await reader.forceFlush();
      const last = exporter.getMetrics().at(-1);
      exporter.reset();
      return new Collected(last?.scopeMetrics ?? []);
    },
  };
}

class Collected {
  constructor(readonly scopes: Array<{ scope: { name: string; version?: string }; metrics: MetricData[] }>) {}

  metric(name: string): MetricData | undefined {
    return this.scopes.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
  }

  points(name: string, match: Record<string, unknown> = {}): DataPoint<unknown>[] {
    const points = (this.metric(name)?.dataPoints ?? []) as DataPoint<unknown>[];
    return points.filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v));
  }

  /** The one data point's value (a number for sums and gauges); undefined when there is none. */
  value(name: string, match: Record<string, unknown> = {}): number | undefined {
    const points = this.points(name, match);
    assert.ok(points.length <= 1, `${name} ${JSON.stringify(match)}: ${points.length} points ${JSON.stringify(points.map((p) => p.attributes))}`);
    return points[0]?.value as number | undefined;
  }

  histogram(name: string, match: Record<string, unknown> = {}): Histogram | undefined {
    const points = this.points(name, match);
    assert.ok(points.length <= 1, `${name} ${JSON.stringify(match)}: ${points.length} points`);
    return points[0]?.value as Histogram | undefined;
  }
}

/** A store whose uploads fail with a non-transient SyncError while `fail` is set (a real store underneath). */
function failingStore(inner: SnapshotStore): SnapshotStore & { fail: boolean } {
  const store = {
    ...inner,
    fail: false,
    async uploadFile(key: string, filePath: string, metadata?: Record<string, string>) {
      if (store.fail) throw new SyncError('STORE_AUTH', 'upload refused by the test store');
      return inner.uploadFile(key, filePath, metadata);
    },
    async uploadBuffer(key: string, body: Buffer) {
      if (store.fail) throw new SyncError('STORE_AUTH', 'upload refused by the test store');
      return inner.uploadBuffer(key, body);
    },
  };
  return store;
}

/** Only explicit flush() snapshots; a failed one is not retried during the test. */
const MANUAL = { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000, maxCommits: 1_000_000, retryBaseMs: 600_000, retryMaxMs: 600_000 } };

let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('metrics')));
after(() => dir.cleanup());

test('snapshot counters, duration, bytes and the gauges follow a real database', async (t) => {
  const { provider, collect } = sdk();
  t.after(() => provider.shutdown());
  const store = directoryStore({ dir: join(dir.path, 'real', 'store') });
  const dbPath = join(dir.path, 'real', 'app.db');
  const db = await open(dbPath, store, MANUAL);
  t.after(() => db.$sync.close().catch(() => undefined));
  const common = { store: store.location, db: 'app.db' };
  assert.deepEqual(metricAttributes(store.location, dbPath), common);
  const sm = new SyncMetrics({ meter: provider.getMeter('test'), attributes: metricAttributes(store.location, dbPath) });
  const unbind = sm.bind(db.$sync);
  t.after(unbind);

  // Before any snapshot: CREATE TABLE is pending, no snapshot age, no snapshot counted.
  let c = await collect();
  const pendingAtStart = db.$sync.status().pendingCommits;
  assert.ok(pendingAtStart > 0);
  assert.equal(c.value(METRIC.pendingCommits, common), pendingAtStart);
  assert.deepEqual(c.points(METRIC.lastSnapshotAge), [], 'no age before the first snapshot');
  assert.deepEqual(c.points(METRIC.snapshots), []);
  assertLease(t, c, db.$sync.status(), common);

  await db.insert(notes).values([{ body: 'a' }, { body: 'b' }, { body: 'c' }]);
  c = await collect();
  assert.equal(c.value(METRIC.pendingCommits, common), pendingAtStart + 1, 'one batch insert, one commit, not yet snapshotted');

  const info = await db.$sync.flush();
  assert.ok(info?.uploaded);
  c = await collect();
  const afterFirst = Date.now();
  assert.equal(c.value(METRIC.snapshots, { ...common, outcome: 'ok', uploaded: true }), 1);
  assert.deepEqual(c.points(METRIC.snapshots, { outcome: 'error' }), []);
  const duration = c.histogram(METRIC.snapshotDuration, { ...common, uploaded: true });
  assert.equal(duration?.count, 1);
  assert.ok(Math.abs(duration!.sum! - info.durationMs / 1000) < 1e-9, `${duration!.sum} s vs ${info.durationMs} ms`);
  assert.equal(c.metric(METRIC.snapshotDuration)?.descriptor.unit, 's');
  assert.equal(c.value(METRIC.snapshotCompressedSize, common), info.compressedBytes);
  assert.equal(c.value(METRIC.snapshotRawSize, common), info.bytes);
  assert.ok(info.compressedBytes > 0 && info.bytes > 0);
  assert.equal(c.metric(METRIC.snapshotCompressedSize)?.descriptor.unit, 'By');
  assert.equal(c.value(METRIC.pendingCommits, common), 0, 'nothing pending after flush');
  const age = c.value(METRIC.lastSnapshotAge, common);
  assert.ok(age !== undefined && age >= 0 && age <= (afterFirst - Date.parse(info.at)) / 1000, `age ${age}`);
  assertLease(t, c, db.$sync.status(), common);

  // A commit that leaves the content identical: counted as a snapshot with uploaded=false and no bytes.
  await db.run(CREATE_NOTES);
  const unchanged = await db.$sync.flush();
  assert.equal(unchanged?.uploaded, false);
  c = await collect();
  assert.equal(c.value(METRIC.snapshots, { ...common, outcome: 'ok', uploaded: false }), 1);
  assert.equal(c.value(METRIC.snapshots, { ...common, outcome: 'ok', uploaded: true }), 1);
  assert.equal(c.histogram(METRIC.snapshotDuration, { uploaded: false })?.count, 1);
  assert.equal(c.histogram(METRIC.snapshotDuration, { uploaded: true })?.count, 1);
  assert.equal(c.value(METRIC.snapshotCompressedSize, common), info.compressedBytes, 'nothing more uploaded');
  assert.equal(c.value(METRIC.snapshotRawSize, common), info.bytes);

  // Every data point carries the common attributes.
  for (const scope of c.scopes) {
    for (const metric of scope.metrics) {
      for (const point of metric.dataPoints) assert.deepEqual({ store: point.attributes.store, db: point.attributes.db }, common, metric.descriptor.name);
    }
  }
});

/** The lease gauge mirrors status().lease once the handle reports it; until then it reports nothing. */
function assertLease(t: { diagnostic(message: string): void }, c: Collected, status: SyncStatus, common: Record<string, unknown>): void {
  const lease = (status as Partial<SyncStatus>).lease;
  if (!lease) {
    t.diagnostic('status().lease is not reported yet: the lease gauge is absent');
    assert.deepEqual(c.points(METRIC.leaseState), []);
    return;
  }
  assert.equal(c.value(METRIC.leaseState, { ...common, role: status.role, state: lease.state }), 1, JSON.stringify(status));
  const others = c.points(METRIC.leaseState).filter((p) => !(p.attributes.role === status.role && p.attributes.state === lease.state));
  assert.ok(others.length > 0 && others.every((p) => p.value === 0), JSON.stringify(others));
}

test('a failed snapshot counts as an error with its code; unbind stops all recording', async (t) => {
  const { provider, collect } = sdk();
  t.after(() => provider.shutdown());
  const store = failingStore(directoryStore({ dir: join(dir.path, 'fail', 'store') }));
  const dbPath = join(dir.path, 'fail', 'app.db');
  const db = await open(dbPath, store, MANUAL);
  t.after(() => db.$sync.close().catch(() => undefined));
  const common = metricAttributes(store.location, dbPath);
  const sm = new SyncMetrics({ meter: provider.getMeter('test'), attributes: common });
  const unbind = sm.bind(db.$sync);

  await db.insert(notes).values({ body: 'x' });
  store.fail = true;
  await assert.rejects(db.$sync.flush(), { code: 'STORE_AUTH' });
  let c = await collect();
  assert.equal(c.value(METRIC.snapshots, { ...common, outcome: 'error', 'error.type': 'STORE_AUTH' }), 1);
  assert.deepEqual(c.points(METRIC.snapshots, { outcome: 'ok' }), []);
  assert.deepEqual(c.points(METRIC.snapshotCompressedSize), [], 'a failed snapshot uploads nothing');
  assert.ok(c.value(METRIC.pendingCommits, common)! > 0, 'commits stay pending after a failure');
  assert.deepEqual(c.points(METRIC.lastSnapshotAge), []);

  store.fail = false;
  const info = await db.$sync.flush();
  assert.ok(info?.uploaded);
  c = await collect();
  assert.equal(c.value(METRIC.snapshots, { outcome: 'ok', uploaded: true }), 1);
  assert.equal(c.value(METRIC.snapshots, { outcome: 'error', 'error.type': 'STORE_AUTH' }), 1);
  assert.equal(c.value(METRIC.pendingCommits, common), 0);

  unbind();
  unbind(); // idempotent
  // After unbind: neither events nor status() reach the instruments any more.
  await db.insert(notes).values({ body: 'y' });
  store.fail = true;
  await assert.rejects(db.$sync.flush(), { code: 'STORE_AUTH' });
  store.fail = false;
  await db.insert(notes).values({ body: 'z' });
  const later = await db.$sync.flush();
  assert.ok(later?.uploaded);
  const c2 = await collect();
  assert.equal(c2.value(METRIC.snapshots, { outcome: 'ok', uploaded: true }), 1, 'no snapshot counted after unbind');
  assert.equal(c2.value(METRIC.snapshots, { outcome: 'error' }), 1, 'no error counted after unbind');
  assert.equal(c2.value(METRIC.snapshotCompressedSize), info.compressedBytes);
  assert.equal(c2.histogram(METRIC.snapshotDuration)?.count, 1);
  // A cumulative reader keeps a gauge's last value, but it is no longer read from status().
  const ageBefore = c.value(METRIC.lastSnapshotAge)!;
  assert.equal(c2.value(METRIC.lastSnapshotAge), ageBefore, 'the age gauge is no longer observed');
});

/** A SyncHandle stand-in to drive the lease and replica events (and status transitions) directly. */
function fakeHandle(status: SyncStatus): SyncHandle & { emit(event: string, ...args: unknown[]): void; status(): SyncStatus; listeners(): number } {
  const events = new EventEmitter();
  const handle = {
    flush: async () => null,
    close: async () => undefined,
    status: () => status,
    on: (event: string, listener: (...args: unknown[]) => void) => (events.on(event, listener), handle),
    off: (event: string, listener: (...args: unknown[]) => void) => (events.off(event, listener), handle),
    once: (event: string, listener: (...args: unknown[]) => void) => (events.once(event, listener), handle),
    emit: (event: string, ...args: unknown[]) => void events.emit(event, ...args),
    listeners: () => events.eventNames().reduce((n, e) => n + events.listenerCount(e), 0),
  };
  return handle as unknown as ReturnType<typeof fakeHandle>;
}

function baseStatus(): SyncStatus {
  return {
    commits: 0,
    pendingCommits: 0,
    lastSnapshot: null,
    lastError: null,
    snapshotsOk: 0,
    snapshotsFailed: 0,
    restoredFrom: null,
    state: 'idle',
    role: 'replica',
    lease: { state: 'none', renewedAt: null },
    localSeq: 3,
  };
}

test('lease, promotion and replica events; the lease gauge is a state set that never goes stale', async (t) => {
  const { provider, collect } = sdk();
  t.after(() => provider.shutdown());
  const common = { store: 'file:///x', db: 'app.db' };
  const status = baseStatus();
  const sync = fakeHandle(status);
  const sm = new SyncMetrics({ meter: provider.getMeter('test'), attributes: common });
  const unbind = sm.bind(sync);
  assert.equal(sync.listeners(), 5);

  const lease = async () => {
    const c = await collect();
    return Object.fromEntries(c.points(METRIC.leaseState).map((p) => [`${p.attributes.role}/${p.attributes.state}`, p.value]));
  };
  assert.deepEqual(await lease(), { 'writer/held': 0, 'writer/lost': 0, 'writer/none': 0, 'replica/none': 1 });

  sync.emit('replica-update', { seq: 4, generation: 'g', bytes: 1000, durationMs: 250 });
  sync.emit('replica-update', { seq: 5, generation: 'g', bytes: 3000, durationMs: 750 });
  let c = await collect();
  assert.equal(c.value(METRIC.replicaUpdates, common), 2);
  assert.equal(c.value(METRIC.replicaUpdateRawSize, common), 4000);
  assert.deepEqual({ count: c.histogram(METRIC.replicaUpdateDuration)?.count, sum: c.histogram(METRIC.replicaUpdateDuration)?.sum }, { count: 2, sum: 1 });

  status.role = 'writer';
  status.lease = { state: 'held', renewedAt: new Date().toISOString() };
  sync.emit('promoted', { seq: 5 });
  c = await collect();
  assert.equal(c.value(METRIC.promotions, common), 1);
  assert.deepEqual(await lease(), { 'writer/held': 1, 'writer/lost': 0, 'writer/none': 0, 'replica/none': 0 });

  status.lease = { state: 'lost', renewedAt: status.lease.renewedAt };
  sync.emit('lease-lost', new SyncError('LEASE_LOST', 'taken'));
  c = await collect();
  assert.equal(c.value(METRIC.leaseLosses, { ...common, 'error.type': 'LEASE_LOST' }), 1);
  assert.deepEqual(await lease(), { 'writer/held': 0, 'writer/lost': 1, 'writer/none': 0, 'replica/none': 0 }, 'held drops to 0, not left stale at 1');

  // A pair outside the usual ones is reported too, and drops to 0 when it ends.
  status.role = 'replica';
  assert.deepEqual(await lease(), { 'writer/held': 0, 'writer/lost': 0, 'writer/none': 0, 'replica/none': 0, 'replica/lost': 1 });
  status.lease = { state: 'none', renewedAt: null };
  assert.deepEqual(await lease(), { 'writer/held': 0, 'writer/lost': 0, 'writer/none': 0, 'replica/none': 1, 'replica/lost': 0 });

  // Snapshot events with odd errors (not a SyncError) still count, as UNKNOWN.
  sync.emit('snapshot-error', new Error('boom'));
  c = await collect();
  assert.equal(c.value(METRIC.snapshots, { outcome: 'error', 'error.type': 'UNKNOWN' }), 1);

  unbind();
  assert.equal(sync.listeners(), 0, 'every listener removed');
  let reads = 0;
  sync.status = () => (reads++, status);
  sync.emit('promoted', { seq: 6 });
  sync.emit('snapshot', { uploaded: true, durationMs: 1, bytes: 1, compressedBytes: 1 } as SnapshotInfo);
  c = await collect();
  assert.equal(reads, 0, 'the gauge callback is gone');
  assert.equal(c.value(METRIC.promotions), 1);
  assert.deepEqual(c.points(METRIC.snapshots, { outcome: 'ok' }), []);
});

test('a real replica: replica updates, then promotion when the writer closes, and the lease gauge follows', async (t) => {
  const { provider, collect } = sdk();
  t.after(() => provider.shutdown());
  const store = directoryStore({ dir: join(dir.path, 'replica', 'store') });
  const writer = await open(join(dir.path, 'replica', 'a.db'), store, MANUAL);
  t.after(() => writer.$sync.close().catch(() => undefined));
  await writer.$sync.flush();
  const replicaPath = join(dir.path, 'replica', 'b.db');
  const replica = await drizzle({
    connection: { url: `file:${replicaPath}` },
    schema,
    store,
    log: false,
    role: 'auto',
    replica: { pollMs: 20 },
    shutdown: { signals: false, timeoutMs: 20_000 },
    snapshot: MANUAL.snapshot,
  });
  t.after(() => replica.$sync.close().catch(() => undefined));
  const common = metricAttributes(store.location, replicaPath);
  const sm = new SyncMetrics({ meter: provider.getMeter('test'), attributes: common });
  t.after(sm.bind(replica.$sync));

  const lease = async () => {
    const c = await collect();
    return Object.fromEntries(c.points(METRIC.leaseState, common).filter((p) => p.value === 1).map((p) => [`${p.attributes.role}/${p.attributes.state}`, p.value]));
  };
  assert.equal(replica.$sync.status().role, 'replica');
  assert.deepEqual(await lease(), { 'replica/none': 1 });

  const updated = nextEvent(replica.$sync, 'replica-update');
  await writer.insert(notes).values({ body: 'x' });
  const info = await writer.$sync.flush();
  const update = await updated;
  assert.equal(update.seq, info!.seq);
  let c = await collect();
  assert.equal(c.value(METRIC.replicaUpdates, common), 1);
  assert.equal(c.value(METRIC.replicaUpdateRawSize, common), update.bytes);
  assert.equal(c.histogram(METRIC.replicaUpdateDuration, common)?.count, 1);
  assert.equal(c.value(METRIC.pendingCommits, common), 0);

  const promoted = nextEvent(replica.$sync, 'promoted');
  await writer.$sync.close(); // releases the lease
  await promoted;
  c = await collect();
  assert.equal(c.value(METRIC.promotions, common), 1);
  assert.deepEqual(await lease(), { 'writer/held': 1 });
});

test('restore outcomes: count, duration, bytes, skipped snapshots, error code', async (t) => {
  const { provider, collect } = sdk();
  t.after(() => provider.shutdown());
  const common = { store: 'azure://acct/database-backups/app', db: 'app.db' };
  const sm = new SyncMetrics({ meter: provider.getMeter('test'), attributes: common });
  sm.restoreSucceeded({ durationMs: 1500, bytes: 10_000, compressedBytes: 4_000, skipped: 2 });
  sm.restoreSucceeded({ durationMs: 500, bytes: 20_000 });
  sm.restoreFailed({ durationMs: 250, code: 'SNAPSHOT_CORRUPT' });
  const c = await collect();
  assert.equal(c.value(METRIC.restores, { ...common, outcome: 'ok' }), 2);
  assert.equal(c.value(METRIC.restores, { ...common, outcome: 'error', 'error.type': 'SNAPSHOT_CORRUPT' }), 1);
  const ok = c.histogram(METRIC.restoreDuration, { outcome: 'ok' });
  assert.deepEqual({ count: ok?.count, sum: ok?.sum }, { count: 2, sum: 2 });
  assert.equal(c.histogram(METRIC.restoreDuration, { outcome: 'error' })?.sum, 0.25);
  assert.equal(c.value(METRIC.restoreRawSize, common), 30_000);
  assert.equal(c.value(METRIC.restoreCompressedSize, common), 4_000);
  assert.equal(c.value(METRIC.restoreSkipped, common), 2);
  assert.equal(c.metric(METRIC.restores)?.descriptor.unit, '{restore}');
});

test('metricAttributes keeps the store location low-cardinality and secret-free, and the db file name only', () => {
  assert.deepEqual(metricAttributes('azure://acct/c/app', '/srv/data/app.db'), { store: 'azure://acct/c/app', db: 'app.db' });
  assert.deepEqual(metricAttributes('https://user:key@acct.blob.core.windows.net/c?sv=2024&sig=SECRET', './data/x.db'), {
    store: 'https://acct.blob.core.windows.net/c',
    db: 'x.db',
  });
});

test('with no SDK installed the default global meter is a no-op: nothing recorded, nothing read, nothing thrown', async (t) => {
  assert.equal(metrics.getMeterProvider().constructor.name, 'NoopMeterProvider', 'no global SDK in this process');
  const store = directoryStore({ dir: join(dir.path, 'noop', 'store') });
  const db = await open(join(dir.path, 'noop', 'app.db'), store, MANUAL);
  t.after(() => db.$sync.close().catch(() => undefined));
  const real = db.$sync;
  let reads = 0;
  const spy: SyncHandle = {
    ...real,
    status: () => (reads++, real.status()),
    on: ((event, listener) => (real.on(event, listener), spy)) as SyncHandle['on'],
    off: ((event, listener) => (real.off(event, listener), spy)) as SyncHandle['off'],
  };
  const sm = new SyncMetrics();
  const unbind = sm.bind(spy);
  sm.restoreSucceeded({ durationMs: 1, bytes: 1, compressedBytes: 1, skipped: 1 });
  sm.restoreFailed({ durationMs: 1, code: 'STORE_AUTH' });
  await db.insert(notes).values({ body: 'x' });
  assert.ok((await db.$sync.flush())?.uploaded);
  // An SDK pipeline that is not the global one sees nothing from the default meter.
  const { provider, collect } = sdk();
  t.after(() => provider.shutdown());
  assert.deepEqual((await collect()).scopes.flatMap((s) => s.metrics), []);
  assert.equal(reads, 0, 'no gauge callback ever runs without an SDK');
  unbind();
});

test('the default meter is the global one, named after the package with its version', async (t) => {
  const { provider, collect } = sdk();
  assert.ok(metrics.setGlobalMeterProvider(provider));
  t.after(async () => {
    metrics.disable();
    await provider.shutdown();
  });
  const sm = new SyncMetrics({ attributes: { store: 's', db: 'd' } });
  sm.restoreSucceeded({ durationMs: 10, bytes: 5 });
  const c = await collect();
  const { version } = (await import('../../package.json', { with: { type: 'json' } })).default;
  assert.deepEqual(
    c.scopes.map((s) => ({ name: s.scope.name, version: s.scope.version })),
    [{ name: METER_NAME, version }],
  );
  assert.equal(c.value(METRIC.restores, { store: 's', db: 'd', outcome: 'ok' }), 1);
});

test('drizzle({ metrics: { meter } }) records its own restores: a download, and a failed start with its code', async (t) => {
  const { provider, collect } = sdk();
  t.after(() => provider.shutdown());
  const meter = provider.getMeter('wired');
  const store = directoryStore({ dir: join(dir.path, 'wired', 'store') });
  const seed = await open(join(dir.path, 'wired', 'seed.db'), store);
  await seed.insert(notes).values({ body: 'x' });
  await seed.$sync.close();

  const db = await drizzle({ connection: { url: `file:${join(dir.path, 'wired', 'a.db')}` }, schema, store, log: false, shutdown: { signals: false }, metrics: { meter } });
  const restored = db.$sync.status().restoredFrom!;
  await db.$sync.close();
  const empty = directoryStore({ dir: join(dir.path, 'wired', 'empty') });
  await assert.rejects(
    drizzle({ connection: { url: `file:${join(dir.path, 'wired', 'b.db')}` }, schema, store: empty, log: false, shutdown: { signals: false }, restore: 'required', metrics: { meter } }),
    { code: 'NO_BACKUP' },
  );
  const c = await collect();
  assert.equal(c.value(METRIC.restores, { outcome: 'ok', db: 'a.db' }), 1);
  assert.equal(c.value(METRIC.restoreRawSize, { db: 'a.db' }), restored.bytes);
  assert.equal(c.value(METRIC.restores, { outcome: 'error', 'error.type': 'NO_BACKUP', db: 'b.db' }), 1);
});
