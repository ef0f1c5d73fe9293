import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Client, Config as LibsqlConfig } from '@libsql/client';
import { createClient } from '@libsql/client/sqlite3';
import type { DrizzleConfig } from 'drizzle-orm';
import type { LibSQLDatabase } from 'drizzle-orm/libsql';
import { drizzle as drizzleLibsql } from 'drizzle-orm/libsql/sqlite3';
import { CountingClient } from './client/counting-client.ts';
import { checkOptions, resolveSyncConfig, type LeaseOptions, type MigrationsOptions, type RestoreVerify, type ReplicaOptions, type ResolvedSyncConfig, type Role, type ShutdownOptions, type SnapshotOptions } from './config.ts';
import { latestSnapshot, type RestoreTarget } from './sync/manifest.ts';
import type { Meter } from '@opentelemetry/api';
import { SyncError, findSyncError } from './errors.ts';
import { SyncMetrics, meterProviderRegistered, metricAttributes } from './telemetry/metrics.ts';
import { resolveLogger, type SyncLogOption, type SyncLogger } from './log.ts';
import { storeFromEnv } from './store/from-env.ts';
import { retrying } from './store/retrying-store.ts';
import type { SnapshotStore } from './store/store.ts';
import type { RestoreMode } from './sync/restore.ts';
import { startUp, type StartupResult } from './sync/startup.ts';
import type { RetryPolicy } from './sync/retry.ts';
import { Snapshotter } from './sync/snapshotter.ts';
import { writerConnectionSetup } from './sync/checkpointer.ts';
import { SyncController, syncHandle, type SyncHandle } from './sync/sync-controller.ts';
import { WriterLease } from './sync/lease.ts';
import { resolveChunkKeys, type ChunkKeys, type EncryptionOptions } from './sync/chunks/encryption.ts';
import { Sidecar } from './local/sidecar.ts';
import { ReplicaFollower } from './sync/replica.ts';
import { acquireFileLock, type FileLock } from './local/file-lock.ts';
import { settleClosedConnections } from './local/settle-connections.ts';
import { isRemoteConnection, openRemote } from './remote.ts';
import { verifyLatest, type RemoteHead } from './sync/restore.ts';
import type { SchemaPosition } from './sync/schema-position.ts';
import type { MigrationsJournal } from './migrations/journal.ts';
import type { SchemaCheck } from './migrations/at-start.ts';

