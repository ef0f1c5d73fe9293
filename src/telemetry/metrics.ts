/**
 * OpenTelemetry metrics through `@opentelemetry/api` only. Without an SDK installed by the app, the API
 * hands out no-op instruments and the batch callback is never invoked, so this costs a few listener
 * calls per snapshot and nothing per commit. Nothing here runs per commit even with an SDK: gauges read
 * `status()` when the app's reader collects.
 *
 * Instruments are created from the meter at construction: with the global meter, the app must install
 * its MeterProvider (e.g. NodeSDK started from `--import`) before `drizzle()` runs, as for any OTel
 * instrumentation (the metrics API has no proxy provider).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename } from 'node:path';
import {
  type Attributes,
  type BatchObservableCallback,
  type Counter,
  type Histogram,
  type Meter,
  type ObservableGauge,
  type ValueType,
} from '@opentelemetry/api';
import type { SyncError } from '../errors.ts';
import type { SnapshotInfo } from '../sync/snapshotter.ts';
import type { SyncEvents, SyncHandle } from '../sync/sync-controller.ts';

export const METER_NAME = 'drizzle-libsql-blob';

/**
 * Cold start: `@opentelemetry/api` (~35 ms to import) is loaded only when a meter is needed. Its
 * `INT` is 0 in every 1.x release; `metrics` comes from the API on first use.
 */
const INT = 0 as ValueType;
const OTEL_GLOBAL = Symbol.for('opentelemetry.js.api.1');

/**
 * True when the app registered an OpenTelemetry MeterProvider (an SDK) on the API's global, which is
 * what the API itself reads. Without one every instrument is a no-op, so drizzle() creates none.
 */
export function meterProviderRegistered(): boolean {
  return (globalThis as Record<symbol, { metrics?: unknown } | undefined>)[OTEL_GLOBAL]?.metrics !== undefined;
}

function globalMeter(): Meter {
  const api = createRequire(import.meta.url)('@opentelemetry/api') as typeof import('@opentelemetry/api');
  return api.metrics.getMeter(METER_NAME, ownVersion());
}
const NS = 'drizzle_libsql_blob';

/** Metric names, exported so dashboards, tests and the README agree. */
export const METRIC = {
  snapshots: `${NS}.snapshots`,
  snapshotDuration: `${NS}.snapshot.duration`,
  snapshotCompressedSize: `${NS}.snapshot.compressed_size`,
  snapshotRawSize: `${NS}.snapshot.raw_size`,
  restores: `${NS}.restores`,
  restoreDuration: `${NS}.restore.duration`,
  restoreCompressedSize: `${NS}.restore.compressed_size`,
  restoreRawSize: `${NS}.restore.raw_size`,
  restoreSkipped: `${NS}.restore.skipped`,
  replicaUpdates: `${NS}.replica.updates`,
  replicaUpdateDuration: `${NS}.replica.update.duration`,
  replicaUpdateRawSize: `${NS}.replica.update.raw_size`,
  leaseLosses: `${NS}.lease.losses`,
  promotions: `${NS}.promotions`,
  pendingCommits: `${NS}.pending_commits`,
  lastSnapshotAge: `${NS}.last_snapshot.age`,
  leaseState: `${NS}.lease.state`,
} as const;

/** Seconds: snapshots and restores run from milliseconds (small files) to minutes (GiB files). */
const DURATION_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

type LeaseRole = 'writer' | 'replica';
type LeaseState = 'held' | 'lost' | 'none';
/**
 * Every (role, state) pair the lease gauge reports each collection. A cumulative reader keeps the last
 * value of any attribute set an observable stops reporting, so the gauge is a state set (1 for the
 * current pair, 0 for the others) over a fixed list instead of a single series that would go stale.
 */
const LEASE_PAIRS: ReadonlyArray<readonly [LeaseRole, LeaseState]> = [
  ['writer', 'held'],
  ['writer', 'lost'],
  ['writer', 'none'],
  ['replica', 'none'],
];

let packageVersion: string | null | undefined;
/** This package's version, read once (src/telemetry and dist/telemetry both sit two levels below the root). */
function ownVersion(): string | undefined {
  if (packageVersion === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      packageVersion = pkg.name === METER_NAME && typeof pkg.version === 'string' ? pkg.version : null;
    } catch {
      packageVersion = null;
    }
  }
  return packageVersion ?? undefined;
}

/**
 * The common attributes: `store` (the store's location, which never holds secrets; any query string or
 * user info is dropped anyway) and `db` (the database file's name, not its path).
 */
