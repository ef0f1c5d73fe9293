import { isAbsolute, resolve } from 'node:path';
import type { Config as LibsqlConfig } from '@libsql/client';
import { SyncError } from './errors.ts';
import type { Codec } from './sync/codec.ts';
import { CODECS } from './sync/codec.ts';
import type { RestoreMode } from './sync/restore.ts';
import { DEFAULT_RETRY, type RetryPolicy } from './sync/retry.ts';

export interface SnapshotOptions {
  /** Quiet time after the last commit before a snapshot starts. Default 2000. */
  debounceMs?: number;
  /** Snapshot at once when this many commits are pending. Default 1000. */
  maxCommits?: number;
  /** Ceiling: never later than this after the first unsnapshotted commit. Default 300000 (5 min). */
  maxIntervalMs?: number;
  /** Snapshots kept in the store; older blobs are deleted. Default 20. */
  retain?: number;
  /** Compression codec. Default 'lz4' (fastest restore; see bench/codecs.ts). */
  codec?: Codec;
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

export interface ResolvedSyncConfig {
  dbPath: string;
  libsql: LibsqlConfig;
  restore: RestoreMode;
  schedule: { debounceMs: number; maxCommits: number; maxIntervalMs: number };
  retain: number;
  codec: Codec;
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
    throw new SyncError('CONFIG', `connection.url must be a local file URL such as "file:./data/app.db"; got ${JSON.stringify(url)}. Remote libSQL URLs and :memory: have nothing to back up.`);
  }
  let path = url.slice('file:'.length).split('?')[0]!;
  if (path.startsWith('//')) path = path.slice(2); // file:///abs/path
  path = decodeURIComponent(path);
  if (path === '' || path === ':memory:') throw new SyncError('CONFIG', `connection.url ${JSON.stringify(url)} names no file.`);
  return isAbsolute(path) ? path : resolve(path);
}

export function resolveSyncConfig(input: {
  connection: string | LibsqlConfig;
  restore?: RestoreMode;
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
  const restore = envSkip ? 'skip' : (input.restore ?? 'if-exists');
  if (!['required', 'if-exists', 'skip'].includes(restore)) {
    throw new SyncError('CONFIG', `restore must be 'required', 'if-exists' or 'skip'; got ${JSON.stringify(restore)}.`);
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
  return {
    dbPath,
    libsql,
    restore,
    schedule,
    retain: Math.floor(positive('snapshot.retain', s.retain, 20, 1)),
    codec,
    retryBaseMs: positive('snapshot.retryBaseMs', s.retryBaseMs, 1_000, 1),
    retryMaxMs: positive('snapshot.retryMaxMs', s.retryMaxMs, 60_000, 1),
    retry,
    signals: input.shutdown?.signals ?? true,
    shutdownTimeoutMs: positive('shutdown.timeoutMs', input.shutdown?.timeoutMs, 25_000, 1),
  };
}