export interface DrizzleBlobConfig<TSchema extends Record<string, unknown> = Record<string, never>> extends DrizzleConfig<TSchema> {
  /**
   * The local libSQL file, e.g. `{ url: 'file:./data/app.db' }`; other @libsql/client options pass through.
   * A libSQL server or Turso URL (`libsql:`, `http(s):`, `ws(s):`) or an embedded replica (`syncUrl`) goes
   * straight to drizzle-orm/libsql: no store, lease or snapshots, and `$sync.status().role` is 'remote'.
   */
  connection: string | LibsqlConfig;
  /** Where snapshots live. Default: `storeFromEnv()`. */
  store?: SnapshotStore;
  snapshot?: SnapshotOptions;
  /**
   * Default 'if-exists'; env SKIP_RESTORE=true means 'skip'. `{ at: Date | ISO time }` or `{ seq }` rolls the
   * database back to that snapshot once (the roll-back becomes the new latest snapshot; starting again with
   * the same target does not roll back a second time).
   */
  restore?: RestoreMode | RestoreTarget;
  /**
   * When a restored database gets SQLite's `PRAGMA quick_check` (its chunks' hashes are always verified
   * before it opens). Default 'background': reads are served at once, writes wait until the check (and
   * the fsync of the restored file) passed; a failed check refuses writes with `SNAPSHOT_CORRUPT` and
   * uploads nothing. 'before-open': check before `drizzle()` resolves (falls back to an older snapshot
   * that passes). 'hash-only': no quick_check. See `RestoreVerify`.
   */
  verify?: RestoreVerify;
  /** Default 'auto': the writer if the lease is free, else a read replica that takes over when it frees. */
  role?: Role;
  lease?: LeaseOptions;
  replica?: ReplicaOptions;
  shutdown?: ShutdownOptions;
  /** Retries of one store operation (on top of the Azure SDK's per-request retries). */
  retry?: Partial<RetryPolicy>;
  /** Sync logger, pino-compatible; console by default, `false` for silence. drizzle's `logger` still logs queries. */
  log?: SyncLogOption;
  /**
   * SQLite `synchronous` for the app's connection. Default 'normal': in WAL mode a commit survives a
   * process crash but is not fsynced, so it never waits behind a snapshot's disk writes (a 'full' fsync
   * per commit stalled writes 50 ms+ during a snapshot here). Durability is the store's job: the local
   * disk is ephemeral, and `flush()` says when a commit is durable.
   */
  synchronous?: 'normal' | 'full';
  /**
   * OpenTelemetry metrics through @opentelemetry/api: no-op unless the app installs an SDK (before calling
   * drizzle()). `{ meter }` uses that meter; `false` turns them off.
   */
  metrics?: false | { meter?: Meter };
  /**
   * Client-side encryption of incremental snapshots (AES-256-GCM per chunk; the store holds ciphertext
   * only). Default: the key in env SNAPSHOT_ENCRYPTION_KEY, if set.
   */
  encryption?: EncryptionOptions;
  /**
   * drizzle-kit's migrations folder, compared at start-up with the database's applied migrations (after
   * it is hydrated, before anything writes): `apply: true` applies the pending ones (a restore point with
   * the old schema is made durable first, one with the new schema after); a database with migrations the
   * folder does not know (older code on a newer schema) fails with SCHEMA_AHEAD. Restore points are then
   * labelled with the journal's tags. See `MigrationsOptions`.
   */
  migrations?: MigrationsOptions;
}

export type BlobDatabase<TSchema extends Record<string, unknown> = Record<string, never>> = LibSQLDatabase<TSchema> & {
  $client: Client;
  $sync: SyncHandle;
};

/**
 * drizzle's `drizzle()` for `drizzle-orm/libsql`, plus an `await`: resolves with a real
 * `LibSQLDatabase` over a local file already hydrated from the store, counting every commit and
 * snapshotting after bursts of them.
 */
export async function drizzle<TSchema extends Record<string, unknown> = Record<string, never>>(
  config: DrizzleBlobConfig<TSchema>,
): Promise<BlobDatabase<TSchema>> {
  // Every option name and shape at every level (unknown keys included) is checked first, remote or not,
  // before anything is created or contacted.
  checkOptions(config);
  // A libSQL server / Turso (or an embedded replica) keeps the data itself: straight to drizzle-orm/libsql,
  // before anything of ours (store, lease, file lock) is created.
  if (isRemoteConnection(config.connection)) return openRemote<TSchema>(config);
  const resolved = resolveSyncConfig(config);
  const { store: givenStore, log: logOption, metrics, encryption, logger, schema, casing, cache } = config;
  const drizzleConfig: DrizzleConfig<Record<string, unknown>> = { logger, schema, casing, cache };
  const synchronousPragma = `PRAGMA synchronous=${resolved.synchronous.toUpperCase()}`;
  const log = resolveLogger(logOption);
  const keys = await resolveChunkKeys(encryption);
  if (keys && resolved.mode !== 'incremental') {
    throw new SyncError('CONFIG', "Encryption applies to incremental snapshots: set snapshot.mode: 'incremental' (or remove the key).");
  }
  const store = retrying(givenStore ?? storeFromEnv(), resolved.retry, log);
  const { dbPath } = resolved;
  // The folder is read before anything is created or contacted: a wrong one is a CONFIG error at once.
  const journal = resolved.migrations ? (await import('./migrations/journal.ts')).MigrationsJournal.read(resolved.migrations.folder) : undefined;
  mkdirSync(dirname(dbPath), { recursive: true });
  // One opener per file (another process, or a second drizzle() here): LOCKED at once. Held until close()
  // has settled the lease and the sidecar; a failed start releases it.
  const fileLock = await acquireFileLock(dbPath, 'drizzle()');
  try {
    return await openLocked<TSchema>({ resolved, store, log, keys, encryption, metrics, synchronousPragma, drizzleConfig, fileLock, journal });
  } catch (error) {
    await fileLock.release();
    throw error;
  }
}

