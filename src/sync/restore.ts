import { createHash, randomBytes } from 'node:crypto';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyncError, isSyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { ObjectStore } from '../store/store.ts';
import { MANIFEST_KEY, decodeManifest, latestSnapshot, type Manifest, type SnapshotEntry } from './manifest.ts';
import { DEFAULT_RETRY, type RetryPolicy } from './retry.ts';
import { retrying, retryWhole } from '../store/retrying-store.ts';
import { startWorkerJob, type WorkerSuccess } from './run-in-worker.ts';
import { rootHash } from './chunks/chunk-codec.ts';
import { chunkKey, chunkPositions, decodeChunkIndex } from './chunks/chunk-index.ts';
import { KEY_ENV, resolveChunkKeys, type ChunkKeys, type EncryptionOptions } from './chunks/encryption.ts';

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

export async function readHead(store: ObjectStore): Promise<RemoteHead | null> {
  const object = await store.readSmall(MANIFEST_KEY);
  if (object === null) return null;
  return { etag: object.etag, manifest: decodeManifest(object.body, store.location) };
}

/**
 * Restores the newest candidate that verifies. A corrupt or missing snapshot is skipped loudly; any
 * other failure (unreachable, auth) stops the restore: the app must not start on a guess.
 */
export async function downloadFirstVerifying(
  store: ObjectStore,
  candidates: SnapshotEntry[],
  dbPath: string,
  log: SyncLogger,
  options: DownloadOptions = {},
): Promise<{ entry: SnapshotEntry; skipped: SkippedSnapshot[]; info: { downloadMs: number; verifyMs: number } }> {
  const skipped: SkippedSnapshot[] = [];
  for (const entry of candidates) {
    try {
      const info = await downloadSnapshot(store, entry, dbPath, options);
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
  /** 'quick-check' (default): PRAGMA quick_check before install; 'none': the caller checks later (checkDatabase). */
  check?: 'quick-check' | 'none';
  /** Default true: fsync before install; false: the caller calls syncFile later. */
  fsync?: boolean;
}

/** Chunks fetched at once: bounds memory (chunk size x this, plus the worker's queue) while keeping the pipe full. */
const CHUNK_CONCURRENCY = 8;

/**
 * A chunked snapshot: the index, then every distinct chunk fetched in parallel and handed to a worker
 * that verifies each against its address and writes it at its offsets, then runs quick_check.
 */
async function assembleInWorker(
  store: ObjectStore,
  entry: SnapshotEntry,
  path: string,
  { keys, base, onProgress, check }: Pick<DownloadOptions, 'keys' | 'base' | 'onProgress' | 'check'>,
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
  const job = startWorkerJob({ op: 'assemble', path, chunkSize: index.chunkSize, bytes: index.bytes, chunks: index.chunks, keys, label: entry.key, quickCheck: check !== 'none', ...(useBase ? { base } : {}) });
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
async function streamIntoWorker(store: ObjectStore, entry: SnapshotEntry, path: string): Promise<WorkerSuccess> {
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
 * verifies it (sizes, sha256, quick_check); then atomically moves it into place. A download that
 * breaks mid-stream restarts as a whole (`retryWhole`: the worker already consumed its bytes).
 */
export async function downloadSnapshot(
  store: ObjectStore,
  entry: SnapshotEntry,
  dbPath: string,
  options: DownloadOptions = {},
): Promise<{ downloadMs: number; verifyMs: number }> {
  const restoredPath = `${dbPath}.restore-${randomBytes(4).toString('hex')}.db`;
  const install = options.install ?? ((verifiedPath: string) => installFile(verifiedPath, dbPath));
  try {
    const t0 = performance.now();
    const fetch = () => (entry.kind === 'chunks' ? assembleInWorker(store, entry, restoredPath, options) : streamIntoWorker(store, entry, restoredPath));
    const decoded = await retryWhole(store, `download ${entry.key}`, fetch);
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

export interface VerifyLatestOptions {
  /** Encrypted stores: the key (as `drizzle()`'s `encryption`); default env SNAPSHOT_ENCRYPTION_KEY. */
  encryption?: EncryptionOptions;
  /** Where the temporary copy goes (removed afterwards). Default the OS temp directory. */
  tempDir?: string;
  /** For a store that is not retrying yet (a store from `drizzle()` is): default `DEFAULT_RETRY`. */
  retry?: RetryPolicy;
  log?: SyncLogger;
}

export interface VerifiedSnapshot {
  seq: number;
  generation: string;
  key: string;
  createdAt: string;
  /** Uncompressed database size. */
  bytes: number;
  durationMs: number;
}

/**
 * Restore drill for the app to schedule: downloads the store's latest snapshot into a temporary file
 * and verifies it exactly as a restore would (size, sha256, chunk addresses, quick_check), then removes
 * it. Never touches the live database nor writes the store. Resolves null for a store with no
 * snapshot; rejects with the restore's error (`SNAPSHOT_CORRUPT`, `NOT_FOUND` for a missing object,
 * `CONFIG` for a wrong key, `STORE_*`) when the latest would not restore. No fallback to older ones.
 */
export async function verifyLatest(given: ObjectStore, options: VerifyLatestOptions = {}): Promise<VerifiedSnapshot | null> {
  const store = retrying(given, options.retry ?? DEFAULT_RETRY, options.log ?? { info() {}, warn() {}, error() {} });
  const head = await readHead(store);
  const entry = head && latestSnapshot(head.manifest);
  if (!entry) return null;
  const keys = await resolveChunkKeys(options.encryption);
  const dir = await mkdtemp(join(options.tempDir ?? tmpdir(), 'dlb-verify-'));
  const started = performance.now();
  try {
    await downloadSnapshot(store, entry, join(dir, 'latest.db'), { keys });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return { seq: entry.seq, generation: entry.generation, key: entry.key, createdAt: entry.createdAt, bytes: entry.bytes, durationMs: performance.now() - started };
}

// LEAD STUB (replaced by the restore pipeline's versions): quick_check and fsync after install.
export async function checkDatabase(path: string): Promise<{ durationMs: number }> {
  const started = performance.now();
  const { createClient } = await import('@libsql/client');
  const { pathToFileURL } = await import('node:url');
  const client = createClient({ url: pathToFileURL(path).href });
  try {
    const result = await client.execute('PRAGMA quick_check');
    const verdicts = result.rows.map((row) => String(row[0]));
    if (verdicts.length !== 1 || verdicts[0] !== 'ok') throw new SyncError('SNAPSHOT_CORRUPT', `Restored database failed PRAGMA quick_check: ${verdicts.slice(0, 5).join('; ')}.`);
  } catch (error) {
    if (error instanceof SyncError) throw error;
    throw new SyncError('SNAPSHOT_CORRUPT', `Restored database cannot be opened by SQLite: ${(error as Error).message}.`, { cause: error });
  } finally {
    client.close();
  }
  return { durationMs: performance.now() - started };
}

export async function syncFile(path: string): Promise<void> {
  const { open } = await import('node:fs/promises');
  const { dirname } = await import('node:path');
  for (const p of [path, dirname(path)]) {
    const handle = await open(p, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}
