import { createHash, randomBytes } from 'node:crypto';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { createClient } from '@libsql/client';
import { SyncError, isSyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { SnapshotStore } from '../store/store.ts';
import { MANIFEST_KEY, decodeManifest, describeTarget, latestSnapshot, selectSnapshot, type Manifest, type RestoreTarget, type SnapshotEntry } from './manifest.ts';
import { fingerprint, newGeneration, sameFingerprint, writeLocalState, type LocalState } from './local-state.ts';
import { withRetry, type RetryPolicy } from './retry.ts';
import { startWorkerJob, type WorkerSuccess } from './run-in-worker.ts';
import { rootHash } from './chunks/chunk-codec.ts';
import { chunkKey, chunkPositions, decodeChunkIndex } from './chunks/chunk-index.ts';
import { KEY_ENV, type ChunkKeys } from './chunks/encryption.ts';

export type RestoreMode = 'required' | 'if-exists' | 'skip';

/** What the store's head looked like at start: `null` = empty store, `undefined` = not read (skip). */
export interface RemoteHead {
  etag: string;
  manifest: Manifest;
}

export interface SkippedSnapshot {
  seq: number;
  code: string;
  message: string;
}

export interface HydrateResult {
  state: LocalState;
  head: RemoteHead | null | undefined;
  restoredFrom: SnapshotEntry | null;
  /** Newer snapshots that failed verification and were skipped to reach `restoredFrom`. */
  skipped: SkippedSnapshot[];
  /** Set after a point-in-time restore: the first snapshot records it in the manifest. */
  rolledBackTo?: { seq: number; target: string };
  /** The local file holds commits the store has not seen: snapshot it soon. */
  pending: boolean;
  action: 'downloaded' | 'kept-local' | 'fresh' | 'skipped';
  durationMs: number;
}

interface HydrateOptions {
  store: SnapshotStore;
  dbPath: string;
  mode: RestoreMode;
  /** Roll back to this snapshot (once: not again if the manifest records this very roll-back). */
  target?: RestoreTarget;
  retry: RetryPolicy;
  log: SyncLogger;
  keys?: ChunkKeys | undefined;
  /** This file's sidecar as the caller read it at start: null if there is none or it belongs to another store. */
  local: LocalState | null;
  /** Recorded in the sidecar: the writer lease id this file's writer uses (undefined for a replica). */
  leaseId: string | undefined;
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
  const state = localExists ? options.local : null;
  const done = (partial: Omit<HydrateResult, 'durationMs' | 'skipped'> & { skipped?: SkippedSnapshot[] }): HydrateResult => {
    const recorded = { ...partial.state, leaseId: options.leaseId };
    writeLocalState(dbPath, recorded);
    return { skipped: [], ...partial, state: recorded, durationMs: performance.now() - started };
  };

  if (!localExists) rmSync(`${dbPath}.sync.json`, { force: true }); // a sidecar without its file means nothing

  if (mode === 'skip') {
    const pending = localExists && (state ? state.dirty || !sameFingerprint(state.fingerprint, fingerprint(dbPath)) : await hasContent(dbPath));
    const base = state ?? { format: 1 as const, store: store.location, generation: newGeneration(), seq: 0, dirty: false, fingerprint: null };
    return done({ state: { ...base, dirty: base.dirty || pending, fingerprint: null }, head: undefined, restoredFrom: null, pending, action: 'skipped' });
  }

  const head = await readHead(store, options.retry, log);
  const latest = head && latestSnapshot(head.manifest);

  if (!latest) {
    if (mode === 'required') {
      throw new SyncError('NO_BACKUP', `restore: 'required' but ${store.location} holds no snapshot; check the container and prefix, or use restore: 'if-exists' for a first deploy.`);
    }
    const pending = localExists && (await hasContent(dbPath));
    const fresh: LocalState = { format: 1, store: store.location, generation: newGeneration(), seq: 0, dirty: pending, fingerprint: null };
    return done({ state: fresh, head, restoredFrom: null, pending, action: localExists ? 'kept-local' : 'fresh' });
  }

  // Died between publishing and recording it: the store's latest snapshot is this very file's.
  const ownPublish = state?.publishing && state.publishing.seq === head.manifest.seq && state.publishing.key === latest.key;
  if (state && ownPublish) {
    log.info({ dbPath, seq: head.manifest.seq }, 'the last run published this snapshot but stopped before recording it; continuing from it');
    state.seq = head.manifest.seq;
    state.generation = head.manifest.generation;
    state.dirty = true; // commits may have followed the snapshot; an unchanged file uploads nothing
    state.fingerprint = null;
  }
  if (state) state.publishing = undefined;

  const rollback = options.target && !alreadyRolledBack(head.manifest, options.target) ? options.target : undefined;
  if (options.target && !rollback) log.info({ target: describeTarget(options.target) }, 'point-in-time restore already done (the manifest records it); continuing from the latest snapshot');

  if (localExists) {
    const changedOutside = state !== null && !state.dirty && state.fingerprint !== null && !sameFingerprint(state.fingerprint, fingerprint(dbPath));
    const dirty = state !== null && (state.dirty || changedOutside);
    if (rollback && (dirty || (state === null && (await hasContent(dbPath))))) {
      throw new SyncError(
        'DIVERGED',
        `A point-in-time restore (${describeTarget(rollback)}) would discard ${dbPath}, which holds commits the store has not seen. Move the file away first if that is what you want.`,
      );
    }
    if (rollback) {
      // Replaced below by the requested snapshot.
    } else if (state === null) {
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

  const candidates = rollback ? olderFrom(head.manifest, rollback, store.location) : head.manifest.snapshots;
  // A local file being replaced may hold most chunks of the snapshot already (a restart on the same disk).
  const base = localExists ? dbPath : undefined;
  const { entry, skipped, info } = await downloadFirstVerifying(store, candidates, dbPath, options.retry, log, { keys: options.keys, ...(base ? { base } : {}) });
  // The local file continues from the store's head (seq), whichever snapshot it came from: the next
  // publish goes on top of the head, so a fallback or roll-back becomes the new latest.
  const restored: LocalState = {
    format: 1,
    store: store.location,
    generation: rollback ? newGeneration() : head.manifest.generation,
    seq: head.manifest.seq,
    dirty: rollback !== undefined,
    fingerprint: null,
  };
  log.info({ store: store.location, seq: entry.seq, bytes: entry.bytes, compressedBytes: entry.compressedBytes, skipped: skipped.length, ...info }, 'restored database from snapshot');
  return done({
    state: restored,
    head,
    restoredFrom: entry,
    skipped,
    pending: rollback !== undefined,
    action: 'downloaded',
    ...(rollback ? { rolledBackTo: { seq: entry.seq, target: describeTarget(rollback) } } : {}),
  });
}

/** True when a snapshot in the history records this very roll-back (so a restart does not repeat it). */
function alreadyRolledBack(manifest: Manifest, target: RestoreTarget): boolean {
  const wanted = describeTarget(target);
  return manifest.snapshots.some((s) => s.rolledBackTo?.target === wanted);
}

/** The target snapshot and everything older (fallback candidates), newest first. */
function olderFrom(manifest: Manifest, target: RestoreTarget, location: string): SnapshotEntry[] {
  const chosen = selectSnapshot(manifest, target);
  if (!chosen) {
    const oldest = manifest.snapshots.at(-1)!;
    throw new SyncError(
      'NOT_FOUND',
      `No retained snapshot in ${location} matches ${describeTarget(target)}: the store keeps seq ${oldest.seq} (${oldest.createdAt}) to seq ${manifest.seq}. List them with \`npx drizzle-libsql-blob list\`.`,
    );
  }
  return manifest.snapshots.slice(manifest.snapshots.indexOf(chosen));
}

/**
 * Restores the newest candidate that verifies. A corrupt or missing snapshot is skipped loudly; any
 * other failure (unreachable, auth) stops the restore: the app must not start on a guess.
 */
export async function downloadFirstVerifying(
  store: SnapshotStore,
  candidates: SnapshotEntry[],
  dbPath: string,
  retry: RetryPolicy,
  log: SyncLogger,
  options: DownloadOptions = {},
): Promise<{ entry: SnapshotEntry; skipped: SkippedSnapshot[]; info: { downloadMs: number; verifyMs: number } }> {
  const skipped: SkippedSnapshot[] = [];
  for (const entry of candidates) {
    try {
      const info = await downloadSnapshot(store, entry, dbPath, retry, log, options);
      if (skipped.length > 0) {
        log.error({ restoredSeq: entry.seq, skipped }, `RESTORED AN OLDER SNAPSHOT (seq ${entry.seq}): ${skipped.length} newer snapshot(s) failed verification`);
      }
      return { entry, skipped, info };
    } catch (error) {
      const corrupt = error instanceof SyncError && (error.code === 'SNAPSHOT_CORRUPT' || error.code === 'NOT_FOUND');
      if (!corrupt) throw error;
      log.error({ seq: entry.seq, key: entry.key, code: error.code }, `SNAPSHOT seq ${entry.seq} FAILED VERIFICATION, trying the next older one: ${error.message}`);
      skipped.push({ seq: entry.seq, code: error.code, message: error.message });
    }
  }
  throw new SyncError(
    'SNAPSHOT_CORRUPT',
    `No snapshot in ${store.location} verifies (${skipped.map((s) => `seq ${s.seq}: ${s.code}`).join('; ')}). Nothing was restored; the store was not changed. ` +
      `Inspect them with \`npx drizzle-libsql-blob verify --all\`.`,
  );
}

export interface DownloadOptions {
  /** Moves the verified file into place (default: rename over `dbPath`). */
  install?: (verifiedPath: string) => void | Promise<void>;
  /** Keys for encrypted chunked snapshots. */
  keys?: ChunkKeys | undefined;
  /**
   * A local file that may already hold most of a chunked snapshot (a replica's current database): its
   * chunks that verify against the snapshot's addresses are kept, only the others are downloaded.
   */
  base?: string;
  /** Chunked snapshots: called with the stored bytes of each chunk downloaded (a full snapshot's download is the store's own stream). */
  onProgress?: (bytes: number) => void;
}

/** Chunks fetched at once: bounds memory (chunk size x this, plus the worker's queue) while keeping the pipe full. */
const CHUNK_CONCURRENCY = 8;

/**
 * A chunked snapshot: the index, then every distinct chunk fetched in parallel and handed to a worker
 * that verifies each against its address and writes it at its offsets, then runs quick_check.
 */
async function assembleInWorker(
  store: SnapshotStore,
  entry: SnapshotEntry,
  path: string,
  { keys, base, onProgress }: Pick<DownloadOptions, 'keys' | 'base' | 'onProgress'>,
): Promise<WorkerSuccess> {
  checkKey(entry, keys, store.location);
  const body = await store.readSmall(entry.key);
  if (!body) throw new SyncError('NOT_FOUND', `The chunk index ${entry.key} of snapshot seq ${entry.seq} is missing from ${store.location}.`);
  if (entry.indexSha256 && createHash('sha256').update(body.body).digest('hex') !== entry.indexSha256) {
    throw new SyncError('SNAPSHOT_CORRUPT', `The chunk index ${entry.key} of snapshot seq ${entry.seq} does not match its sha256 in the manifest (damaged or replaced).`);
  }
  const index = decodeChunkIndex(body.body, entry.key);
  if (index.bytes !== entry.bytes || rootHash(index.bytes, index.chunkSize, index.chunks) !== entry.sha256) {
    throw new SyncError('SNAPSHOT_CORRUPT', `The chunk index ${entry.key} does not match snapshot seq ${entry.seq} in the manifest (size or root hash).`);
  }
  const useBase = base !== undefined && existsSync(base);
  const job = startWorkerJob({ op: 'assemble', path, chunkSize: index.chunkSize, bytes: index.bytes, chunks: index.chunks, keys, label: entry.key, quickCheck: true, ...(useBase ? { base } : {}) });
  try {
    const queue = [...chunkPositions(index.chunks, useBase ? await job.needed : undefined).entries()];
    const fetchNext = async (): Promise<void> => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const [address, indexes] = next;
        const parts: Buffer[] = [];
        try {
          for await (const part of store.download(chunkKey(address))) parts.push(part);
        } catch (error) {
          if (!isSyncError(error, 'NOT_FOUND')) throw error;
          throw new SyncError('NOT_FOUND', `Chunk ${address.slice(0, 16)}… of snapshot seq ${entry.seq} is missing from ${store.location}.`, { cause: error });
        }
        const chunk = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
        onProgress?.(chunk.length);
        await job.send(chunk, indexes);
      }
    };
    await Promise.all(Array.from({ length: CHUNK_CONCURRENCY }, fetchNext));
    job.end();
  } catch (error) {
    await job.terminate();
    throw error;
  }
  return job.result;
}

/** A wrong or missing key is a configuration problem, not corruption: never fall back past it. */
function checkKey(entry: SnapshotEntry, keys: ChunkKeys | undefined, location: string): void {
  if (entry.keyId && !keys) {
    throw new SyncError('CONFIG', `Snapshot seq ${entry.seq} in ${location} is encrypted; configure its key (encryption.key or ${KEY_ENV}).`);
  }
  if (entry.keyId && keys && entry.keyId !== keys.keyId) {
    throw new SyncError('CONFIG', `Wrong encryption key: snapshot seq ${entry.seq} in ${location} was encrypted with key id ${entry.keyId}, the configured key has id ${keys.keyId}.`);
  }
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
  options: DownloadOptions = {},
): Promise<{ downloadMs: number; verifyMs: number }> {
  const restoredPath = `${dbPath}.restore-${randomBytes(4).toString('hex')}.db`;
  const install = options.install ?? ((verifiedPath: string) => installFile(verifiedPath, dbPath));
  try {
    const t0 = performance.now();
    const fetch = () => (entry.kind === 'chunks' ? assembleInWorker(store, entry, restoredPath, options) : streamIntoWorker(store, entry, restoredPath));
    const decoded = await withRetry(`download ${entry.key}`, fetch, retry, (m) => log.warn({ key: entry.key }, m));
    await install(restoredPath);
    return { downloadMs: performance.now() - t0 - decoded.secondStepMs, verifyMs: decoded.secondStepMs };
  } finally {
    await rm(restoredPath, { force: true });
  }
}

/** Moves a verified file into place. Synchronous, so a replica can swap files between two queries. */
export function installFile(verifiedPath: string, dbPath: string): void {
  // Stale -wal/-shm belong to the file being replaced; SQLite would replay them onto the new one.
  rmSync(`${dbPath}-wal`, { force: true });
  rmSync(`${dbPath}-shm`, { force: true });
  renameSync(verifiedPath, dbPath);
}
