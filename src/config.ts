import { isAbsolute, resolve } from 'node:path';
import type { Config as LibsqlConfig } from '@libsql/client';
import type { DrizzleConfig } from 'drizzle-orm';
import type { Meter } from '@opentelemetry/api';
import { assertKnownKeys, describe, keysOf, optionsObject } from './config-keys.ts';
import { SyncError } from './errors.ts';
import type { SyncLogOption } from './log.ts';
import type { SnapshotStore } from './store/store.ts';
import { checkEncryptionOptions, type EncryptionOptions } from './sync/chunks/encryption.ts';
import type { Codec } from './sync/codec.ts';
import { CODECS } from './sync/codec.ts';
import type { RestoreTarget, RetentionPolicy } from './sync/manifest.ts';
import type { RestoreMode } from './sync/restore.ts';
import { DEFAULT_RETRY, type RetryPolicy } from './sync/retry.ts';
import { MIGRATIONS_TABLE } from './sync/schema-position.ts';

/**
 * Picked by the benchmark (bench/incremental.ts, README section 7): at 1M rows incremental snapshots
 * upload 3.5% of a full one's bytes in 17% of its time for a 1% update of recent rows, restore faster,
 * and stay within 128 MB of memory, which a full snapshot and its restore exceed.
 */
export const DEFAULT_MODE: 'full' | 'incremental' = 'incremental';
/** Snapshot chunk size (see SnapshotOptions.chunkSize). */
export const DEFAULT_CHUNK_SIZE = 4 << 20;
/** Quiet time before a snapshot (see SnapshotOptions.debounceMs). */
export const DEFAULT_DEBOUNCE_MS = 500;
/** Page deltas on one chunk set (see SnapshotOptions.maxDeltas). */
export const DEFAULT_MAX_DELTAS = 200;