interface LockedStart {
  resolved: ResolvedSyncConfig;
  store: SnapshotStore;
  log: SyncLogger;
  keys: ChunkKeys | undefined;
  encryption: EncryptionOptions | undefined;
  metrics: DrizzleBlobConfig['metrics'];
  synchronousPragma: string;
  drizzleConfig: DrizzleConfig<Record<string, unknown>>;
  fileLock: FileLock;
  journal: MigrationsJournal | undefined;
}

/** Everything after the file lock: start-up (probe included), client, controller. Throws with nothing left running. */
async function openLocked<TSchema extends Record<string, unknown>>(start: LockedStart): Promise<BlobDatabase<TSchema>> {
  const { resolved, store, log, keys, encryption, metrics, synchronousPragma, drizzleConfig, fileLock, journal } = start;
  const { dbPath } = resolved;
  // No meter given and no SDK registered: every instrument would be a no-op, so none is made (and the
  // OpenTelemetry API is not even loaded).
  const telemetry = metrics === false || (!metrics?.meter && !meterProviderRegistered()) ? undefined : new SyncMetrics({ meter: metrics?.meter, attributes: metricAttributes(store.location, dbPath) });
  const restoreStarted = performance.now();
  const restoreFailed = (error: unknown) => telemetry?.restoreFailed({ durationMs: performance.now() - restoreStarted, code: findSyncError(error)?.code ?? 'UNKNOWN' });

  // The controller exists only after the restore; the lease can be lost before that.
  let controller: SyncController | undefined;
  let lostEarly: SyncError | undefined;
  // The lease id goes into the sidecar just before the lease is requested (startUp): a crash at any
  // later point leaves a restart on this disk able to re-take it at once.
  const { sidecar, previous } = Sidecar.open(dbPath, store.location, { writer: resolved.role !== 'replica' });
  const lease = resolved.role === 'replica' ? undefined : new WriterLease({
    store,
    id: sidecar.leaseId!,
    durationSec: resolved.leaseDurationSec,
    log,
    onLost: (error) => (controller ? controller.leaseLost(error) : (lostEarly = error)),
  });
  removeLeftovers(dbPath);

  let started: StartupResult;
  try {
    started = await startUp({ store, dbPath, mode: resolved.restore, role: resolved.role, target: resolved.restoreTarget, verify: resolved.verify, log, keys, sidecar, previous, lease, ...(journal ? { journal } : {}) });
  } catch (error) {
    restoreFailed(error);
    // Released (or never taken): nothing of this start is left behind. Unconfirmed: the lease id stays
    // recorded, so a restart on this disk re-takes it instead of waiting for it to expire.
    if ((await lease?.release()) !== false) sidecar.abandon();
    throw error;
  }
  if (started.restoredFrom) {
    const from = started.restoredFrom;
    telemetry?.restoreSucceeded({ durationMs: started.durationMs, bytes: from.bytes, compressedBytes: from.compressedBytes, skipped: started.skipped.length });
  }
  const isWriter = started.role === 'writer';

  const openClient = (): Client => createClient(resolved.libsql);
  const poolSize = resolved.libsql.concurrency || 20; // @libsql/client's default (expandConfig)
  const inner = openClient();
  const snapshotter = (head: RemoteHead | null | undefined) =>
    new Snapshotter(
      {
        store,
        dbPath,
        codec: resolved.codec,
        retention: resolved.retention,
        log,
        lease: lease!,
        mode: resolved.mode,
        chunkSize: resolved.chunkSize,
        maxDeltas: resolved.maxDeltas,
        keys,
        gcGraceMs: resolved.gcGraceMs,
        beforePublish: (entry) => sync.notePublishing(entry),
        migrationsTable: resolved.migrationsTable,
        ...(journal ? { labelSchema: (position: SchemaPosition) => journal.label(position) } : {}),
      },
      head,
    );
  let schemaCheck: SchemaCheck | undefined;
  try {
    // Old code on a newer schema is refused here, before this start writes anything (SCHEMA_AHEAD).
    if (journal) {
      const { checkSchema } = await import('./migrations/at-start.ts');
      schemaCheck = await checkSchema(inner, journal, { dbPath, table: resolved.migrationsTable, ifAhead: resolved.migrations!.ifAhead, log, manifest: started.head?.manifest });
    }
    if (isWriter) await prepareWriterConnection(inner, synchronousPragma, poolSize);
  } catch (error) {
    inner.close();
    await lease?.release();
    throw error;
  }
  controller = new SyncController(
    {
      dbPath,
      schedule: resolved.schedule,
      retryBaseMs: resolved.retryBaseMs,
      retryMaxMs: resolved.retryMaxMs,
      shutdownTimeoutMs: resolved.shutdownTimeoutMs,
      signals: resolved.signals,
      log,
      storeLocation: store.location,
      verifyLatest: () => verifyLatest(store, { encryption, tempDir: dirname(dbPath), log }),
    },
    sidecar,
    started.role,
    isWriter && started.pending, // a replica uploads nothing; its file is the store's
  );
  const sync = controller;
  const client = new CountingClient(inner, controller, writerConnectionSetup(synchronousPragma));
  const db = drizzleLibsql({ ...drizzleConfig, client }) as unknown as BlobDatabase<TSchema>;
  const writer = isWriter ? snapshotter(started.head) : undefined;
  // The local file is the store's latest restore point, untouched: the record of changed pages starts now.
  const latest = started.head ? latestSnapshot(started.head.manifest) : undefined;
  const position = started.decision.position;
  const heldLatest =
    !started.pending &&
    latest !== undefined &&
    (started.restoredFrom ? started.restoredFrom.key === latest.key && !started.rolledBackTo : started.decision.action === 'keep' && typeof position === 'object' && position.seq === latest.seq && position.generation === latest.generation);
  if (writer && heldLatest) writer.seedRecord(latest);
  const startAs = writer
    ? { writer, lease: lease! }
    : {
        lease,
        follower: new ReplicaFollower({
          store,
          dbPath,
          log,
          pollMs: resolved.replicaPollMs,
          client,
          openClient,
          lease,
          keys,
          local: () => sync.localPosition(),
          onUpdate: (entry, head, ms) => sync.replicaUpdated(entry, head, ms),
          onLeaseTaken: () => sync.leaseTaken(),
          onPromote: async (head) => {
            prepareStore(store, log);
            await prepareWriterConnection(client.inner, synchronousPragma, poolSize);
            sync.promote(snapshotter(head), head);
          },
        }),
      };
  controller.start(
    {
      writeLock: client.writeLock,
      async close() {
        try {
          // Folds the WAL into the file so the next start (or another process) sees one file.
          await client.inner.execute('PRAGMA wal_checkpoint(TRUNCATE)');
        } catch (error) {
          // Not fatal: the final snapshot is already durable and SQLite replays the WAL on next open.
          log.warn({ error: String(error) }, 'WAL checkpoint at close failed');
        } finally {
          client.inner.close();
          unbindMetrics?.(); // a closed database leaves no listener or gauge callback behind
        }
        // Closed for real now, not whenever V8 collects (this client's connections and a replica's swapped-out
        // ones): see settle-connections.ts. Measured here (2 cores, ~25 MiB heap): 1-9 ms, one major collection;
        // 30-70 ms when the first one left a connection reachable and the all-available collection ran.
        const settled = await settleClosedConnections(dbPath);
        if (settled.open.length > 0) {
          log.warn({ dbPath, open: settled.open, waitedMs: Math.round(settled.durationMs) }, 'closed database still has connections open in this process; a restore over this file will refuse (LOCKED) until they are collected');
        }
      },
      releaseFile: () => fileLock.release(),
    },
    { from: started.restoredFrom, durationMs: started.durationMs, skipped: started.skipped, rolledBackTo: started.rolledBackTo, verify: resolved.verify, check: started.check },
    startAs,
  );
  const unbindMetrics = telemetry?.bind(controller);
  if (lostEarly) controller.leaseLost(lostEarly);
  db.$sync = syncHandle(controller);
  // What start-up did not need of the store (the Azure SDK) loads at the first idle moment after it,
  // not inside the first snapshot or lease renewal. A replica never writes: it loads it if promoted.
  if (isWriter) setImmediate(() => prepareStore(store, log)).unref();
  if (journal && schemaCheck?.verdict.kind === 'pending' && resolved.migrations!.apply) {
    if (!isWriter) {
      log.warn({ dbPath, pending: schemaCheck.verdict.pending.map((m) => m.tag) }, 'migrations.apply: this instance started as a read replica, so the writer applies the pending migrations, not this one');
    } else {
      const { applyMigrations } = await import('./migrations/at-start.ts');
      try {
        // Through this db: the counting client makes the commits so far durable before the first DDL.
        await applyMigrations(db as unknown as LibSQLDatabase<Record<string, unknown>>, journal, resolved.migrationsTable);
      } catch (error) {
        await controller.close().catch(() => undefined);
        throw error;
      }
      // The new schema's restore point. The app starts even if the store does not answer in time: the
      // commits are in the local file and upload when it does, as any others.
      await controller.durable().catch((error: unknown) => log.warn({ error: String(error) }, 'the restore point after the migrations is not in the store yet; it uploads when the store answers'));
    }
  }
  return db;
}

