import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createClient, type Client, type Config as LibsqlConfig } from '@libsql/client';
import type { DrizzleConfig } from 'drizzle-orm';
import { drizzle as drizzleLibsql, type LibSQLDatabase } from 'drizzle-orm/libsql';
import { CountingClient } from './client/counting-client.ts';
import { resolveSyncConfig, type LeaseOptions, type ReplicaOptions, type Role, type ShutdownOptions, type SnapshotOptions } from './config.ts';
import type { RestoreTarget } from './sync/manifest.ts';
import type { Meter } from '@opentelemetry/api';
import { SyncError, findSyncError, isSyncError } from './errors.ts';
import { SyncMetrics, metricAttributes } from './telemetry/metrics.ts';
import { resolveLogger, type SyncLogOption } from './log.ts';
import { storeFromEnv } from './store/from-env.ts';
import type { SnapshotStore } from './store/store.ts';
import type { RestoreMode } from './sync/restore.ts';
import { hydrate } from './sync/startup.ts';
import type { RetryPolicy } from './sync/retry.ts';
import { Snapshotter } from './sync/snapshotter.ts';
import { SyncController, type SyncHandle } from './sync/sync-controller.ts';
import { WriterLease } from './sync/lease.ts';
import { resolveChunkKeys, type EncryptionOptions } from './sync/chunks/encryption.ts';
import { readLocalState } from './sync/local-state.ts';
import { ReplicaFollower } from './sync/replica.ts';
import { acquireFileLock } from './local/file-lock.ts';
import type { RemoteHead } from './sync/restore.ts';

export interface DrizzleBlobConfig<TSchema extends Record<string, unknown> = Record<string, never>> extends DrizzleConfig<TSchema> {
  /** The local libSQL file, e.g. `{ url: 'file:./data/app.db' }`; other @libsql/client options pass through. */
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
  if (config === null || typeof config !== 'object') throw new SyncError('CONFIG', 'drizzle() takes one options object: { connection, store, ... }.');
  const { connection, store: givenStore, snapshot, restore, role, lease: leaseOptions, replica, shutdown, retry, log: logOption, synchronous = 'normal', metrics, encryption, ...drizzleConfig } = config;
  if (synchronous !== 'normal' && synchronous !== 'full') throw new SyncError('CONFIG', `synchronous must be 'normal' or 'full'; got ${JSON.stringify(synchronous)}.`);
  const synchronousPragma = `PRAGMA synchronous=${synchronous.toUpperCase()}`;
  const resolved = resolveSyncConfig({ connection, restore, role, lease: leaseOptions, replica, snapshot, shutdown, retry });
  const log = resolveLogger(logOption);
  const keys = await resolveChunkKeys(encryption);
  if (keys && resolved.mode !== 'incremental') {
    throw new SyncError('CONFIG', "Encryption applies to incremental snapshots: set snapshot.mode: 'incremental' (or remove the key).");
  }
  const store = givenStore ?? storeFromEnv();
  const { dbPath } = resolved;
  mkdirSync(dirname(dbPath), { recursive: true });
  const fileLock = await acquireFileLock(dbPath, 'drizzle()'); // LOCKED while another process (or drizzle()) has this file; released by close()
  const telemetry = metrics === false ? undefined : new SyncMetrics({ meter: metrics?.meter, attributes: metricAttributes(store.location, dbPath) });
  const restoreStarted = performance.now();
  const restoreFailed = (error: unknown) => telemetry?.restoreFailed({ durationMs: performance.now() - restoreStarted, code: findSyncError(error)?.code ?? 'UNKNOWN' });
  await store.probe().catch(async (error: unknown) => {
    restoreFailed(error);
    await fileLock.release();
    throw error;
  });

  // The controller exists only after the restore; the lease can be lost before that.
  let controller: SyncController | undefined;
  let lostEarly: SyncError | undefined;
  // This file's sidecar, if it belongs to this store: its lease id (re-taken after a crash) and whether it is dirty.
  const sidecar = existsSync(dbPath) ? readLocalState(dbPath) : null;
  const saved = sidecar?.store === store.location ? sidecar : null;
  const lease = resolved.role === 'replica' ? undefined : new WriterLease({
    store,
    id: saved?.leaseId || randomUUID(),
    durationSec: resolved.leaseDurationSec,
    log,
    onLost: (error) => (controller ? controller.leaseLost(error) : (lostEarly = error)),
  });
  removeLeftovers(dbPath);
  // 'required' must not write anything to a store that holds no backup (a wrong prefix would get an empty manifest).
  const createManifest = resolved.restore !== 'required';
  const isWriter = lease
    ? await takeLease(lease, resolved.role === 'writer', saved?.dirty === true, dbPath, store, createManifest).catch(async (error: unknown) => {
        restoreFailed(error); // the start failed before any restore could run
        await fileLock.release();
        throw error;
      })
    : false;
  if (!isWriter && resolved.restoreTarget) {
    await lease?.release();
    await fileLock.release();
    throw new SyncError('LEASE_HELD', `A point-in-time restore needs the writer lease, and another instance holds it on ${store.location}: stop the writer first.`);
  }