export interface SnapshotOptions {
  /**
   * Quiet time after the last commit before a snapshot starts. Default 500: an upload between chunk
   * sets is a page delta, which costs the change, not the database (bench/results, durability phase).
   */
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
  /**
   * Incremental: chunk size in bytes, a power of two from 64 KiB to 16 MiB. Default 4 MiB: a restore
   * makes one GET per chunk, and at 1 MiB the per-request cost (client and service) was about half of a
   * 1M-row restore; a small change uploads a few MiB more (bench/results, incremental phase).
   */
  chunkSize?: number;
  /**
   * Incremental: page deltas uploaded on one chunk set before a compaction writes the next chunk set
   * (only the chunks changed since are read and uploaded, in the background while uploads go on as
   * deltas; it is published with a delta carrying what changed meanwhile). An upload between chunk
   * sets ships only the pages changed since the previous one. A compaction also starts once the
   * deltas reach 10% of the chunk set's stored bytes (at least 4 MiB); a change of over 128 MiB of
   * pages is uploaded as a chunk set at once. 0: every upload is a chunk set. Default 200.
   */
  maxDeltas?: number;
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

/**
 * How a restored database is checked before it takes writes. Every chunk (or a full snapshot's whole
 * file) is always verified against the sha256 addresses the manifest authenticates before the file is
 * opened; the options differ in when SQLite's own `PRAGMA quick_check` runs:
 * - `'background'` (default): the database opens and serves reads as soon as the hashes verified;
 *   quick_check and the fsync of the restored file run in a worker beside it. Writes wait (they do not
 *   fail) and no snapshot is taken until both passed. If quick_check fails, writes are refused with
 *   `SNAPSHOT_CORRUPT`, the `restore-check` event and `status()` say so, and nothing is ever uploaded.
 * - `'before-open'`: quick_check and fsync first; `drizzle()` resolves only after both, and a snapshot
 *   that fails quick_check is skipped for the next older one that passes (the slowest start).
 * - `'hash-only'`: no quick_check at all (the hashes prove the bytes are the ones that were uploaded,
 *   not that the database they form was sound when it was snapshotted); the fsync still runs in the
 *   background and writes wait for it.
 */
export type RestoreVerify = 'background' | 'before-open' | 'hash-only';
export const RESTORE_VERIFY_MODES: readonly RestoreVerify[] = ['background', 'before-open', 'hash-only'];

export interface MigrationsOptions {
  /** drizzle-kit's migrations folder (`meta/_journal.json` and one .sql file per migration), e.g. './drizzle'. */
  folder: string;
  /**
   * Apply the migrations the database lacks at start-up, with drizzle's own migrator (all pending ones
   * in one transaction): a restore point with the schema before them is made durable first, and one
   * with the new schema after. Default false: they are only compared (and logged).
   */
  apply?: boolean;
  /** drizzle's migrations table (its `migrationsTable` option). Default '__drizzle_migrations'. */
  table?: string;
  /**
   * The database has applied migrations newer than the folder's last one (old code on a newer schema):
   * 'reject' (default) fails `drizzle()` with SCHEMA_AHEAD before any write; 'start' starts anyway, at
   * the app's own risk, with a warning in the log.
   */
  ifAhead?: 'reject' | 'start';
}

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
  /** When a restored file is quick_checked (see RestoreVerify). */
  verify: RestoreVerify;
  role: Role;
  leaseDurationSec: number;
  replicaPollMs: number;
  schedule: { debounceMs: number; maxCommits: number; maxIntervalMs: number };
  retention: RetentionPolicy;
  codec: Codec;
  mode: 'full' | 'incremental';
  chunkSize: number;
  maxDeltas: number;
  gcGraceMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  retry: RetryPolicy;
  signals: boolean;
  shutdownTimeoutMs: number;
  /** SQLite `synchronous` of the app's connection. */
  synchronous: 'normal' | 'full';
  /** The migrations folder to compare with (and apply), if given; `folder` absolute. */
  migrations: Required<MigrationsOptions> | undefined;
  /** drizzle's migrations table, read for every restore point's schema position. */
  migrationsTable: string;
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

/** drizzle's own options (drizzle-orm's `DrizzleConfig`), passed through to drizzle-orm/libsql. */
export const DRIZZLE_OPTION_KEYS = keysOf<DrizzleConfig>({ logger: true, schema: true, casing: true, cache: true });

/** Every top-level option of `drizzle()`: this library's plus drizzle's own. */
export const TOP_LEVEL_OPTION_KEYS: readonly string[] = [
  ...keysOf<OwnOptions>({
    connection: true,
    store: true,
    snapshot: true,
    restore: true,
    verify: true,
    role: true,
    lease: true,
    replica: true,
    shutdown: true,
    retry: true,
    log: true,
    synchronous: true,
    metrics: true,
    encryption: true,
    migrations: true,
  }),
  ...DRIZZLE_OPTION_KEYS,
];

/** @libsql/client's `Config`: the keys `connection` may carry. */
export const CONNECTION_OPTION_KEYS = keysOf<LibsqlConfig>({
  url: true,
  authToken: true,
  encryptionKey: true,
  remoteEncryptionKey: true,
  syncUrl: true,
  syncInterval: true,
  readYourWrites: true,
  offline: true,
  tls: true,
  intMode: true,
  fetch: true,
  concurrency: true,
  timeout: true,
});

export const SNAPSHOT_OPTION_KEYS = keysOf<SnapshotOptions>({
  debounceMs: true,
  maxCommits: true,
  maxIntervalMs: true,
  retain: true,
  codec: true,
  mode: true,
  chunkSize: true,
  maxDeltas: true,
  gcGraceMs: true,
  retryBaseMs: true,
  retryMaxMs: true,
});
const RETAIN_OPTION_KEYS = ['count', 'maxAgeMs'] as const;
export const LEASE_OPTION_KEYS = keysOf<LeaseOptions>({ durationSec: true });
export const REPLICA_OPTION_KEYS = keysOf<ReplicaOptions>({ pollMs: true });
export const SHUTDOWN_OPTION_KEYS = keysOf<ShutdownOptions>({ signals: true, timeoutMs: true });
export const RETRY_OPTION_KEYS = keysOf<RetryPolicy>({ retries: true, minTimeoutMs: true, maxTimeoutMs: true });
export const METRICS_OPTION_KEYS = ['meter'] as const;
export const MIGRATIONS_OPTION_KEYS = keysOf<MigrationsOptions>({ folder: true, apply: true, table: true, ifAhead: true });

/**
 * Everything `drizzle()` takes that this module judges (DrizzleBlobConfig in src/drizzle.ts is the
 * documented type; this one stays loose so a wrong type reaches the checks below as a CONFIG error).
 */
export interface SyncOptions extends OwnOptions, DrizzleConfig<Record<string, unknown>> {}

/** This library's top-level options (everything but drizzle's own). */
export interface OwnOptions {
  connection: string | LibsqlConfig;
  store?: SnapshotStore;
  snapshot?: SnapshotOptions;
  restore?: RestoreMode | RestoreTarget;
  verify?: RestoreVerify;
  role?: Role;
  lease?: LeaseOptions;
  replica?: ReplicaOptions;
  shutdown?: ShutdownOptions;
  retry?: Partial<RetryPolicy>;
  log?: SyncLogOption;
  synchronous?: 'normal' | 'full';
  metrics?: false | { meter?: Meter };
  encryption?: EncryptionOptions;
  migrations?: MigrationsOptions;
}

/**
 * The one place where drizzle()'s options are checked and defaulted (as libsql-client's expandConfig):
 * unknown keys at every level, wrong types, bounds. Pure and synchronous, so it runs before anything is
 * created or contacted (no folder, no lock file, no store request, no key provider call).
 */
export function resolveSyncConfig(input: SyncOptions): ResolvedSyncConfig {
  checkOptions(input);
  const { lease, replica, shutdown, retry: retryOptions } = input;
  const s = input.snapshot ?? {};
  const synchronous = input.synchronous ?? 'normal';

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
    throw new SyncError('CONFIG', `restore must be 'required', 'if-exists', 'skip', { at: Date | ISO time }, { seq: number } or { beforeMigration: tag | hash }; got ${JSON.stringify(requested)}.`);
  }
  const verify = input.verify ?? 'background';
  if (!RESTORE_VERIFY_MODES.includes(verify)) {
    throw new SyncError('CONFIG', `verify must be ${RESTORE_VERIFY_MODES.map((m) => `'${m}'`).join(', ')}; got ${describe(verify)}.`);
  }
  const role = input.role ?? 'auto';
  if (!['auto', 'writer', 'replica'].includes(role)) throw new SyncError('CONFIG', `role must be 'auto', 'writer' or 'replica'; got ${JSON.stringify(role)}.`);
  const leaseDurationSec = lease?.durationSec ?? 30;
  if (typeof leaseDurationSec !== 'number' || !Number.isInteger(leaseDurationSec) || leaseDurationSec < 15 || leaseDurationSec > 60) {
    throw new SyncError('CONFIG', `lease.durationSec must be a whole number of seconds from 15 to 60 (Azure's bounds); got ${describe(leaseDurationSec)}.`);
  }
  const codec = s.codec ?? 'lz4';
  if (!CODECS.includes(codec)) throw new SyncError('CONFIG', `snapshot.codec must be one of ${CODECS.join(', ')}; got ${JSON.stringify(codec)}.`);
  const schedule = {
    debounceMs: positive('snapshot.debounceMs', s.debounceMs, DEFAULT_DEBOUNCE_MS),
    maxCommits: positive('snapshot.maxCommits', s.maxCommits, 1_000, 1),
    maxIntervalMs: positive('snapshot.maxIntervalMs', s.maxIntervalMs, 300_000, 1),
  };
  if (schedule.maxIntervalMs < schedule.debounceMs) {
    throw new SyncError('CONFIG', `snapshot.maxIntervalMs (${schedule.maxIntervalMs}) must not be smaller than snapshot.debounceMs (${schedule.debounceMs}).`);
  }
  const retry: RetryPolicy = {
    retries: positive('retry.retries', retryOptions?.retries, DEFAULT_RETRY.retries),
    minTimeoutMs: positive('retry.minTimeoutMs', retryOptions?.minTimeoutMs, DEFAULT_RETRY.minTimeoutMs),
    maxTimeoutMs: positive('retry.maxTimeoutMs', retryOptions?.maxTimeoutMs, DEFAULT_RETRY.maxTimeoutMs),
  };
  const mode = s.mode ?? DEFAULT_MODE;
  if (mode !== 'full' && mode !== 'incremental') throw new SyncError('CONFIG', `snapshot.mode must be 'full' or 'incremental'; got ${JSON.stringify(mode)}.`);
  const chunkSize = positive('snapshot.chunkSize', s.chunkSize, DEFAULT_CHUNK_SIZE, 1 << 16);
  if (chunkSize > 1 << 24 || (chunkSize & (chunkSize - 1)) !== 0) throw new SyncError('CONFIG', `snapshot.chunkSize must be a power of two from 65536 to 16777216 bytes; got ${chunkSize}.`);
  const signals = shutdown?.signals ?? true;
  if (typeof signals !== 'boolean') throw new SyncError('CONFIG', `shutdown.signals must be true or false; got ${describe(signals)}.`);
  const retain = typeof s.retain === 'object' && s.retain !== null ? s.retain : { count: s.retain };
  const migrations = resolveMigrations(input.migrations);
  return {
    dbPath,
    libsql,
    restore,
    restoreTarget,
    verify,
    role,
    leaseDurationSec,
    replicaPollMs: positive('replica.pollMs', replica?.pollMs, 5_000, 10),
    schedule,
    mode,
    chunkSize,
    maxDeltas: Math.floor(positive('snapshot.maxDeltas', s.maxDeltas, DEFAULT_MAX_DELTAS)),
    gcGraceMs: positive('snapshot.gcGraceMs', s.gcGraceMs, 600_000),
    retention: {
      count: Math.floor(positive('snapshot.retain.count', retain.count, 20, 1)),
      maxAgeMs: positive('snapshot.retain.maxAgeMs', retain.maxAgeMs, Infinity, 1),
    },
    codec,
    retryBaseMs: positive('snapshot.retryBaseMs', s.retryBaseMs, 1_000, 1),
    retryMaxMs: positive('snapshot.retryMaxMs', s.retryMaxMs, 60_000, 1),
    retry,
    signals,
    shutdownTimeoutMs: positive('shutdown.timeoutMs', shutdown?.timeoutMs, 25_000, 1),
    synchronous,
    migrations,
    migrationsTable: migrations?.table ?? MIGRATIONS_TABLE,
  };
}

