/**
 * Shared test fixtures: temp folders, a small schema, a store decorator that counts requests (over a
 * real store, not a mock), and event waiting with a bound instead of sleeps.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import assert from 'node:assert/strict';
import { drizzle, SyncError, type DrizzleBlobConfig, type Leaser, type SnapshotStore, type SyncErrorCode, type SyncHandle, type SyncEvents } from 'drizzle-libsql-blob';
import { MANIFEST_KEY, decodeManifest, type Manifest } from '../../src/sync/manifest.ts';

export const notes = sqliteTable('notes', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  body: text('body').notNull(),
});
export const schema = { notes };
export const CREATE_NOTES = 'CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)';

export interface TempDir {
  path: string;
  cleanup(): Promise<void>;
}

export async function tempDir(label: string): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), `dlb-${label}-`));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Opens a database with test-friendly defaults (quiet, no signal handlers, short debounce). */
export async function open(dbPath: string, store: SnapshotStore, overrides: Partial<DrizzleBlobConfig<typeof schema>> = {}) {
  const db = await drizzle({
    connection: { url: `file:${dbPath}` },
    schema,
    store,
    log: false,
    shutdown: { signals: false, timeoutMs: 20_000 },
    ...overrides,
    snapshot: { debounceMs: 50, ...overrides.snapshot },
  });
  await db.run(CREATE_NOTES);
  return db;
}

type DataCall = 'probe' | 'readSmall' | 'writeSmall' | 'uploadBuffer' | 'uploadFile' | 'download' | 'downloadToFile' | 'delete' | 'list';
type LeaseCall = 'acquireLease' | 'renewLease' | 'releaseLease';
export type StoreCalls = Record<DataCall | LeaseCall, number>;
const LEASE_CALLS: readonly string[] = ['acquireLease', 'renewLease', 'releaseLease'] satisfies LeaseCall[];

/**
 * Wraps a real store and counts the requests made through it. `total()` counts data requests; the
 * writer lease's acquire/renew/release are counted in `calls` but not in `total()`.
 */
export function countingStore(inner: SnapshotStore): SnapshotStore & { calls: StoreCalls; total(): number } {
  const calls: StoreCalls = { probe: 0, readSmall: 0, writeSmall: 0, uploadBuffer: 0, uploadFile: 0, download: 0, downloadToFile: 0, delete: 0, list: 0, acquireLease: 0, renewLease: 0, releaseLease: 0 };
  const wrap =
    <K extends keyof StoreCalls>(name: K) =>
    (...args: unknown[]) => {
      calls[name]++;
      return (inner[name] as (...a: unknown[]) => unknown)(...args);
    };
  return {
    location: inner.location,
    ...(inner.timeResolutionMs === undefined ? {} : { timeResolutionMs: inner.timeResolutionMs }),
    calls,
    total: () => Object.entries(calls).reduce((sum, [name, n]) => (LEASE_CALLS.includes(name) ? sum : sum + n), 0),
    probe: wrap('probe') as SnapshotStore['probe'],
    readSmall: wrap('readSmall') as SnapshotStore['readSmall'],
    writeSmall: wrap('writeSmall') as SnapshotStore['writeSmall'],
    uploadBuffer: wrap('uploadBuffer') as SnapshotStore['uploadBuffer'],
    uploadFile: wrap('uploadFile') as SnapshotStore['uploadFile'],
    download: wrap('download') as SnapshotStore['download'],
    downloadToFile: wrap('downloadToFile') as SnapshotStore['downloadToFile'],
    delete: wrap('delete') as SnapshotStore['delete'],
    list: wrap('list') as SnapshotStore['list'],
    acquireLease: wrap('acquireLease') as Leaser['acquireLease'],
    renewLease: wrap('renewLease') as Leaser['renewLease'],
    releaseLease: wrap('releaseLease') as Leaser['releaseLease'],
  };
}

/** Resolves with the next event of that kind matching `predicate`; rejects after `timeoutMs`. */
export function nextEvent<E extends keyof SyncEvents>(
  sync: SyncHandle,
  event: E,
  predicate: (...args: SyncEvents[E]) => boolean = () => true,
  timeoutMs = 15_000,
): Promise<SyncEvents[E][0]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sync.off(event, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for '${event}'`));
    }, timeoutMs);
    const listener = (...args: SyncEvents[E]) => {
      if (!predicate(...args)) return;
      clearTimeout(timer);
      sync.off(event, listener);
      resolve(args[0]);
    };
    sync.on(event, listener);
  });
}

/** For `assert.rejects`: the error is a SyncError with this code (its message shown if not). */
export function isCode(code: SyncErrorCode) {
  return (error: unknown) => {
    assert.ok(error instanceof SyncError, `expected a SyncError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return true;
  };
}

/** The store's manifest as it is now (the test expects one to exist). */
export async function readManifest(store: SnapshotStore): Promise<Manifest> {
  const object = await store.readSmall(MANIFEST_KEY);
  assert.ok(object, `${store.location} holds no manifest`);
  return decodeManifest(object.body, store.location);
}
