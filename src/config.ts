import { isAbsolute, resolve } from 'node:path';
import type { Config as LibsqlConfig } from '@libsql/client';
import { SyncError } from './errors.ts';
import type { Codec } from './sync/codec.ts';
import { CODECS } from './sync/codec.ts';
import type { RestoreTarget, RetentionPolicy } from './sync/manifest.ts';
import type { RestoreMode } from './sync/restore.ts';
import { DEFAULT_RETRY, type RetryPolicy } from './sync/retry.ts';

/**
 * Picked by the benchmark (bench/incremental.ts, README section 7): at 1M rows incremental snapshots
 * upload 3.5% of a full one's bytes in 17% of its time for a 1% update of recent rows, restore faster,
 * and stay within 128 MB of memory, which a full snapshot and its restore exceed.
 */
export const DEFAULT_MODE: 'full' | 'incremental' = 'incremental';

export interface SnapshotOptions {
  /** Quiet time after the last commit before a snapshot starts. Default 2000. */
  debounceMs?: number;
  /** Snapshot at once when this many commits are pending. Default 1000. */
  maxCommits?: number;
  /** Ceiling: never later than this after the first unsnapshotted commit. Default 300000 (5 min). */
  maxIntervalMs?: number;
  /**
   * Snapshots kept in the store; older blobs are deleted. A number is a count; `{ count, maxAgeMs }`
   * also drops snapshots older than `maxAgeMs`. The latest snapshot is always kept. Default 20.
   */
  retain?: number | { count?: number; maxAgeMs?: number };
  /** Compression codec of full snapshots. Default 'lz4' (fastest restore; see bench/codecs.ts). */
  codec?: Codec;
  /**
   * 'incremental': the page image in content-addressed chunks, uploading only chunks the store does not
   * have (cost follows the change, not the database size). 'full': one compressed copy per snapshot.
   */
  mode?: 'full' | 'incremental';
  /** Incremental: chunk size in bytes, a power of two from 64 KiB to 16 MiB. Default 1 MiB. */
  chunkSize?: number;
  /** Incremental: how long an unreferenced chunk is kept before it is deleted (readers may still fetch it). Default 600000. */
  gcGraceMs?: number;
  /** First wait after a failed snapshot; doubles per failure up to `retryMaxMs`. Defaults 1000 / 60000. */
  retryBaseMs?: number;
  retryMaxMs?: number;
}

export interface ShutdownOptions {
  /** Take the final snapshot on SIGTERM/SIGINT. Default true. */
  signals?: boolean;
  /** Bound on the final snapshot (Container Apps grants 30 s by default). Default 25000. */
  timeoutMs?: number;
}

/**
 * `writer`: take the writer lease or fail fast with LEASE_HELD. `replica`: never write; serve reads and
 * follow the store's newest snapshot. `auto` (default): writer if the lease is free, else a replica that
 * takes over as soon as the lease is released or expires.
 */
export type Role = 'auto' | 'writer' | 'replica';

export interface LeaseOptions {
  /** Lease length in seconds, 15-60 (Azure's bounds); renewed every third of it. Default 30. */
  durationSec?: number;
}

export interface ReplicaOptions {
  /** How often a replica checks the manifest for a newer snapshot (and, as 'auto', for a free lease). Default 5000. */
  pollMs?: number;
}

export interface ResolvedSyncConfig {
  dbPath: string;
  libsql: LibsqlConfig;
  restore: RestoreMode;
  /** Point-in-time restore request, if `restore` was `{ at }` or `{ seq }`. */
  restoreTarget: RestoreTarget | undefined;
  role: Role;
  leaseDurationSec: number;
  replicaPollMs: number;
  schedule: { debounceMs: number; maxCommits: number; maxIntervalMs: number };
  retention: RetentionPolicy;
  codec: Codec;
  mode: 'full' | 'incremental';
  chunkSize: number;
  gcGraceMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  retry: RetryPolicy;
  signals: boolean;
  shutdownTimeoutMs: number;
}

function positive(name: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new SyncError('CONFIG', `${name} must be a number >= ${min}, got ${JSON.stringify(value)}.`);
  }
  return value;
}

/** `file:./data/app.db` -> absolute path. Only local files: the whole point is a local database. */
export function databasePath(url: string): string {
  if (typeof url !== 'string' || !url.startsWith('file:')) {
    throw new SyncError('CONFIG', `connection.url must be a local file URL such as "file:./data/app.db"; got ${JSON.stringify(url)}. (drizzle() hands a libSQL server URL, libsql: http(s): ws(s):, straight to the server without snapshots; :memory: has nothing to back up.)`);
  }
  let path = url.slice('file:'.length).split('?')[0]!;
  if (path.startsWith('//')) path = path.slice(2); // file:///abs/path
  path = decodeURIComponent(path);
  if (path === '' || path === ':memory:') throw new SyncError('CONFIG', `connection.url ${JSON.stringify(url)} names no file.`);
  return isAbsolute(path) ? path : resolve(path);
}