function resolveMigrations(m: MigrationsOptions | undefined): Required<MigrationsOptions> | undefined {
  if (m === undefined) return undefined;
  if (typeof m.folder !== 'string' || m.folder === '') throw new SyncError('CONFIG', `migrations.folder must be the path of drizzle-kit's migrations folder, e.g. './drizzle'; got ${describe(m.folder)}.`);
  const apply = m.apply ?? false;
  if (typeof apply !== 'boolean') throw new SyncError('CONFIG', `migrations.apply must be true or false; got ${describe(apply)}.`);
  const table = m.table ?? MIGRATIONS_TABLE;
  if (typeof table !== 'string' || table === '') throw new SyncError('CONFIG', `migrations.table must be the name of drizzle's migrations table (its migrationsTable option); got ${describe(table)}.`);
  const ifAhead = m.ifAhead ?? 'reject';
  if (ifAhead !== 'reject' && ifAhead !== 'start') throw new SyncError('CONFIG', `migrations.ifAhead must be 'reject' or 'start'; got ${describe(ifAhead)}.`);
  return { folder: resolve(m.folder), apply, table, ifAhead };
}

/**
 * Every option's name at every level, and the type of each level and of the options that need no
 * defaulting: throws CONFIG for the first problem. Judges no URL, so a remote-URL branch of drizzle()
 * can call it too before passing the connection through.
 */
