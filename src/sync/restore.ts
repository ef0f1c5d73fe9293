import { createHash, randomBytes } from 'node:crypto';
import { youngCollector } from './collect-garbage.ts';
import { closeSync, existsSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { copyFile, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyncError, isSyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { ObjectStore, SmallObject } from '../store/store.ts';
import { MANIFEST_KEY, decodeManifest, deltaChain, latestSnapshot, type Manifest, type SnapshotEntry } from './manifest.ts';
import { canonicalizeFileHeader } from './chunks/page-image.ts';
import { DEFAULT_RETRY, type RetryPolicy } from './retry.ts';
import { retrying, retryWhole } from '../store/retrying-store.ts';
import { POOL_SIZE, idleWorkers, readyWorkers, runInWorker, startWorkerJob, warmWorkers, type WorkerJob } from './run-in-worker.ts';
import { rootHash, storedDigest } from './chunks/chunk-codec.ts';
import { chunkWriter } from './chunks/chunk-writer.ts';
import { applyDeltasToFile } from './chunks/delta-apply.ts';
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
): Promise<{ entry: SnapshotEntry; skipped: SkippedSnapshot[]; info: { downloadMs: number; verifyMs: number; decodeWorkers?: number; decodedHere?: number } }> {
  const skipped: SkippedSnapshot[] = [];
  const snapshots = options.snapshots ?? candidates;
  for (const entry of candidates) {
    try {
      // A delta whose chain holds one already found bad cannot verify either: skipped without a download.
      const bad = deltaChain(snapshots, entry)?.deltas.find((d) => d !== entry && skipped.some((s) => s.seq === d.seq));
      if (bad) throw new SyncError('SNAPSHOT_CORRUPT', `Restore point seq ${entry.seq} is built on page delta seq ${bad.seq}, which failed verification.`);
      const info = await downloadSnapshot(store, entry, dbPath, { ...options, snapshots });
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
   * The manifest's restore points (newest first) the entry is one of: a page delta is restored from its
   * chain (its chunk set, then every delta up to it), found here. Default: the candidates given to
   * `downloadFirstVerifying`, or none.
   */
  snapshots?: readonly SnapshotEntry[];
  /**
   * A local file that holds restore point `from.entry` exactly (a replica's database). A delta on the
   * same chunk set, at or after it, is restored by copying the file and applying only the chain's
   * deltas after it: each of them carries every page changed since its parent, and its parent is at or
   * before the file's point.
   */
  from?: { path: string; entry: SnapshotEntry };
  /**
   * Chunk indexes already being read, by key (start-up reads the latest one beside the lease). Each is
   * used by the first attempt that needs it, then forgotten (a retry reads again), and verified as any.
   */
  indexes?: Map<string, Promise<SmallObject | null>>;
  /** Chunked snapshots: the most workers to decode in (default DECODE_WORKERS; tests ask for more to exercise several). */
  decodeWorkers?: number;
  /**
   * A local file that may already hold most of a chunked snapshot (a replica's current database): its
   * chunks that verify against the snapshot's addresses are kept, only the others are downloaded.
   */
  base?: string;
  /** Chunked snapshots: called with the stored bytes of each chunk downloaded (a full snapshot's download is the store's own stream). */
  onProgress?: (bytes: number) => void;
  /**
   * 'quick-check' (default): PRAGMA quick_check before the file is installed; a failure is
   * SNAPSHOT_CORRUPT (and `downloadFirstVerifying` tries the next older snapshot). 'none': only the
   * hashes are checked (every chunk against its address, the index against the manifest's root hash,
   * or a full snapshot's sha256); run `checkDatabase` on the installed file yourself.
   */
  check?: 'quick-check' | 'none';
  /** true (default): the file is fsynced before it is installed. false: call `syncFile` on the installed file before relying on it. */
  fsync?: boolean;
  /**
   * Chunked snapshots: a small one (DECODE_HERE_BYTES stored) is verified and written on this thread
   * with no worker at all, and a larger one's chunks that arrive before any decoding worker has booted
   * are too, instead of waiting for it (a boot is 45-100 ms, a small database's whole restore). Only
   * where this thread serves nothing yet: a start-up restore, not a replica's.
   */
  decodeHereUntilWorkersBoot?: boolean;
}

/**
 * What the restore's chunks in memory may take at most (downloading, queued for a worker, being
 * decoded): bounded whatever the database size. 32 MiB: at 4 MiB chunks 48 MiB gave a 1M-row restore
 * 135-168 MiB peak RSS above idle (each thread's dead buffers come on top of the live ones), 32 MiB 116-125.
 */
const CHUNK_MEMORY_BUDGET = 32 * 1024 * 1024;
/**
 * Stored bytes a start-up restore decodes on its own thread rather than boot a worker for. Nothing is
 * served yet, and on 2 cores shared with the store a worker's boot (45-100 ms of CPU) and the hand-over
 * cost more than they save until a restore is large: measured as interleaved fresh-process starts
 * against Azurite, all on this thread vs. a worker booted at the manifest, 100k rows (31 MB stored):
 * hydrate 248 vs 301 ms, CPU 504 vs 645 ms, peak +48 vs +72 MiB; 250k rows (77 MB): 480 vs 479 ms,
 * CPU 802 vs 912 ms; 1M rows (309 MB): 2.1 vs 1.3 s. Larger restores boot one as soon as the manifest
 * is read (startup.ts) and decode here only until it is ready.
 */
export const DECODE_HERE_BYTES = 64 * 1024 * 1024;
/** Stored bytes that justify starting one more decoding worker (a boot costs about what decoding ~30 MiB of stored chunks does). */
const BYTES_PER_STARTED_WORKER = 32 * 1024 * 1024;
/** Downloads at once: enough to keep the link busy (8-16 measured alike on loopback at 1 MiB chunks). */
const MAX_DOWNLOADS = 8;
/**
 * Workers a restore decodes in: one core fewer than the machine has, since this thread receives every
 * chunk and must not wait for a core; at least one, at most the pool. On 2 cores (Azurite beside it),
 * 1M rows, 10 interleaved fresh-process starts: one worker 917 ms hydrate, 1515 ms CPU, +73 MiB peak;
 * two 1099 ms, 1718 ms, +91 MiB (two with a deeper queue each: 996 ms, 1693 ms, +98 MiB).
 */
export const DECODE_WORKERS = Math.max(1, Math.min(POOL_SIZE, availableParallelism() - 1));

/**
 * How a chunked restore fans out for a given chunk size: every chunk held in memory (downloading,
 * queued in a worker, decoded in a worker) counts against `CHUNK_MEMORY_BUDGET` (stored chunks are at
 * most a chunk plus a few bytes; a worker holds one decoded chunk). Pure, for a table test.
 */
export function restoreFanOut(chunkSize: number, maxWorkers: number): { workers: number; downloads: number; perWorker: number } {
  const budget = Math.max(3, Math.floor(CHUNK_MEMORY_BUDGET / chunkSize));
  const workers = Math.max(1, Math.min(maxWorkers, Math.floor(budget / 3)));
  const downloads = Math.max(1, Math.min(MAX_DOWNLOADS, Math.floor((budget - workers) / 2)));
  const perWorker = Math.max(1, Math.min(4, Math.floor((budget - workers - downloads) / workers)));
  return { workers, downloads, perWorker };
}

/** What `downloadSnapshot` hands back: the main pipeline's time, and the checks after it (fsync, quick_check). */
interface Fetched {
  pipelineMs: number;
  afterMs: number;
  /** Chunked snapshots: how many workers decoded and wrote chunks. */
  decodeWorkers?: number;
  /** Chunked snapshots: chunks decoded and written on this thread while no worker had booted. */
  decodedHere?: number;
}

/**
 * A chunked snapshot: the index, then every distinct chunk fetched in parallel and handed to one of
 * several workers, which verifies it against its address and writes it at its offsets (disjoint ranges
 * of one file). Downloads, decoding and writing overlap. Then fsync and quick_check, as asked, side by side.
 */
async function assembleInWorkers(store: ObjectStore, entry: SnapshotEntry, path: string, options: DownloadOptions): Promise<Fetched> {
  const { keys, base, onProgress } = options;
  const started = performance.now();
  checkKey(entry, keys, store.location);
  const early = options.indexes?.get(entry.key);
  options.indexes?.delete(entry.key);
  const body = await (early ?? store.readSmall(entry.key));
  if (!body) throw new SyncError('NOT_FOUND', `The chunk index ${entry.key} of snapshot seq ${entry.seq} is missing from ${store.location}.`);
  if (entry.indexSha256 && createHash('sha256').update(body.body).digest('hex') !== entry.indexSha256) {
    throw new SyncError('SNAPSHOT_CORRUPT', `The chunk index ${entry.key} of snapshot seq ${entry.seq} does not match its sha256 in the manifest (damaged or replaced).`);
  }
  const index = decodeChunkIndex(body.body, entry.key);
  if (index.bytes !== entry.bytes || rootHash(index.bytes, index.chunkSize, index.chunks) !== entry.sha256) {
    throw new SyncError('SNAPSHOT_CORRUPT', `The chunk index ${entry.key} does not match snapshot seq ${entry.seq} in the manifest (size or root hash).`);
  }
  const { chunkSize, bytes, chunks } = index;
  const filled = new Set<number>();
  if (base !== undefined && existsSync(base)) {
    const { kept } = await runInWorker({ op: 'keep-base', path, base, chunkSize, bytes, chunks, keys });
    for (const i of kept) filled.add(i);
  } else {
    await writeFile(path, ''); // the workers write into it at their offsets
  }
  const missing = [...chunks.keys()].filter((i) => !filled.has(i));
  const fanOut = restoreFanOut(chunkSize, options.decodeWorkers ?? DECODE_WORKERS);
  const queue = [...chunkPositions(chunks, missing).entries()];
  // A worker that is not running yet costs a boot (~60 ms of CPU, more wall time on a busy machine):
  // worth it only for enough data to decode; idle ones are free.
  const storedSize = (i: number) => (Number.isSafeInteger(index.stored[i]) && index.stored[i]! > 0 ? index.stored[i]! : chunkSize);
  const storedToFetch = queue.reduce((sum, [, indexes]) => sum + storedSize(indexes[0]!), 0);
  const worthStarting = Math.ceil(storedToFetch / BYTES_PER_STARTED_WORKER);
  const workers = Math.max(1, Math.min(fanOut.workers, queue.length, Math.max(idleWorkers(), worthStarting)));
  const request = { op: 'write-chunks', path, chunkSize, bytes, chunks, digests: index.digests, keys, label: entry.key } as const;
  const jobs: Array<WorkerJob<'write-chunks'>> = [];
  // The first job to fail (a corrupt chunk) stops the downloads at once.
  let failure: unknown;
  const startJobs = () => {
    for (let i = 0; i < workers; i++) {
      const job = startWorkerJob(request, { maxInFlight: fanOut.perWorker });
      job.result.catch((error: unknown) => (failure ??= error));
      jobs.push(job);
    }
  };
  // Until a worker has booted, a start-up restore verifies and writes chunks here; the jobs start (and
  // are waited for) only once one can take them, so a small database never waits for a boot at all.
  const here = options.decodeHereUntilWorkersBoot ? openSync(path, 'r+') : undefined;
  const writeHere = here === undefined ? undefined : chunkWriter(here, { chunks, chunkSize, bytes, keys, digests: index.digests, label: entry.key });
  const allHere = writeHere !== undefined && storedToFetch <= DECODE_HERE_BYTES;
  if (!writeHere) startJobs();
  else if (!allHere) warmWorkers(workers); // booting meanwhile (startup.ts may have started one already)
  let decodedHere = 0;
  const collect = youngCollector();
  try {
    const fetchNext = async (): Promise<void> => {
      try {
        for (let next = queue.shift(); next && failure === undefined; next = queue.shift()) {
          const [address, indexes] = next;
          const chunk = await downloadChunk(store, entry, address);
          onProgress?.(chunk.length);
          collect(chunk.length); // the body's network buffers are dead once joined: this thread's share of the memory bound
          if (writeHere && jobs.length === 0) {
            if (allHere || readyWorkers() === 0) {
              collect(writeHere(chunk, indexes));
              for (const i of indexes) filled.add(i);
              decodedHere++;
              continue;
            }
            startJobs();
          }
          const job = jobs.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
          await job.send(chunk, indexes);
        }
      } catch (error) {
        failure ??= error; // the other downloads stop after their current chunk
        throw error;
      }
    };
    await Promise.all(Array.from({ length: fanOut.downloads }, fetchNext));
    if (failure !== undefined) throw failure;
    for (const job of jobs) job.end();
    const results = await Promise.allSettled(jobs.map((job) => job.result));
    if (failure !== undefined) throw failure;
    for (const result of results) if (result.status === 'fulfilled') for (const i of result.value.filled) filled.add(i);
  } catch (error) {
    await Promise.all(jobs.map((job) => job.abort()));
    throw error;
  } finally {
    if (here !== undefined) closeSync(here);
  }
  if (filled.size !== chunks.length) {
    throw new SyncError('SNAPSHOT_CORRUPT', `Snapshot ${entry.key}: ${chunks.length - filled.size} of ${chunks.length} chunks never arrived.`);
  }
  const assembledAt = performance.now();
  await afterChecks(path, options);
  return { pipelineMs: assembledAt - started, afterMs: performance.now() - assembledAt, decodeWorkers: jobs.length, decodedHere };
}

/** Page deltas fetched at once. */
const DELTA_DOWNLOADS = 8;

/**
 * A page delta: its chain's chunk set assembled as any (or, from `options.from`, a local copy of a
 * restore point on the chain), then each later delta, fetched beside it and verified against its
 * digest, applied in order; then fsync and quick_check, as asked. A delta of the chain that is missing
 * or fails verification fails the whole restore point (the caller falls back to an older one).
 */
async function assembleChain(store: ObjectStore, entry: SnapshotEntry, path: string, options: DownloadOptions): Promise<Fetched> {
  const started = performance.now();
  const chain = deltaChain(options.snapshots ?? [], entry);
  if (!chain) throw new SyncError('NOT_FOUND', `Restore point seq ${entry.seq} is a page delta whose chain back to its chunk set is not all listed in the manifest of ${store.location}.`);
  for (const delta of chain.deltas) checkKey(delta, options.keys, store.location);
  const from = localStart(chain, entry, options.from);
  const deltas = from === undefined ? chain.deltas : chain.deltas.slice(from);
  const fetched = fetchDeltas(store, deltas, options);
  fetched.catch(() => undefined); // awaited below, unless the chunk set fails first
  let pipeline: Fetched;
  if (from !== undefined) {
    await copyFile(options.from!.path, path);
    await canonicalizeFileHeader(path); // as restored: the local connection may have switched it to WAL
    pipeline = { pipelineMs: 0, afterMs: 0 };
  } else {
    pipeline = await assembleInWorkers(store, chain.base, path, { ...options, check: 'none', fsync: false });
  }
  // Decoded and written with synchronous positioned writes (one awaited write per run here took 200-350
  // ms for 5.6 MiB of deltas): in a worker, off this thread, which a replica's catch-up keeps serving
  // reads; here when nothing is served yet and no worker is up (booting one cost a 100k-row chain 250 ms).
  const stored = await fetched;
  const chainDeltas = deltas.map((d, i) => ({ stored: stored[i]!, bytes: d.bytes, label: `seq ${d.seq} (${d.key})` }));
  if (options.decodeHereUntilWorkersBoot && readyWorkers() === 0) applyDeltasToFile(path, chainDeltas, options.keys);
  else await runInWorker({ op: 'apply-deltas', path, keys: options.keys, deltas: chainDeltas });
  const assembledAt = performance.now();
  await afterChecks(path, options);
  return { ...pipeline, pipelineMs: assembledAt - started, afterMs: performance.now() - assembledAt };
}

/**
 * Where in the chain a local file holding restore point `from.entry` can start: the index of the first
 * delta after it (every later link's parent is then at or before the file's point), or undefined when
 * the file is of another chunk set, newer than the target, or gone.
 */
export function localStart(chain: { base: SnapshotEntry; deltas: SnapshotEntry[] }, target: SnapshotEntry, from: DownloadOptions['from']): number | undefined {
  const held = from?.entry;
  if (!held || !existsSync(from.path)) return undefined;
  const sameBase = held.key === chain.base.key || (held.kind === 'delta' && held.base === chain.base.key);
  if (!sameBase || held.generation !== target.generation || held.seq > target.seq) return undefined;
  const next = chain.deltas.findIndex((d) => d.seq > held.seq);
  return next === -1 ? chain.deltas.length : next;
}

/** The chain's deltas, stored bytes (decoded one at a time when applied: memory is their compressed size plus one). */
async function fetchDeltas(store: ObjectStore, deltas: readonly SnapshotEntry[], options: DownloadOptions): Promise<Buffer[]> {
  const out: Buffer[] = new Array(deltas.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < deltas.length; i = next++) {
      const entry = deltas[i]!;
      const parts: Buffer[] = [];
      try {
        for await (const part of store.download(entry.key)) parts.push(part);
      } catch (error) {
        if (!isSyncError(error, 'NOT_FOUND')) throw error;
        throw new SyncError('NOT_FOUND', `Page delta seq ${entry.seq} (${entry.key}) is missing from ${store.location}.`, { cause: error });
      }
      const stored = Buffer.concat(parts);
      options.onProgress?.(stored.length);
      if (storedDigest(stored) !== entry.sha256) throw new SyncError('SNAPSHOT_CORRUPT', `The page delta seq ${entry.seq} (${entry.key}) does not match its sha256 in the manifest (damaged, truncated or replaced).`);
      out[i] = stored;
    }
  };
  await Promise.all(Array.from({ length: Math.min(DELTA_DOWNLOADS, deltas.length) }, lane));
  return out;
}

async function downloadChunk(store: ObjectStore, entry: SnapshotEntry, address: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  try {
    for await (const part of store.download(chunkKey(address))) parts.push(part);
  } catch (error) {
    if (!isSyncError(error, 'NOT_FOUND')) throw error;
    throw new SyncError('NOT_FOUND', `Chunk ${address.slice(0, 16)}… of snapshot seq ${entry.seq} is missing from ${store.location}.`, { cause: error });
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/**
 * fsync and quick_check, as the options ask, at once (one waits on the disk, the other on the CPU). The
 * fsync's descriptor is closed only once the quick_check's connection is: closing any descriptor of a
 * file drops every POSIX lock the process holds on it, SQLite's included, and a connection that lost
 * its lock that way kept its descriptor open after it was closed (seen on a replica's catch-up: the
 * swapped-in file stayed open past close()).
 */
async function afterChecks(path: string, { check = 'quick-check', fsync = true }: DownloadOptions): Promise<void> {
  const file = fsync ? await open(path, 'r') : undefined;
  try {
    await Promise.all([file?.sync(), check === 'quick-check' ? runInWorker({ op: 'quick-check', path }) : undefined]);
  } finally {
    await file?.close();
  }
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

/** A full snapshot: the main thread downloads; a pooled worker decodes, hashes, fsyncs and quick_checks (as asked). */
async function streamIntoWorker(store: ObjectStore, entry: SnapshotEntry, path: string, { check = 'quick-check', fsync = true }: DownloadOptions): Promise<Fetched> {
  const expected = { compressedBytes: entry.compressedBytes, bytes: entry.bytes, sha256: entry.sha256 };
  const job = startWorkerJob({ op: 'restore', path, codec: entry.codec, label: entry.key, expected, quickCheck: check === 'quick-check', fsync });
  try {
    for await (const chunk of store.download(entry.key)) await job.send(chunk);
    job.end();
  } catch (error) {
    await job.abort();
    throw error;
  }
  const decoded = await job.result;
  return { pipelineMs: decoded.firstStepMs, afterMs: decoded.secondStepMs };
}

/**
 * Streams a snapshot from the store into decoding workers (download and decoding overlap), which
 * verify it (sizes, hashes, and as `check` says quick_check); then atomically moves it into place. A
 * download that breaks mid-stream restarts as a whole (`retryWhole`: the workers already consumed its bytes).
 */
export async function downloadSnapshot(
  store: ObjectStore,
  entry: SnapshotEntry,
  dbPath: string,
  options: DownloadOptions = {},
): Promise<{ downloadMs: number; verifyMs: number; decodeWorkers?: number; decodedHere?: number }> {
  const restoredPath = `${dbPath}.restore-${randomBytes(4).toString('hex')}.db`;
  const install = options.install ?? ((verifiedPath: string) => installFile(verifiedPath, dbPath));
  try {
    const t0 = performance.now();
    const fetch = () =>
      entry.kind === 'delta' ? assembleChain(store, entry, restoredPath, options) : entry.kind === 'chunks' ? assembleInWorkers(store, entry, restoredPath, options) : streamIntoWorker(store, entry, restoredPath, options);
    const fetched = await retryWhole(store, `download ${entry.key}`, fetch);
    await install(restoredPath);
    return { downloadMs: performance.now() - t0 - fetched.afterMs, verifyMs: fetched.afterMs, ...(fetched.decodeWorkers ? { decodeWorkers: fetched.decodeWorkers } : {}), ...(fetched.decodedHere ? { decodedHere: fetched.decodedHere } : {}) };
  } finally {
    await rm(restoredPath, { force: true });
  }
}

/**
 * PRAGMA quick_check of a database file in a pooled worker, on its own connection: safe while this
 * thread has the file open and serves reads from it. Rejects SNAPSHOT_CORRUPT when it fails.
 */
export async function checkDatabase(path: string): Promise<{ durationMs: number }> {
  const { durationMs } = await runInWorker({ op: 'quick-check', path });
  return { durationMs };
}

/** fsync of the file and of its directory (its rename into place is durable too), in a pooled worker: off the main thread. */
export async function syncFile(path: string): Promise<void> {
  await runInWorker({ op: 'fsync', path, directory: true });
}

/**
 * Marks a verified copy as a WAL database (header bytes 18-19 = 2) before the app's connection opens
 * it. Snapshots store the legacy value (canonical form, see canonicalizeHeaderBytes), and switching a
 * file to WAL with `PRAGMA journal_mode=WAL` commits a header change that syncs the whole file: ~250 ms
 * at 1M rows of freshly written pages, on the path to the first query. With the flag already set the
 * pragma changes nothing; the file is synced later, beside the background check (or was already, with
 * 'before-open'). A crash before that page reaches the disk leaves the legacy value: still a valid file.
 * Not for copies a user takes away (the CLI's restore): a WAL file cannot be opened from a read-only folder.
 */
export function markWalMode(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.from([2, 2]), 0, 2, 18);
  } finally {
    closeSync(fd);
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
    await downloadSnapshot(store, entry, join(dir, 'latest.db'), { keys, snapshots: head.manifest.snapshots });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return { seq: entry.seq, generation: entry.generation, key: entry.key, createdAt: entry.createdAt, bytes: entry.bytes, durationMs: performance.now() - started };
}