  let hydrated;
  try {
    // A replica always follows the store, whatever the restore mode says about the local file.
    const mode = !isWriter && resolved.restore === 'skip' ? 'if-exists' : resolved.restore;
    hydrated = await hydrate({ store, dbPath, mode, target: resolved.restoreTarget, retry: resolved.retry, log, keys, local: saved, leaseId: lease?.id });
  } catch (error) {
    restoreFailed(error);
    await lease?.release();
    await fileLock.release();
    throw error;
  }
  if (hydrated.restoredFrom) {
    const from = hydrated.restoredFrom;
    telemetry?.restoreSucceeded({ durationMs: hydrated.durationMs, bytes: from.bytes, compressedBytes: from.compressedBytes, skipped: hydrated.skipped.length });
  }
  if (hydrated.action !== 'downloaded') log.info({ dbPath, action: hydrated.action, pending: hydrated.pending, role: isWriter ? 'writer' : 'replica' }, 'database opened without download');
  const { state } = hydrated; // recorded in the sidecar by hydrate, with this lease id

  const openClient = (): Client => createClient(resolved.libsql);
  const inner = openClient();
  const snapshotter = (head: RemoteHead | null | undefined) =>
    new Snapshotter(
      {
        store,
        dbPath,
        codec: resolved.codec,
        retention: resolved.retention,
        retry: resolved.retry,
        log,
        lease: lease!,
        mode: resolved.mode,
        chunkSize: resolved.chunkSize,
        keys,
        gcGraceMs: resolved.gcGraceMs,
        beforePublish: (entry) => sync.notePublishing(entry),
      },
      head,
    );
  try {
    if (isWriter) await prepareWriterConnection(inner, synchronousPragma);
  } catch (error) {
    inner.close();
    await lease?.release();
    await fileLock.release();
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
    },
    state,
    isWriter && hydrated.pending, // a replica uploads nothing; its file is the store's
  );
  const sync = controller;
  const client = new CountingClient(inner, controller, synchronousPragma);
  const db = drizzleLibsql({ ...drizzleConfig, client }) as unknown as BlobDatabase<TSchema>;
  const startAs = isWriter
    ? { writer: snapshotter(hydrated.head), lease: lease! }
    : {
        lease,
        follower: new ReplicaFollower({
          store,
          dbPath,
          retry: resolved.retry,
          log,
          pollMs: resolved.replicaPollMs,
          client,
          openClient,
          lease,
          keys,
          local: () => sync.localPosition(),
          onUpdate: (entry, head, ms) => sync.replicaUpdated(entry, head, ms),
          onPromote: async (head) => {
            await prepareWriterConnection(client.inner, synchronousPragma);
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
          await fileLock.release();
        }
      },
    },
    { from: hydrated.restoredFrom, durationMs: hydrated.durationMs, skipped: hydrated.skipped, rolledBackTo: hydrated.rolledBackTo },
    startAs,
  );
  const unbindMetrics = telemetry?.bind(controller);
  if (lostEarly) controller.leaseLost(lostEarly);
  db.$sync = controller;
  return db;
}

/** WAL lets the snapshot's read transaction run beside writers; `synchronous` per the option. */
async function prepareWriterConnection(client: Client, synchronousPragma: string): Promise<void> {
  await client.execute('PRAGMA journal_mode=WAL');
  await client.execute(synchronousPragma);
}

/** Writer: the lease or LEASE_HELD. Auto: the lease if free, else a replica (unless the local file holds unsaved commits). */
async function takeLease(lease: WriterLease, failFast: boolean, localDirty: boolean, dbPath: string, store: SnapshotStore, createManifest: boolean): Promise<boolean> {
  try {
    await lease.acquire({ createManifest });
    return true;
  } catch (error) {
    if (!isSyncError(error, 'LEASE_HELD')) throw error;
    if (failFast) {
      throw new SyncError(
        'LEASE_HELD',
        `Another instance holds the writer lease on ${store.location} (role: 'writer' fails fast). Stop the other writer, wait for its lease to expire ` +
          `(at most lease.durationSec after it died), or use role: 'auto' to start as a read replica that takes over when the lease frees.`,
        { cause: error },
      );
    }
    if (localDirty) {
      throw new SyncError(
        'DIVERGED',
        `${dbPath} holds commits never uploaded, and another instance now holds the writer lease on ${store.location}: starting as a replica would discard them. ` +
          `Copy the local file away to inspect it, then delete it to start as a replica of the store.`,
        { cause: error },
      );
    }
    return false;
  }
}

/** Temp files a killed process left beside the database (snapshot copies, spools, half-restored files). */
function removeLeftovers(dbPath: string): void {
  const prefix = basename(dbPath);
  for (const name of readdirSync(dirname(dbPath))) {
    if (name.startsWith(`${prefix}.snap-`) || name.startsWith(`${prefix}.restore-`)) rmSync(join(dirname(dbPath), name), { force: true });
  }
}