export function metricAttributes(storeLocation: string, dbPath: string): Attributes {
  const store = storeLocation.replace(/[?#].*$/s, '').replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1');
  return { store, db: basename(dbPath) };
}

export interface SyncMetricsOptions {
  /** Default: `metrics.getMeter('drizzle-libsql-blob', <package version>)` from the global provider (no-op without an SDK). */
  meter?: Meter;
  /** Added to every data point, e.g. `metricAttributes(store.location, dbPath)`. Keep them low-cardinality. */
  attributes?: Attributes;
}

export class SyncMetrics {
  readonly #attrs: Attributes;
  readonly #meter: Meter;

  readonly #snapshots: Counter;
  readonly #snapshotDuration: Histogram;
  readonly #snapshotCompressed: Counter;
  readonly #snapshotRaw: Counter;
  readonly #restores: Counter;
  readonly #restoreDuration: Histogram;
  readonly #restoreCompressed: Counter;
  readonly #restoreRaw: Counter;
  readonly #restoreSkipped: Counter;
  readonly #replicaUpdates: Counter;
  readonly #replicaUpdateDuration: Histogram;
  readonly #replicaUpdateRaw: Counter;
  readonly #leaseLosses: Counter;
  readonly #promotions: Counter;
  readonly #pendingCommits: ObservableGauge;
  readonly #lastSnapshotAge: ObservableGauge;
  readonly #leaseState: ObservableGauge;

  // Attribute sets for the frequent cases, built once.
  readonly #okUploaded: Attributes;
  readonly #okUnchanged: Attributes;
  readonly #uploadedOnly: Attributes;
  readonly #unchangedOnly: Attributes;
  readonly #restoreOk: Attributes;
  /** Grows if a handle reports a pair outside LEASE_PAIRS, so that pair too drops to 0 afterwards. */
  readonly #leaseAttrs: Array<{ role: string; state: string; attrs: Attributes }>;

  constructor(options: SyncMetricsOptions = {}) {
    this.#attrs = { ...options.attributes };
    const meter = (this.#meter = options.meter ?? globalMeter());
    const a = this.#attrs;
    this.#okUploaded = { ...a, outcome: 'ok', uploaded: true };
    this.#okUnchanged = { ...a, outcome: 'ok', uploaded: false };
    this.#uploadedOnly = { ...a, uploaded: true };
    this.#unchangedOnly = { ...a, uploaded: false };
    this.#restoreOk = { ...a, outcome: 'ok' };
    this.#leaseAttrs = LEASE_PAIRS.map(([role, state]) => ({ role, state, attrs: { ...a, role, state } }));

    const seconds = { unit: 's', advice: { explicitBucketBoundaries: DURATION_BUCKETS_S } };
    const bytes = { unit: 'By', valueType: INT };
    this.#snapshots = meter.createCounter(METRIC.snapshots, {
      description: 'Snapshot attempts: outcome=ok (uploaded=true|false; false when the database was unchanged) or outcome=error (error.type=SyncError code).',
      unit: '{snapshot}',
      valueType: INT,
    });
    this.#snapshotDuration = meter.createHistogram(METRIC.snapshotDuration, { description: 'Duration of successful snapshots (copy, compress, upload, publish).', ...seconds });
    this.#snapshotCompressed = meter.createCounter(METRIC.snapshotCompressedSize, { description: 'Compressed bytes uploaded to the store by snapshots.', ...bytes });
    this.#snapshotRaw = meter.createCounter(METRIC.snapshotRawSize, { description: 'Uncompressed database bytes of the snapshots uploaded.', ...bytes });
    this.#restores = meter.createCounter(METRIC.restores, {
      description: 'Restores (hydration from the store at start): outcome=ok or outcome=error (error.type=SyncError code).',
      unit: '{restore}',
      valueType: INT,
    });
    this.#restoreDuration = meter.createHistogram(METRIC.restoreDuration, { description: 'Duration of restores (download and verification).', ...seconds });
    this.#restoreCompressed = meter.createCounter(METRIC.restoreCompressedSize, { description: 'Compressed bytes downloaded by restores.', ...bytes });
    this.#restoreRaw = meter.createCounter(METRIC.restoreRawSize, { description: 'Uncompressed database bytes restored.', ...bytes });
    this.#restoreSkipped = meter.createCounter(METRIC.restoreSkipped, {
      description: 'Newer snapshots a restore skipped because they failed verification.',
      unit: '{snapshot}',
      valueType: INT,
    });
    this.#replicaUpdates = meter.createCounter(METRIC.replicaUpdates, { description: 'Times a read replica reopened its database on a newer snapshot.', unit: '{update}', valueType: INT });
    this.#replicaUpdateDuration = meter.createHistogram(METRIC.replicaUpdateDuration, { description: 'Duration of replica updates.', ...seconds });
    this.#replicaUpdateRaw = meter.createCounter(METRIC.replicaUpdateRawSize, { description: 'Uncompressed database bytes a replica downloaded.', ...bytes });
    this.#leaseLosses = meter.createCounter(METRIC.leaseLosses, { description: 'Times this writer lost its lease (error.type=SyncError code).', unit: '{loss}', valueType: INT });
    this.#promotions = meter.createCounter(METRIC.promotions, { description: 'Times a replica became the writer.', unit: '{promotion}', valueType: INT });
    this.#pendingCommits = meter.createObservableGauge(METRIC.pendingCommits, {
      description: 'Commits not yet in a snapshot durable in the store.',
      unit: '{commit}',
      valueType: INT,
    });
    this.#lastSnapshotAge = meter.createObservableGauge(METRIC.lastSnapshotAge, {
      description: 'Seconds since the last successful snapshot (absent until the first one).',
      unit: 's',
    });
    this.#leaseState = meter.createObservableGauge(METRIC.leaseState, {
      description: "Writer lease state set: 1 for this instance's current (role, state), 0 for the other pairs; state=held is 1 while it holds the lease.",
      unit: '1',
      valueType: INT,
    });
  }

  restoreSucceeded(e: { durationMs: number; bytes: number; compressedBytes?: number; skipped?: number }): void {
    this.#restores.add(1, this.#restoreOk);
    this.#restoreDuration.record(e.durationMs / 1000, this.#restoreOk);
    this.#restoreRaw.add(e.bytes, this.#attrs);
    if (e.compressedBytes !== undefined) this.#restoreCompressed.add(e.compressedBytes, this.#attrs);
    if (e.skipped) this.#restoreSkipped.add(e.skipped, this.#attrs);
  }

  restoreFailed(e: { durationMs: number; code: string }): void {
    const attrs = { ...this.#attrs, outcome: 'error', 'error.type': e.code };
    this.#restores.add(1, attrs);
    this.#restoreDuration.record(e.durationMs / 1000, attrs);
  }

  /**
   * Records `sync`'s snapshot, replica and lease events and reports its gauges from `status()` at each
   * collection. Returns the unbind function (idempotent): listeners and the gauge callback are removed.
   */
  bind(sync: SyncHandle): () => void {
    const onSnapshot = (info: SnapshotInfo) => {
      const seconds = info.durationMs / 1000;
      if (info.uploaded) {
        this.#snapshots.add(1, this.#okUploaded);
        this.#snapshotDuration.record(seconds, this.#uploadedOnly);
        this.#snapshotCompressed.add(info.compressedBytes, this.#attrs);
        this.#snapshotRaw.add(info.bytes, this.#attrs);
      } else {
        // Unchanged since the latest snapshot: counted, timed, but nothing was uploaded.
        this.#snapshots.add(1, this.#okUnchanged);
        this.#snapshotDuration.record(seconds, this.#unchangedOnly);
      }
    };
    const onSnapshotError = (error: SyncError) => this.#snapshots.add(1, { ...this.#attrs, outcome: 'error', 'error.type': codeOf(error) });
    const onReplicaUpdate = (e: SyncEvents['replica-update'][0]) => {
      this.#replicaUpdates.add(1, this.#attrs);
      this.#replicaUpdateDuration.record(e.durationMs / 1000, this.#attrs);
      this.#replicaUpdateRaw.add(e.bytes, this.#attrs);
    };
    const onLeaseLost = (error: SyncError) => this.#leaseLosses.add(1, { ...this.#attrs, 'error.type': codeOf(error) });
    const onPromoted = () => this.#promotions.add(1, this.#attrs);

    const observables = [this.#pendingCommits, this.#lastSnapshotAge, this.#leaseState];
    const observe: BatchObservableCallback = (result) => {
      const status = sync.status();
      result.observe(this.#pendingCommits, status.pendingCommits, this.#attrs);
      const last = status.lastSnapshot;
      if (last) result.observe(this.#lastSnapshotAge, Math.max(0, (Date.now() - Date.parse(last.at)) / 1000), this.#attrs);
      // `lease`/`role` may be absent from a handle that predates them: then the gauge reports nothing.
      const lease = (status as Partial<typeof status>).lease;
      if (lease) {
        const role: string = status.role ?? 'writer';
        const state: string = lease.state;
        if (!this.#leaseAttrs.some((p) => p.role === role && p.state === state)) this.#leaseAttrs.push({ role, state, attrs: { ...this.#attrs, role, state } });
        for (const pair of this.#leaseAttrs) result.observe(this.#leaseState, pair.role === role && pair.state === state ? 1 : 0, pair.attrs);
      }
    };

    sync.on('snapshot', onSnapshot);
    sync.on('snapshot-error', onSnapshotError);
    sync.on('replica-update', onReplicaUpdate);
    sync.on('lease-lost', onLeaseLost);
    sync.on('promoted', onPromoted);
    this.#meter.addBatchObservableCallback(observe, observables);

    let bound = true;
    return () => {
      if (!bound) return;
      bound = false;
      sync.off('snapshot', onSnapshot);
      sync.off('snapshot-error', onSnapshotError);
      sync.off('replica-update', onReplicaUpdate);
      sync.off('lease-lost', onLeaseLost);
      sync.off('promoted', onPromoted);
      this.#meter.removeBatchObservableCallback(observe, observables);
    };
  }
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : 'UNKNOWN';
}
