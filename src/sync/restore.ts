import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { createClient } from '@libsql/client';
import { SyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { SnapshotStore } from '../store/store.ts';
import { MANIFEST_KEY, decodeManifest, latestSnapshot, type Manifest, type SnapshotEntry } from './manifest.ts';
import { fingerprint, newGeneration, readLocalState, sameFingerprint, writeLocalState, type LocalState } from './local-state.ts';
import { withRetry, type RetryPolicy } from './retry.ts';
import { startWorkerJob, type WorkerSuccess } from './run-in-worker.ts';

export type RestoreMode = 'required' | 'if-exists' | 'skip';

/** What the store's head looked like at start: `null` = empty store, `undefined` = not read (skip). */
export interface RemoteHead {
  etag: string;
  manifest: Manifest;
}

export interface HydrateResult {
  state: LocalState;
  head: RemoteHead | null | undefined;
  restoredFrom: SnapshotEntry | null;
  /** The local file holds commits the store has not seen: snapshot it soon. */
  pending: boolean;
  action: 'downloaded' | 'kept-local' | 'fresh' | 'skipped';
  durationMs: number;
}

interface HydrateOptions {
  store: SnapshotStore;
  dbPath: string;
  mode: RestoreMode;
  retry: RetryPolicy;
  log: SyncLogger;
}

export async function readHead(store: SnapshotStore, retry: RetryPolicy, log: SyncLogger): Promise<RemoteHead | null> {
  const object = await withRetry('read manifest', () => store.readSmall(MANIFEST_KEY), retry, (m) => log.warn({ store: store.location }, m));
  if (object === null) return null;
  return { etag: object.etag, manifest: decodeManifest(object.body, store.location) };
}

/** Counts schema objects; zero means the file holds nothing worth keeping. */
async function hasContent(dbPath: string): Promise<boolean> {
  const { size } = await stat(dbPath);
  if (size === 0) return false;
  const client = createClient({ url: pathToFileURL(dbPath).href });
  try {
    const result = await client.execute('SELECT count(*) AS n FROM sqlite_master');
    return Number(result.rows[0]?.[0] ?? 0) > 0;
  } catch (error) {
    throw new SyncError('CONFIG', `The local database ${dbPath} cannot be opened (${(error as Error).message}); move it away or fix it.`, { cause: error });
  } finally {
    client.close();
  }
}

/**
 * Brings the local file up to the store's latest snapshot before the app sees the database, or keeps
 * the local file when it is the newer of the two. Fails closed: if the store cannot be read, the app
 * does not start (an empty database would later overwrite the good backup).
 */
export async function hydrate(options: HydrateOptions): Promise<HydrateResult> {
  const { store, dbPath, mode, log } = options;
  const started = performance.now();
  const localExists = existsSync(dbPath);
  const saved = localExists ? readLocalState(dbPath) : null;
  const state = saved && saved.store === store.location ? saved : null;
  const done = (partial: Omit<HydrateResult, 'durationMs'>): HydrateResult => {
    writeLocalState(dbPath, partial.state);
    return { ...partial, durationMs: performance.now() - started };
  };

  if (!localExists) rmSync(`${dbPath}.sync.json`, { force: true }); // a sidecar without its file means nothing

  if (mode === 'skip') {
    const pending = localExists && (state ? state.dirty || !sameFingerprint(state.fingerprint, fingerprint(dbPath)) : await hasContent(dbPath));
    const base = state ?? { format: 1 as const, store: store.location, generation: newGeneration(), seq: 0, dirty: false, fingerprint: null };
    return done({ state: { ...base, dirty: base.dirty || pending, fingerprint: null }, head: undefined, restoredFrom: null, pending, action: 'skipped' });
  }

  const head = await readHead(store, options.retry, log);

  if (head === null) {
    if (mode === 'required') {
      throw new SyncError('NO_BACKUP', `restore: 'required' but ${store.location} holds no ${MANIFEST_KEY}; check the container and prefix, or use restore: 'if-exists' for a first deploy.`);
    }
    const pending = localExists && (await hasContent(dbPath));
    const fresh: LocalState = { format: 1, store: store.location, generation: newGeneration(), seq: 0, dirty: pending, fingerprint: null };
    return done({ state: fresh, head, restoredFrom: null, pending, action: localExists ? 'kept-local' : 'fresh' });
  }

  const latest = latestSnapshot(head.manifest);
  if (localExists) {
    const changedOutside = state !== null && !state.dirty && state.fingerprint !== null && !sameFingerprint(state.fingerprint, fingerprint(dbPath));
    const dirty = state !== null && (state.dirty || changedOutside);
    if (state === null) {
      if (await hasContent(dbPath)) {
        throw new SyncError(
          'DIVERGED',
          `${dbPath} exists but was not restored from ${store.location}, which holds snapshot seq ${latest.seq}. ` +
            `Move the local file away to restore the backup, or start with restore: 'skip' to keep it (its first snapshot will then refuse to replace the backup).`,
        );
      }
    } else if (state.seq === head.manifest.seq && state.generation === head.manifest.generation) {
      // The local file is the store's latest snapshot, plus any commits marked dirty: keep it.
      if (changedOutside) log.info({ dbPath }, 'local database changed outside this library since it was closed; it will be snapshotted');
      // No fingerprint means the last run did not close cleanly, so another process (drizzle-kit migrate)
      // may have changed the file unseen: snapshot it. Canonical snapshots make an unchanged file cost no upload.
      const unknown = !dirty && state.fingerprint === null;
      return done({ state: { ...state, dirty, fingerprint: null }, head, restoredFrom: null, pending: dirty || unknown, action: 'kept-local' });
    } else if (state.seq > head.manifest.seq) {
      // The store went backwards (restored or rolled back by hand): the local file is newer. Keep it.
      log.warn({ dbPath, localSeq: state.seq, storeSeq: head.manifest.seq }, 'store is older than the local database; keeping the local file and snapshotting it');
      return done({ state: { ...state, dirty: true, fingerprint: null }, head, restoredFrom: null, pending: true, action: 'kept-local' });
    } else if (dirty) {
      throw new SyncError(
        'DIVERGED',
        `${dbPath} holds commits never uploaded (from snapshot seq ${state.seq}), and ${store.location} has since moved on to seq ${head.manifest.seq} from another writer. ` +
          `Both cannot be kept automatically: copy the local file away to inspect it, then delete it to restore the store's snapshot.`,
      );
    }
  }

  const info = await downloadSnapshot(store, latest, dbPath, options.retry, log);
  const restored: LocalState = { format: 1, store: store.location, generation: head.manifest.generation, seq: head.manifest.seq, dirty: false, fingerprint: null };
  log.info({ store: store.location, seq: latest.seq, bytes: latest.bytes, compressedBytes: latest.compressedBytes, ...info }, 'restored database from snapshot');
  return done({ state: restored, head, restoredFrom: latest, pending: false, action: 'downloaded' });
}

/** The main thread downloads; a worker (started at once, in parallel) decodes, hashes and quick_checks. */
async function streamIntoWorker(store: SnapshotStore, entry: SnapshotEntry, path: string): Promise<WorkerSuccess> {
  const expected = { compressedBytes: entry.compressedBytes, bytes: entry.bytes, sha256: entry.sha256 };
  const job = startWorkerJob({ op: 'restore', path, codec: entry.codec, label: entry.key, expected });
  try {
    for await (const chunk of store.download(entry.key)) await job.send(chunk);
    job.end();
  } catch (error) {
    await job.terminate();
    throw error;
  }
  return job.result;
}

/**
 * Streams a snapshot from the store into a decoding worker (download and decompression overlap), which
 * verifies it (sizes, sha256, quick_check); then atomically moves it into place.
 */
export async function downloadSnapshot(
  store: SnapshotStore,
  entry: SnapshotEntry,
  dbPath: string,
  retry: RetryPolicy,
  log: SyncLogger,
): Promise<{ downloadMs: number; verifyMs: number }> {
  const restoredPath = `${dbPath}.restore-${randomBytes(4).toString('hex')}.db`;
  try {
    const t0 = performance.now();
    const decoded = await withRetry(`download ${entry.key}`, () => streamIntoWorker(store, entry, restoredPath), retry, (m) => log.warn({ key: entry.key }, m));
    // Stale -wal/-shm belong to the file being replaced; SQLite would replay them onto the new one.
    await rm(`${dbPath}-wal`, { force: true });
    await rm(`${dbPath}-shm`, { force: true });
    await rename(restoredPath, dbPath);
    return { downloadMs: performance.now() - t0 - decoded.secondStepMs, verifyMs: decoded.secondStepMs };
  } finally {
    await rm(restoredPath, { force: true });
  }
}