/**
 * WAL lets the snapshot's read transaction run beside writers; `synchronous` per the option; no
 * automatic checkpoints (they ran inside the app's commits: the worker folds the WAL, see
 * sync/checkpointer.ts). These settings are per connection and the client is a pool: a write runs on
 * whichever connection the pool hands out next, and reads that overlap open more (up to `concurrency`,
 * libSQL's default 20). So every connection the pool may ever hold is opened and prepared now, all at
 * once (each call borrows a distinct one; ~4 ms for 20).
 */
async function prepareWriterConnection(client: Client, synchronousPragma: string, poolSize: number): Promise<void> {
  await client.execute('PRAGMA journal_mode=WAL');
  const setup = writerConnectionSetup(synchronousPragma);
  await Promise.all(Array.from({ length: Math.max(1, poolSize) }, () => client.executeMultiple(setup)));
}

/** store.prepare(), which cannot fail the app: an operation that needs what it loads reports the same error. */
function prepareStore(store: SnapshotStore, log: SyncLogger): void {
  try {
    store.prepare?.();
  } catch (error) {
    log.warn({ store: store.location, error: String(error) }, 'preparing the store failed; its next operation will say why');
  }
}

/** Temp files a killed process left beside the database (snapshot copies, spools, half-restored files). */
function removeLeftovers(dbPath: string): void {
  const prefix = basename(dbPath);
  for (const name of readdirSync(dirname(dbPath))) {
    if (name.startsWith(`${prefix}.snap-`) || name.startsWith(`${prefix}.restore-`)) rmSync(join(dirname(dbPath), name), { force: true });
  }
}