export function checkOptions(input: SyncOptions): void {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new SyncError('CONFIG', 'drizzle() takes one options object: { connection, store, ... }.');
  }
  assertKnownKeys(input, TOP_LEVEL_OPTION_KEYS);
  if (input.connection === undefined || input.connection === null) {
    throw new SyncError('CONFIG', 'drizzle({ connection }) is required: pass { url: "file:./data/app.db" }.');
  }
  if (typeof input.connection !== 'string') optionsObject(input.connection, 'connection', CONNECTION_OPTION_KEYS, '{ url: "file:./data/app.db" }');
  optionsObject(input.lease, 'lease', LEASE_OPTION_KEYS, '{ durationSec: 30 }');
  optionsObject(input.replica, 'replica', REPLICA_OPTION_KEYS, '{ pollMs: 5000 }');
  optionsObject(input.shutdown, 'shutdown', SHUTDOWN_OPTION_KEYS, '{ timeoutMs: 25000 }');
  optionsObject(input.retry, 'retry', RETRY_OPTION_KEYS, '{ retries: 5 }');
  const s = optionsObject(input.snapshot, 'snapshot', SNAPSHOT_OPTION_KEYS, '{ debounceMs: 2000 }') ?? {};
  if (typeof s.retain === 'object') optionsObject(s.retain, 'snapshot.retain', RETAIN_OPTION_KEYS, '{ count: 20, maxAgeMs: 604800000 }');
  else if (s.retain !== undefined && typeof s.retain !== 'number') {
    throw new SyncError('CONFIG', `snapshot.retain must be a number of snapshots or { count, maxAgeMs }; got ${describe(s.retain)}.`);
  }
  const synchronous = input.synchronous ?? 'normal';
  if (synchronous !== 'normal' && synchronous !== 'full') throw new SyncError('CONFIG', `synchronous must be 'normal' or 'full'; got ${describe(synchronous)}.`);
  // Checked even when SKIP_RESTORE makes it moot: a typo there is still a typo.
  if (typeof input.restore === 'object' && input.restore !== null) checkTarget(input.restore);
  if (input.metrics !== false) optionsObject(input.metrics, 'metrics', METRICS_OPTION_KEYS, '{ meter } or false');
  checkLogOption(input.log);
  checkStoreOption(input.store);
  checkEncryptionOptions(input.encryption);
  optionsObject(input.migrations, 'migrations', MIGRATIONS_OPTION_KEYS, "{ folder: './drizzle', apply: true }");
}

