import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createClient, type Client, type Config as LibsqlConfig } from '@libsql/client';
import type { DrizzleConfig } from 'drizzle-orm';
import { drizzle as drizzleLibsql, type LibSQLDatabase } from 'drizzle-orm/libsql';
import { CountingClient } from './client/counting-client.ts';
import { resolveSyncConfig, type ShutdownOptions, type SnapshotOptions } from './config.ts';
import { SyncError } from './errors.ts';
import { resolveLogger, type SyncLogOption } from './log.ts';
import { storeFromEnv } from './store/from-env.ts';
import type { SnapshotStore } from './store/store.ts';
import { hydrate, type RestoreMode } from './sync/restore.ts';
import type { RetryPolicy } from './sync/retry.ts';
import { Snapshotter } from './sync/snapshotter.ts';
import { SyncController, type SyncHandle } from './sync/sync-controller.ts';

export interface DrizzleBlobConfig<TSchema extends Record<string, unknown> = Record<string, never>> extends DrizzleConfig<TSchema> {
  /** The local libSQL file, e.g. `{ url: 'file:./data/app.db' }`; other @libsql/client options pass through. */
  connection: string | LibsqlConfig;
  /** Where snapshots live. Default: `storeFromEnv()`. */
  store?: SnapshotStore;
  snapshot?: SnapshotOptions;
  /** Default 'if-exists'; env SKIP_RESTORE=true means 'skip'. */
  restore?: RestoreMode;
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
  const { connection, store: givenStore, snapshot, restore, shutdown, retry, log: logOption, synchronous = 'normal', ...drizzleConfig } = config;
  if (synchronous !== 'normal' && synchronous !== 'full') throw new SyncError('CONFIG', `synchronous must be 'normal' or 'full'; got ${JSON.stringify(synchronous)}.`);
  const synchronousPragma = `PRAGMA synchronous=${synchronous.toUpperCase()}`;
  const resolved = resolveSyncConfig({ connection, restore, snapshot, shutdown, retry });
  const log = resolveLogger(logOption);
  const store = givenStore ?? storeFromEnv();
  mkdirSync(dirname(resolved.dbPath), { recursive: true });

  if (resolved.restore !== 'skip') await store.probe();
  const hydrated = await hydrate({ store, dbPath: resolved.dbPath, mode: resolved.restore, retry: resolved.retry, log });
  if (hydrated.action !== 'downloaded') log.info({ dbPath: resolved.dbPath, action: hydrated.action, pending: hydrated.pending }, 'database opened without download');

  const inner = createClient(resolved.libsql);
  try {
    // WAL lets the snapshot's read transaction run beside writers.
    await inner.execute('PRAGMA journal_mode=WAL');
    await inner.execute(synchronousPragma);
  } catch (error) {
    inner.close();
    throw error;
  }
  const snapshotter = new Snapshotter(
    { store, dbPath: resolved.dbPath, codec: resolved.codec, retain: resolved.retain, retry: resolved.retry, log },
    hydrated.head,
  );
  const controller = new SyncController(
    {
      dbPath: resolved.dbPath,
      schedule: resolved.schedule,
      retryBaseMs: resolved.retryBaseMs,
      retryMaxMs: resolved.retryMaxMs,
      shutdownTimeoutMs: resolved.shutdownTimeoutMs,
      signals: resolved.signals,
      log,
    },
    snapshotter,
    hydrated.state,
    hydrated.pending,
  );
  const client = new CountingClient(inner, controller, synchronousPragma);
  const db = drizzleLibsql({ ...drizzleConfig, client }) as unknown as BlobDatabase<TSchema>;
  controller.start(
    {
      writeLock: client.writeLock,
      async close() {
        try {
          // Folds the WAL into the file so the next start (or another process) sees one file.
          await inner.execute('PRAGMA wal_checkpoint(TRUNCATE)');
        } catch (error) {
          // Not fatal: the final snapshot is already durable and SQLite replays the WAL on next open.
          log.warn({ error: String(error) }, 'WAL checkpoint at close failed');
        } finally {
          inner.close();
        }
      },
    },
    hydrated.restoredFrom,
    hydrated.durationMs,
  );
  db.$sync = controller;
  return db;
}