export function resolveSyncConfig(input: {
  connection: string | LibsqlConfig;
  restore?: RestoreMode | RestoreTarget;
  role?: Role;
  lease?: LeaseOptions;
  replica?: ReplicaOptions;
  snapshot?: SnapshotOptions;
  shutdown?: ShutdownOptions;
  retry?: Partial<RetryPolicy>;
}): ResolvedSyncConfig {
  if (input.connection === undefined || input.connection === null) {
    throw new SyncError('CONFIG', 'drizzle({ connection }) is required: pass { url: "file:./data/app.db" }.');
  }
  const libsql: LibsqlConfig = typeof input.connection === 'string' ? { url: input.connection } : { ...input.connection };
  if (libsql.syncUrl) throw new SyncError('CONFIG', 'connection.syncUrl (embedded replicas) cannot be combined with blob snapshots; remove it.');
  if (libsql.encryptionKey) throw new SyncError('CONFIG', 'connection.encryptionKey is not supported yet: snapshots are taken by a second connection that would need the key.');
  const dbPath = databasePath(libsql.url);

  const envSkip = /^(1|true|yes)$/i.test(process.env.SKIP_RESTORE ?? '');
  const requested = envSkip ? 'skip' : (input.restore ?? 'if-exists');
  const restoreTarget = typeof requested === 'object' && requested !== null ? resolveTarget(requested) : undefined;
  // A point-in-time restore needs a backup to roll back to.
  const restore: RestoreMode = restoreTarget ? 'required' : (requested as RestoreMode);
  if (!['required', 'if-exists', 'skip'].includes(restore)) {
    throw new SyncError('CONFIG', `restore must be 'required', 'if-exists', 'skip', { at: Date | ISO time } or { seq: number }; got ${JSON.stringify(requested)}.`);
  }
  const role = input.role ?? 'auto';
  if (!['auto', 'writer', 'replica'].includes(role)) throw new SyncError('CONFIG', `role must be 'auto', 'writer' or 'replica'; got ${JSON.stringify(role)}.`);
  const leaseDurationSec = input.lease?.durationSec ?? 30;
  if (typeof leaseDurationSec !== 'number' || !Number.isInteger(leaseDurationSec) || leaseDurationSec < 15 || leaseDurationSec > 60) {
    throw new SyncError('CONFIG', `lease.durationSec must be a whole number of seconds from 15 to 60 (Azure's bounds); got ${leaseDurationSec}.`);
  }
  const s = input.snapshot ?? {};
  const codec = s.codec ?? 'lz4';
  if (!CODECS.includes(codec)) throw new SyncError('CONFIG', `snapshot.codec must be one of ${CODECS.join(', ')}; got ${JSON.stringify(codec)}.`);
  const schedule = {
    debounceMs: positive('snapshot.debounceMs', s.debounceMs, 2_000),
    maxCommits: positive('snapshot.maxCommits', s.maxCommits, 1_000, 1),
    maxIntervalMs: positive('snapshot.maxIntervalMs', s.maxIntervalMs, 300_000, 1),
  };
  if (schedule.maxIntervalMs < schedule.debounceMs) {
    throw new SyncError('CONFIG', `snapshot.maxIntervalMs (${schedule.maxIntervalMs}) must not be smaller than snapshot.debounceMs (${schedule.debounceMs}).`);
  }
  const retry: RetryPolicy = {
    retries: positive('retry.retries', input.retry?.retries, DEFAULT_RETRY.retries),
    minTimeoutMs: positive('retry.minTimeoutMs', input.retry?.minTimeoutMs, DEFAULT_RETRY.minTimeoutMs),
    maxTimeoutMs: positive('retry.maxTimeoutMs', input.retry?.maxTimeoutMs, DEFAULT_RETRY.maxTimeoutMs),
  };
  const mode = s.mode ?? DEFAULT_MODE;
  if (mode !== 'full' && mode !== 'incremental') throw new SyncError('CONFIG', `snapshot.mode must be 'full' or 'incremental'; got ${JSON.stringify(mode)}.`);
  const chunkSize = positive('snapshot.chunkSize', s.chunkSize, 1 << 20, 1 << 16);
  if (chunkSize > 1 << 24 || (chunkSize & (chunkSize - 1)) !== 0) throw new SyncError('CONFIG', `snapshot.chunkSize must be a power of two from 65536 to 16777216 bytes; got ${chunkSize}.`);
  const retain = typeof s.retain === 'object' && s.retain !== null ? s.retain : { count: s.retain };
  return {
    dbPath,
    libsql,
    restore,
    restoreTarget,
    role,
    leaseDurationSec,
    replicaPollMs: positive('replica.pollMs', input.replica?.pollMs, 5_000, 10),
    schedule,
    mode,
    chunkSize,
    gcGraceMs: positive('snapshot.gcGraceMs', s.gcGraceMs, 600_000),
    retention: {
      count: Math.floor(positive('snapshot.retain.count', retain.count, 20, 1)),
      maxAgeMs: positive('snapshot.retain.maxAgeMs', retain.maxAgeMs, Infinity, 1),
    },
    codec,
    retryBaseMs: positive('snapshot.retryBaseMs', s.retryBaseMs, 1_000, 1),
    retryMaxMs: positive('snapshot.retryMaxMs', s.retryMaxMs, 60_000, 1),
    retry,
    signals: input.shutdown?.signals ?? true,
    shutdownTimeoutMs: positive('shutdown.timeoutMs', input.shutdown?.timeoutMs, 25_000, 1),
  };
}

function resolveTarget(target: RestoreTarget): RestoreTarget {
  if ('seq' in target) {
    if (!Number.isSafeInteger(target.seq) || target.seq < 1) throw new SyncError('CONFIG', `restore.seq must be a snapshot sequence number >= 1; got ${JSON.stringify(target.seq)}.`);
    return { seq: target.seq };
  }
  if ('at' in target) {
    const at = new Date(target.at);
    if (Number.isNaN(at.getTime())) throw new SyncError('CONFIG', `restore.at must be a Date or an ISO 8601 time such as "2026-11-23T10:00:00Z"; got ${JSON.stringify(target.at)}.`);
    return { at };
  }
  throw new SyncError('CONFIG', `restore as an object must be { at: Date | ISO time } or { seq: number }; got ${JSON.stringify(target)}.`);
}