function checkTarget(target: object): void {
  assertKnownKeys(target, ['at', 'seq', 'beforeMigration'], 'restore');
  if (Object.keys(target).length > 1) throw new SyncError('CONFIG', `restore takes one of { at }, { seq } or { beforeMigration }; got ${Object.keys(target).join(' and ')}: remove all but one.`);
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
  if ('beforeMigration' in target) {
    if (typeof target.beforeMigration !== 'string' || target.beforeMigration.trim() === '') {
      throw new SyncError('CONFIG', `restore.beforeMigration must name a migration by its journal tag (e.g. '0003_add_tags') or its hash; got ${describe(target.beforeMigration)}.`);
    }
    return { beforeMigration: target.beforeMigration.trim() };
  }
  throw new SyncError('CONFIG', `restore as an object must be { at: Date | ISO time }, { seq: number } or { beforeMigration: tag | hash }; got ${JSON.stringify(target)}.`);
}

/** `log`: false, or a pino-compatible logger (its other keys are its own business, not checked). */
function checkLogOption(log: unknown): void {
  if (log === undefined || log === false) return;
  const logger = log as Record<string, unknown> | null;
  if (logger === null || typeof logger !== 'object' || !['info', 'warn', 'error'].every((level) => typeof logger[level] === 'function')) {
    throw new SyncError('CONFIG', `log must be false or a pino-compatible logger with info, warn and error methods; got ${describe(log)}.`);
  }
}

/** `store`: made by a store factory, which has already checked its own options. */
function checkStoreOption(store: unknown): void {
  if (store === undefined) return;
  const given = store as Partial<SnapshotStore> | null;
  if (given === null || typeof given !== 'object' || typeof given.probe !== 'function' || typeof given.location !== 'string') {
    throw new SyncError('CONFIG', `store must be a snapshot store made by azureBlobStore({ ... }) or directoryStore({ dir }); got ${describe(store)}. Leave it out to use storeFromEnv().`);
  }
}
