/**
 * Phase 'incremental' (issue 6): full vs incremental snapshots vs Litestream v0.3.13, side by side in
 * one run, on Azurite, after 1% of the documents are updated through our drizzle().
 *
 * For every configuration (full, and incremental at each chunk size) a base snapshot of the dataset is
 * taken once; the local file, its sidecar and the store are then rolled back to that base before every
 * repetition, so each repetition measures the same change from the same starting point:
 *   1. a child process opens the base copy with our drizzle() (snapshots only on flush()),
 *   2. incremental only: updates one of the rows and flushes (the process's first snapshot also lists the
 *      store for orphans and reads the base index: a once-per-process cost kept out of the measurement,
 *      reported as "first snapshot in a process"); full mode applies the same update without a flush,
 *   3. updates the rest of the 1% in batches of 500:
 *        UPDATE documents SET updated_at = ?, content = json_set(content, '$.rev', ?) WHERE id IN (...)
 *   4. measures `db.$sync.flush()`: wall and CPU time, SnapshotInfo, the objects it wrote (listing the
 *      container before and after) and the peak RSS above the idle process (VmHWM after resetting it
 *      through /proc/self/clear_refs, and a 20 ms rss sampler as a cross-check).
 * Two workloads: (a) 'recent' = the 1% most recently created documents (contiguous rowids; the realistic
 * "recent rows change" pattern, the one judged), (b) 'random' = 1% chosen uniformly (informational).
 * Restores run in child processes too (drizzle() on an empty path), next to the raw baseline: every
 * distinct chunk blob of the same snapshot downloaded with the SDK at concurrency 8 into memory, no
 * decoding. Litestream replicates a copy of the same file to the same Azurite; the same two updates are
 * applied to it and the WAL segments it uploads for them are counted, then its restore is timed.
 *
 * The module is also the child's entry point (BENCH_INCR_CHILD=1, one job over IPC).
 */
import { fork, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { createClient } from '@libsql/client';
import Database from 'better-sqlite3';
import { eq, sql } from 'drizzle-orm';
import { azureBlobStore, importLib, LIB_SRC_HASH, LIB_URL, type BlobDatabase, type SnapshotOptions } from './lib.ts';
import { documents } from '../schema/documents.ts';
import { TRANSFER_RATIO_TARGET } from './azure.ts';
import { EPOCH_MS, mulberry32, type Dataset } from './dataset.ts';
import { copyDb, NO_AUTO_SNAPSHOT, openOurs, sleep, type Schema } from './drivers.ts';
import { ensureLitestream, spawnTimed } from './litestream.ts';
import { startShapedLink } from './shaped-link.ts';
import type { Check } from './report.ts';
import { fmtBytes, fmtMs, fmtRatio, markdownTable, median, passFail, ratio } from './stats.ts';

/** Targets of issue 6. */
export const INCR_BYTES_TARGET = 0.05;
/** Issue 14: one single-row commit uploads at most this, and the upload reads at most ONE_ROW_READ_TARGET of the database. */
export const ONE_ROW_UPLOAD_TARGET = 32 * 1024;
/** Restore through a chain of page deltas / the same data as a fresh chunk set (issue 14). */
export const CHAIN_RESTORE_TARGET = 1.2;
/** Page deltas on top of the chunk set in that comparison. */
export const CHAIN_DELTAS = 200;
export const ONE_ROW_READ_TARGET = 2 * 1024 * 1024;
export const INCR_WALL_TARGET = 0.25;
export const RESTORE_RAW_TARGET = TRANSFER_RATIO_TARGET;
export const MEMORY_TARGET_BYTES = 128 * 2 ** 20;
/** The library's default chunk size (src/config.ts); the checks are judged on it. */
import { DEFAULT_CHUNK_SIZE } from '../src/config.ts';
export { DEFAULT_CHUNK_SIZE };
export const UPDATE_FRACTION = 0.01;
const BATCH = 500;
const RAW_CONCURRENCY = 8;
/** The line rate of the shaped-link comparison: 1 Gbit/s, a common cloud VM / container NIC share. */
export const LINK_BYTES_PER_SEC = 125_000_000;
/** Deterministic new values, later than every row of the dataset, so every repetition writes the same bytes. */
const UPDATED_AT = EPOCH_MS + 400 * 86_400_000;
const REV = 1;
const CONTAINER = 'incr';
const LS_CONTAINER = 'litestream-incr';

export type Workload = 'recent' | 'random';
export const WORKLOADS: readonly Workload[] = ['recent', 'random'];

export interface Memory {
  /** RSS of the child process right before the operation (after gc). */
  idleRss: number;
  /** Peak RSS during the operation: VmHWM after a reset through /proc/self/clear_refs, else the sampled peak. */
  peakRss: number;
  /** Highest process.memoryUsage.rss() seen by a 20 ms sampler (a cross-check). */
  sampledPeakRss: number;
  method: 'VmHWM' | 'sampled';
}

export interface Upload {
  /** Everything written to the store by the measured snapshot (chunks + index or snapshot file + manifest). */
  total: number;
  chunks: number;
  chunkBytes: number;
  /** The chunk index (incremental) or the compressed snapshot file (full). */
  snapshotObjectBytes: number;
  manifestBytes: number;
}

export interface SnapshotRun extends Memory {
  workload: Workload | 'base';
  wallMs: number;
  cpuMs: number;
  /** SnapshotInfo of the measured flush(). */
  durationMs: number;
  bytes: number;
  compressedBytes: number;
  uploaded: boolean;
  upload: Upload;
  /** Applying the update through our drizzle() (all batches but the first row). */
  updateMs: number;
  /** Incremental: the process's first snapshot (one row changed), not part of the measurement. */
  firstSnapshotMs: number;
  /**
   * Incremental: after the first snapshot, one more single-row commit and its flush(): what that upload
   * wrote (listings before and after), what it read of the database (SnapshotInfo.readBytes), and the
   * process's rchar over the flush (every read() and pread(), page cache hits included, the store's
   * HTTP responses too).
   */
  oneRow?: { upload: Upload; readBytes: number; rchar: number; wallMs: number };
}

export interface RestoreRun extends Memory {
  /** drizzle() on an empty path: probe, lease, download + verify + assemble, quick_check, open. */
  hydrateMs: number;
  firstQueryMs: number;
  /** From the 'restored database from snapshot' log line: download (incl. verify and assembly) and quick_check. */
  downloadMs: number;
  verifyMs: number;
  cpuMs: number;
}

export interface RawRun extends Memory {
  wallMs: number;
  cpuMs: number;
  bytes: number;
  blobs: number;
  /** CPU time of the Azurite process while the child ran (the emulator shares this machine's cores). */
  storeCpuMs?: number;
}

/**
 * The restore's unavoidable local work, measured alone in one thread from chunks already in memory: the
 * library's own decodeChunk (lz4 + sha256 against the address) and the writes at their offsets, then
 * PRAGMA quick_check of the result. With the raw download's CPU (client + Azurite) this gives a lower
 * bound for the restore on this machine's cores.
 */
export interface FloorRun {
  chunks: number;
  storedBytes: number;
  plainBytes: number;
  decodeMs: number;
  writeMs: number;
  quickCheckMs: number;
}

export interface ConfigResult {
  name: string;
  mode: 'full' | 'incremental';
  chunkSize?: number;
  base: SnapshotRun;
  runs: SnapshotRun[];
  restores: RestoreRun[];
  raws: RawRun[];
  floors?: FloorRun[];
  /** The judged configuration only: the same raw download and restore through a link shaped to LINK_BYTES_PER_SEC. */
  linked?: { bytesPerSec: number; raws: RawRun[]; restores: RestoreRun[] };
  /** Objects of the base snapshot: chunks (incremental) or 1 file. */
  baseObjects: number;
  /** Listing the base's chunk blobs once (what the first snapshot of a process adds for its orphan sweep). */
  listChunksMs?: number;
}

export interface LitestreamIncr {
  version: string;
  /** Snapshot + WAL segments after the initial sync (before the update). */
  baseBytes: number;
  /** Per workload, applied one after the other (random on top of recent): new WAL segment bytes. */
  updates: { workload: Workload; bytes: number; segments: number; commitToUploadedMs: number; updateMs: number }[];
  restoreMs: number;
  restoreCpuMs: number;
  restoreMaxRss: number;
  restoredBytes: number;
}

/**
 * Where the time of an incremental snapshot goes: the library's own page reader (openPageImage) and chunk
 * codec, imported from the build under test and run step by step in one thread over the same update, with
 * the known chunks computed from the base file (no store needed, so any chunk size is cheap to try).
 */
export interface ProfileRun {
  chunkSize: number;
  workload: Workload;
  chunks: number;
  freshChunks: number;
  /** Encoded (lz4) bytes of the new chunks: what the snapshot uploads besides its index and the manifest. */
  freshBytes: number;
  /** JSON chunk index of this snapshot (uploaded with every snapshot). */
  indexBytes: number;
  walPages: number;
  /** Chunks read through sqlite_dbpage (a page of theirs has a WAL frame, or lies beyond the file). */
  dbpageChunks: number;
  fileReadMs: number;
  dbpageReadMs: number;
  hashMs: number;
  encodeMs: number;
  /** openPageImage's close (PRAGMA wal_checkpoint(PASSIVE)). */
  closeMs: number;
  /** Uploading the new chunks at concurrency 4 (the library's), measured on up to `uploadedChunks` and scaled. */
  uploadMs: number;
  uploadedChunks: number;
}

/** Restore through a chunk set plus a chain of page deltas, next to the same data as a fresh chunk set (issue 14). */
export interface ChainResult {
  deltas: number;
  /** Stored bytes of the deltas, and of the fresh chunk set's chunks. */
  deltaBytes: number;
  chainRestores: RestoreRun[];
  freshRestores: RestoreRun[];
}

export interface IncrementalResult {
  chain?: ChainResult;
  rows: number;
  dbBytes: number;
  updatedRows: number;
  reps: number;
  restoreReps: number;
  configs: ConfigResult[];
  litestream?: LitestreamIncr | { error: string };
  profiles: ProfileRun[];
  elapsedMs: number;
}

// ---------------------------------------------------------------------------------------------------
// Child side

type Job =
  | { kind: 'snapshot'; dbPath: string; conn: string; prefix: string; snapshot: SnapshotOptions; idsFile?: string; warmup: boolean; workload: Workload | 'base' }
  | { kind: 'restore'; dbPath: string; conn: string; prefix: string; probeId: string }
  | { kind: 'raw'; conn: string; names: string[]; concurrency: number; blockSize?: number }
  | { kind: 'floor'; conn: string; prefix: string; indexKey: string; outPath: string }
  | { kind: 'profile'; dbPath: string; basePath: string; chunkSize: number; idsFile: string; workload: Workload; conn: string; prefix: string; maxUploads: number }
  | { kind: 'chain'; dbPath: string; conn: string; prefix: string; freshPrefix: string; idsFile: string; deltas: number };

/** What the 'chain' job built: the deltas' stored bytes. */
interface ChainBuilt {
  deltas: number;
  deltaBytes: number;
}

type JobResult = SnapshotRun | RestoreRun | RawRun | ProfileRun | FloorRun | ChainBuilt;

const statusBytes = (field: string): number => {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
};

/** Measures peak RSS over `fn` relative to the process right before it. */
async function measured<T>(fn: () => Promise<T>): Promise<[T, Memory & { wallMs: number; cpuMs: number }]> {
  (globalThis as { gc?: () => void }).gc?.();
  await sleep(50);
  const idleRss = process.memoryUsage.rss();
  let method: Memory['method'] = 'VmHWM';
  try {
    writeFileSync('/proc/self/clear_refs', '5'); // resets VmHWM to the current RSS (Linux >= 4.0)
  } catch {
    method = 'sampled';
  }
  let sampledPeakRss = idleRss;
  const sampler = setInterval(() => (sampledPeakRss = Math.max(sampledPeakRss, process.memoryUsage.rss())), 20);
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  try {
    const value = await fn();
    const wallMs = performance.now() - t0;
    const c = process.cpuUsage(cpu);
    sampledPeakRss = Math.max(sampledPeakRss, process.memoryUsage.rss());
    const hwm = method === 'VmHWM' ? statusBytes('VmHWM') : NaN;
    const peakRss = Number.isFinite(hwm) ? hwm : sampledPeakRss;
    return [value, { wallMs, cpuMs: (c.user + c.system) / 1000, idleRss, peakRss, sampledPeakRss, method: Number.isFinite(hwm) ? 'VmHWM' : 'sampled' }];
  } finally {
    clearInterval(sampler);
  }
}

async function applyUpdate(db: BlobDatabase<Schema>, ids: readonly string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += BATCH) {
    const batch = ids.slice(i, i + BATCH);
    await db.run(sql`UPDATE documents SET updated_at = ${UPDATED_AT}, content = json_set(content, '$.rev', ${REV}) WHERE id IN (${sql.join(batch.map((id) => sql`${id}`), sql`, `)})`);
  }
}

async function listBlobs(container: ContainerClient, prefix: string): Promise<Map<string, { size: number; etag: string }>> {
  const out = new Map<string, { size: number; etag: string }>();
  for await (const b of container.listBlobsFlat({ prefix: `${prefix}/` })) out.set(b.name, { size: b.properties.contentLength ?? 0, etag: b.properties.etag ?? '' });
  return out;
}

function uploadDiff(before: Map<string, { size: number; etag: string }>, after: Map<string, { size: number; etag: string }>): Upload {
  const u: Upload = { total: 0, chunks: 0, chunkBytes: 0, snapshotObjectBytes: 0, manifestBytes: 0 };
  for (const [name, b] of after) {
    if (before.get(name)?.etag === b.etag) continue;
    u.total += b.size;
    if (name.endsWith('/manifest.json')) u.manifestBytes += b.size;
    else if (name.includes('/chunks/')) {
      u.chunks++;
      u.chunkBytes += b.size;
    } else u.snapshotObjectBytes += b.size;
  }
  return u;
}

type PageImageModule = typeof import('../src/sync/chunks/page-image.ts');
type CodecModule = typeof import('../src/sync/chunks/chunk-codec.ts');
type ChunkIndexModule = typeof import('../src/sync/chunks/chunk-index.ts');

/** Page numbers of every frame header in a WAL file (as the library's reader collects them). */
function walPageSet(walPath: string): Set<number> {
  const pages = new Set<number>();
  let buf: Buffer;
  try {
    buf = readFileSync(walPath);
  } catch {
    return pages;
  }
  if (buf.length < 32) return pages;
  const frameBytes = 24 + (buf.readUInt32BE(8) || 65536);
  for (let at = 32; at + 24 <= buf.length; at += frameBytes) pages.add(buf.readUInt32BE(at));
  return pages;
}

async function runProfile(job: Extract<Job, { kind: 'profile' }>): Promise<ProfileRun> {
  const { openPageImage, canonicalizeHeaderBytes } = await importLib<PageImageModule>('sync/chunks/page-image');
  const { chunkAddress, encodeChunk } = await importLib<CodecModule>('sync/chunks/chunk-codec');
  const { chunkSize } = job;
  // The base's chunk addresses (what the store already has).
  const known = new Set<string>();
  const base = readFileSync(job.basePath);
  for (let off = 0; off < base.length; off += chunkSize) {
    const data = Buffer.from(base.subarray(off, Math.min(base.length, off + chunkSize)));
    if (off === 0) canonicalizeHeaderBytes(data);
    known.add(chunkAddress(data, undefined));
  }
  // The app's connection, as ours opens it, applies the same update.
  const app = createClient({ url: `file:${job.dbPath}` });
  try {
    await app.execute('PRAGMA journal_mode=WAL');
    await app.execute('PRAGMA synchronous=NORMAL');
    const ids = JSON.parse(await readFile(job.idsFile, 'utf8')) as string[];
    for (const batch of [ids.slice(0, 1), ...Array.from({ length: Math.ceil((ids.length - 1) / BATCH) }, (_, i) => ids.slice(1 + i * BATCH, 1 + (i + 1) * BATCH))]) {
      if (batch.length) await app.execute({ sql: `UPDATE documents SET updated_at = ?, content = json_set(content, '$.rev', ?) WHERE id IN (${batch.map(() => '?').join(',')})`, args: [UPDATED_AT, REV, ...batch] });
    }
    const inWal = walPageSet(`${job.dbPath}-wal`);
    const fileBytes = statSync(job.dbPath).size;
    const r: ProfileRun = { chunkSize, workload: job.workload, chunks: 0, freshChunks: 0, freshBytes: 0, indexBytes: 0, walPages: inWal.size, dbpageChunks: 0, fileReadMs: 0, dbpageReadMs: 0, hashMs: 0, encodeMs: 0, closeMs: 0, uploadMs: 0, uploadedChunks: 0 };
    const image = await openPageImage(import('@libsql/client/sqlite3'), job.dbPath, chunkSize);
    const pagesPerChunk = Math.max(1, Math.floor(chunkSize / image.pageSize));
    const toUpload: { address: string; body: Buffer }[] = [];
    const stored: number[] = [];
    const addresses: string[] = [];
    const it = image.chunks();
    for (let i = 0; ; i++) {
      const first = 1 + i * pagesPerChunk;
      let viaDbpage = first + pagesPerChunk - 1 > fileBytes / image.pageSize;
      for (let p = first; p < first + pagesPerChunk && !viaDbpage; p++) viaDbpage = inWal.has(p);
      let t = performance.now();
      const next = await it.next();
      if (next.done) break;
      if (viaDbpage) {
        r.dbpageReadMs += performance.now() - t;
        r.dbpageChunks++;
      } else r.fileReadMs += performance.now() - t;
      t = performance.now();
      const address = chunkAddress(next.value.data, undefined);
      r.hashMs += performance.now() - t;
      r.chunks++;
      addresses.push(address);
      if (known.has(address)) {
        stored.push(0);
        continue;
      }
      known.add(address);
      t = performance.now();
      const body = encodeChunk(next.value.data, undefined);
      r.encodeMs += performance.now() - t;
      r.freshChunks++;
      r.freshBytes += body.length;
      stored.push(body.length);
      if (toUpload.length < job.maxUploads) toUpload.push({ address, body });
    }
    let t = performance.now();
    await image.close();
    r.closeMs = performance.now() - t;
    r.indexBytes = Buffer.byteLength(JSON.stringify({ format: 1, bytes: image.bytes, pageSize: image.pageSize, chunkSize, chunks: addresses, stored: stored.map((x) => x || 262_144) }));
    // Upload the first new chunks as the library does (uploadBuffer, 4 at a time), scaled to all of them.
    const container = BlobServiceClient.fromConnectionString(job.conn).getContainerClient(CONTAINER);
    const queue = [...toUpload];
    t = performance.now();
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let c = queue.shift(); c; c = queue.shift()) await container.getBlockBlobClient(`${job.prefix}/chunks/${c.address}`).upload(c.body, c.body.length);
    }));
    r.uploadedChunks = toUpload.length;
    r.uploadMs = toUpload.length ? ((performance.now() - t) * r.freshChunks) / toUpload.length : 0;
    await deletePrefixFast(container, job.prefix);
    return r;
  } finally {
    app.close();
  }
}

async function runFloor(job: Extract<Job, { kind: 'floor' }>): Promise<FloorRun> {
  const { decodeChunk } = await importLib<CodecModule>('sync/chunks/chunk-codec');
  const { chunkPositions } = await importLib<ChunkIndexModule>('sync/chunks/chunk-index');
  const container = BlobServiceClient.fromConnectionString(job.conn).getContainerClient(CONTAINER);
  const index = JSON.parse((await container.getBlobClient(`${job.prefix}/${job.indexKey}`).downloadToBuffer()).toString('utf8')) as { chunks: string[]; chunkSize: number; bytes: number };
  const positions = chunkPositions(index.chunks);
  // Untimed: every distinct chunk into memory first.
  const stored = new Map<string, Buffer>();
  const queue = [...positions.keys()];
  const fetchNext = async (): Promise<void> => {
    for (let address = queue.shift(); address; address = queue.shift()) stored.set(address, await container.getBlobClient(`${job.prefix}/chunks/${address}`).downloadToBuffer());
  };
  await Promise.all(Array.from({ length: RAW_CONCURRENCY }, fetchNext));
  let decodeMs = 0;
  let writeMs = 0;
  let storedBytes = 0;
  const fd = openSync(job.outPath, 'w');
  try {
    for (const [address, indexes] of positions) {
      const data = stored.get(address)!;
      storedBytes += data.length;
      const t0 = performance.now();
      const plain = decodeChunk(data, address, undefined, 'floor');
      const t1 = performance.now();
      for (const i of indexes) writeSync(fd, plain, 0, plain.length, i * index.chunkSize);
      writeMs += performance.now() - t1;
      decodeMs += t1 - t0;
      stored.delete(address);
    }
  } finally {
    closeSync(fd);
  }
  const client = createClient({ url: `file:${job.outPath}` });
  try {
    const t0 = performance.now();
    const verdict = String((await client.execute('PRAGMA quick_check')).rows[0]?.[0]);
    const quickCheckMs = performance.now() - t0;
    if (verdict !== 'ok') throw new Error(`floor: quick_check of the assembled file said ${verdict}`);
    return { chunks: positions.size, storedBytes, plainBytes: index.bytes, decodeMs, writeMs, quickCheckMs };
  } finally {
    client.close();
    await rm(job.outPath, { force: true });
  }
}

/** Bytes this process has read through read()/pread() so far (/proc/self/io rchar); NaN where unreadable. */
function rchar(): number {
  try {
    return Number(/^rchar: (\d+)/m.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** CPU time (user + system) of another process so far, from /proc (clock ticks of 10 ms); NaN where unreadable. */
function processCpuMs(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/**
 * On the base state: one upload (the process's first reads the whole file: a chunk set), then `deltas`
 * single-row updates each flushed (a page delta each) on `prefix`; then a copy of the result uploaded
 * as one fresh chunk set on `freshPrefix`.
 */
async function runChain(job: Extract<Job, { kind: 'chain' }>): Promise<ChainBuilt> {
  const ids = JSON.parse(await readFile(job.idsFile, 'utf8')) as string[];
  const store = azureBlobStore({ connectionString: job.conn, container: CONTAINER, prefix: job.prefix, createContainer: true });
  const db = await openOurs(job.dbPath, store, { ...NO_AUTO_SNAPSHOT, mode: 'incremental', maxDeltas: job.deltas + 1 });
  let deltaBytes = 0;
  try {
    await applyUpdate(db, ids.slice(0, 1));
    if ((await db.$sync.flush())?.kind !== 'chunks') throw new Error("the chain's first upload is not a chunk set");
    for (let i = 1; i <= job.deltas; i++) {
      await applyUpdate(db, [ids[i % ids.length]!]);
      const info = await db.$sync.flush();
      if (info?.kind !== 'delta') throw new Error(`upload ${i} of the chain is ${info?.kind ?? 'nothing'}, not a delta`);
      deltaBytes += info.compressedBytes;
    }
  } finally {
    await db.$sync.close();
  }
  const copy = `${job.dbPath}.fresh.db`;
  await copyDb(job.dbPath, copy);
  const fresh = await openOurs(copy, azureBlobStore({ connectionString: job.conn, container: CONTAINER, prefix: job.freshPrefix, createContainer: true }), { ...NO_AUTO_SNAPSHOT, mode: 'incremental', maxDeltas: 0 });
  try {
    if ((await fresh.$sync.flush())?.kind !== 'chunks') throw new Error('the fresh upload is not a chunk set');
  } finally {
    await fresh.$sync.close();
    await rm(copy, { force: true });
  }
  return { deltas: job.deltas, deltaBytes };
}

async function runJob(job: Job): Promise<JobResult> {
  if (job.kind === 'chain') return runChain(job);
  if (job.kind === 'profile') return runProfile(job);
  if (job.kind === 'floor') return runFloor(job);
  const containerOf = (conn: string) => BlobServiceClient.fromConnectionString(conn).getContainerClient(CONTAINER);
  if (job.kind === 'snapshot') {
    const container = containerOf(job.conn);
    const store = azureBlobStore({ connectionString: job.conn, container: CONTAINER, prefix: job.prefix, createContainer: true });
    const db = await openOurs(job.dbPath, store, job.snapshot);
    try {
      const ids = job.idsFile ? (JSON.parse(await readFile(job.idsFile, 'utf8')) as string[]) : [];
      let firstSnapshotMs = NaN;
      if (ids.length > 0) {
        await applyUpdate(db, ids.slice(0, 1));
        if (job.warmup) {
          const t0 = performance.now();
          if (!(await db.$sync.flush())?.uploaded) throw new Error('the warm-up snapshot uploaded nothing');
          firstSnapshotMs = performance.now() - t0;
        }
      }
      let oneRow: SnapshotRun['oneRow'];
      if (job.warmup && ids.length > 0) {
        await db.run(sql`UPDATE documents SET content = json_set(content, '$.one', ${Date.now()}) WHERE id = ${ids[0]!}`);
        const listed = await listBlobs(container, job.prefix);
        const rchar0 = rchar();
        const t0 = performance.now();
        const info = await db.$sync.flush();
        const wallMs = performance.now() - t0;
        if (!info?.uploaded) throw new Error(`the single-row flush() uploaded nothing (${JSON.stringify(info)})`);
        oneRow = { upload: uploadDiff(listed, await listBlobs(container, job.prefix)), readBytes: info.readBytes, rchar: rchar() - rchar0, wallMs };
      }
      const u0 = performance.now();
      await applyUpdate(db, ids.slice(1));
      const updateMs = performance.now() - u0;
      const before = await listBlobs(container, job.prefix);
      const [info, m] = await measured(() => db.$sync.flush());
      if (!info?.uploaded) throw new Error(`flush() uploaded nothing (${JSON.stringify(info)})`);
      const upload = uploadDiff(before, await listBlobs(container, job.prefix));
      return { workload: job.workload, ...m, durationMs: info.durationMs, bytes: info.bytes, compressedBytes: info.compressedBytes, uploaded: info.uploaded, upload, updateMs, firstSnapshotMs, ...(oneRow ? { oneRow } : {}) };
    } finally {
      await db.$sync.close();
    }
  }
  if (job.kind === 'restore') {
    const store = azureBlobStore({ connectionString: job.conn, container: CONTAINER, prefix: job.prefix });
    const split = { downloadMs: NaN, verifyMs: NaN };
    const errors: string[] = [];
    const log = {
      info: (f: object, msg?: string) => void (msg === 'restored database from snapshot' && Object.assign(split, f)),
      warn: (f: object, msg?: string) => void errors.push(`${msg} ${JSON.stringify(f)}`),
      error: (f: object, msg?: string) => void errors.push(`${msg} ${JSON.stringify(f)}`),
    };
    let hydrateMs = NaN;
    let db: BlobDatabase<Schema> | undefined;
    const [, m] = await measured(async () => {
      const t0 = performance.now();
      db = await openOurs(job.dbPath, store, NO_AUTO_SNAPSHOT, log);
      hydrateMs = performance.now() - t0;
      const row = await db.select({ id: documents.id }).from(documents).where(eq(documents.id, job.probeId)).limit(1);
      if (row.length !== 1) throw new Error('the restored database lacks a known row');
    });
    try {
      if (db!.$sync.status().restoredFrom === null) throw new Error(`restore did not download a snapshot (${errors.join('; ')})`);
    } finally {
      await db!.$sync.close();
    }
    return { ...m, hydrateMs, firstQueryMs: m.wallMs, downloadMs: split.downloadMs, verifyMs: split.verifyMs };
  }
  // raw: every object downloaded into memory with the SDK, `concurrency` at a time, nothing decoded.
  const container = containerOf(job.conn);
  let bytes = 0;
  const [, m] = await measured(async () => {
    if (job.blockSize) {
      // One large object (a full snapshot): the SDK's parallel ranged download.
      for (const name of job.names) bytes += (await container.getBlockBlobClient(name).downloadToBuffer(undefined, undefined, { concurrency: job.concurrency, blockSize: job.blockSize })).length;
      return;
    }
    const queue = [...job.names];
    const next = async (): Promise<void> => {
      for (let name = queue.shift(); name; name = queue.shift()) {
        const response = await container.getBlobClient(name).download(0);
        const parts: Buffer[] = [];
        for await (const part of response.readableStreamBody ?? []) parts.push(part as Buffer);
        bytes += Buffer.concat(parts).length;
      }
    };
    await Promise.all(Array.from({ length: job.concurrency }, next));
  });
  return { ...m, bytes, blobs: job.names.length };
}

if (process.env.BENCH_INCR_CHILD === '1' && process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.once('message', (job: Job) => {
    runJob(job).then(
      (result) => process.send!({ ok: true, result }, () => process.exit(0)),
      (error: unknown) => process.send!({ ok: false, error: (error as Error)?.stack ?? String(error) }, () => process.exit(1)),
    );
  });
}

// ---------------------------------------------------------------------------------------------------
// Parent side

function child<T extends JobResult>(job: Job, timeoutMs = 900_000): Promise<T> {
  return new Promise<T>((resolvePromise, reject) => {
    const proc = fork(fileURLToPath(import.meta.url), [], {
      execArgv: [...process.execArgv, '--expose-gc'],
      env: { ...process.env, BENCH_INCR_CHILD: '1', BENCH_LIB_URL: LIB_URL, BENCH_LIB_SRC_HASH: LIB_SRC_HASH },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let reply: { ok: true; result: T } | { ok: false; error: string } | undefined;
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('message', (m: typeof reply) => (reply = m));
    proc.once('error', reject);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (reply?.ok) resolvePromise(reply.result);
      else reject(new Error(`${job.kind} child failed (exit ${code ?? signal}): ${reply && !reply.ok ? reply.error : 'no reply'}`));
    });
    proc.send(job);
  });
}

/** Ids of the workloads: (a) the most recently created rows (rowid order is creation order), (b) uniform. */
function workloadIds(dbPath: string, count: number): Record<Workload, string[]> {
  const sqlite = new Database(dbPath, { readonly: true });
  try {
    const recent = sqlite.prepare('SELECT id FROM documents ORDER BY rowid DESC LIMIT ?').pluck().all(count) as string[];
    const max = (sqlite.prepare('SELECT max(rowid) AS m FROM documents').get() as { m: number }).m;
    const rand = mulberry32(0x1d);
    const rowids = new Set<number>();
    while (rowids.size < count) rowids.add(1 + Math.floor(rand() * max));
    const pick = sqlite.prepare('SELECT id FROM documents WHERE rowid = ?').pluck();
    const random = [...rowids].map((r) => pick.get(r) as string | undefined).filter((x): x is string => x !== undefined);
    return { recent, random };
  } finally {
    sqlite.close();
  }
}

interface Cfg {
  name: string;
  /** Repetitions: all for full and the default chunk size, one for the other chunk sizes (each costs minutes at 1M). */
  reps: number;
  snapshot: SnapshotOptions;
  prefix: string;
  base?: { db: string; state: string; manifest: Buffer; blobs: Map<string, { size: number; etag: string }> };
}

export const chunkLabel = (bytes: number): string => (bytes >= 1 << 20 ? `${bytes / (1 << 20)} MiB` : `${bytes / 1024} KiB`);

async function deletePrefixFast(container: ContainerClient, prefix: string, keep?: Map<string, unknown>): Promise<void> {
  const names: string[] = [];
  for await (const b of container.listBlobsFlat({ prefix: `${prefix}/` })) if (!keep?.has(b.name)) names.push(b.name);
  const next = async (): Promise<void> => {
    for (let n = names.pop(); n; n = names.pop()) await container.deleteBlob(n).catch(() => undefined);
  };
  await Promise.all(Array.from({ length: 16 }, next));
}

export async function runIncremental(
  az: { connectionString: string; blobEndpoint: string; accountName: string; accountKey: string; pid?: number },
  dataset: Dataset,
  work: string,
  label: string,
  o: { reps: number; restoreReps: number; chunkSizes: number[]; profileChunkSizes: number[]; litestream: boolean; chainDeltas: number },
  print: (line: string) => void,
): Promise<IncrementalResult> {
  const started = performance.now();
  const log = (line: string) => print(`${line} (+${((performance.now() - started) / 1000).toFixed(0)} s)`);
  const conn = az.connectionString;
  const container = BlobServiceClient.fromConnectionString(conn).getContainerClient(CONTAINER);
  await container.createIfNotExists();
  const updatedRows = Math.max(1, Math.round(dataset.rows * UPDATE_FRACTION));
  const ids = workloadIds(dataset.path, updatedRows);
  const idsFile = { recent: join(work, 'ids-recent.json'), random: join(work, 'ids-random.json') };
  for (const w of WORKLOADS) await writeFile(idsFile[w], JSON.stringify(ids[w]));
  const probeId = ids.recent[0]!;
  const live = join(work, 'incr-live.db');
  const cfgs: Cfg[] = [
    { name: 'full', reps: o.reps, snapshot: { ...NO_AUTO_SNAPSHOT, mode: 'full' }, prefix: `full-${label}-${process.pid}` },
    ...o.chunkSizes.map((c) => ({ name: `incremental ${chunkLabel(c)}`, reps: c === DEFAULT_CHUNK_SIZE ? o.reps : 1, snapshot: { ...NO_AUTO_SNAPSHOT, mode: 'incremental' as const, chunkSize: c }, prefix: `incr${c}-${label}-${process.pid}` })),
  ];
  const results = new Map<string, ConfigResult>();
  const profiles: ProfileRun[] = [];
  let chain: ChainResult | undefined;
  try {
    // 1. The base snapshot of every configuration, and what to roll back to.
    for (const [i, cfg] of cfgs.entries()) {
      log(`[${label}] incremental: base snapshot, ${cfg.name}`);
      await copyDb(dataset.path, live);
      const base = await child<SnapshotRun>({ kind: 'snapshot', dbPath: live, conn, prefix: cfg.prefix, snapshot: cfg.snapshot, warmup: false, workload: 'base' });
      const db = join(work, `incr-base-${i}.db`);
      const state = `${db}.sync.json`;
      await copyDb(live, db);
      await copyFile(`${live}.sync.json`, state);
      const manifest = await container.getBlobClient(`${cfg.prefix}/manifest.json`).downloadToBuffer();
      const blobs = await listBlobs(container, cfg.prefix);
      cfg.base = { db, state, manifest, blobs };
      let listChunksMs: number | undefined;
      if (cfg.snapshot.mode === 'incremental') {
        const t0 = performance.now();
        await listBlobs(container, `${cfg.prefix}/chunks`);
        listChunksMs = performance.now() - t0;
      }
      results.set(cfg.name, { name: cfg.name, mode: cfg.snapshot.mode!, ...(cfg.snapshot.chunkSize ? { chunkSize: cfg.snapshot.chunkSize } : {}), base, runs: [], restores: [], raws: [], baseObjects: [...blobs.keys()].filter((n) => !n.endsWith('/manifest.json')).length, ...(listChunksMs !== undefined ? { listChunksMs } : {}) });
    }

    const rollback = async (cfg: Cfg): Promise<void> => {
      const b = cfg.base!;
      const manifest = container.getBlockBlobClient(`${cfg.prefix}/manifest.json`);
      await manifest.getBlobLeaseClient().breakLease(0).catch(() => undefined); // normally released at close already
      await manifest.upload(b.manifest, b.manifest.length);
      await deletePrefixFast(container, cfg.prefix, b.blobs);
      await copyDb(b.db, live);
      await copyFile(b.state, `${live}.sync.json`);
    };

    // 2. The measured snapshots, configurations and workloads interleaved (the machine drifts).
    for (let rep = 0; rep < o.reps; rep++) {
      const order = (rep % 2 === 0 ? cfgs : [...cfgs].reverse()).filter((c) => rep < c.reps);
      for (const cfg of order) {
        for (const w of rep % 2 === 0 ? WORKLOADS : [...WORKLOADS].reverse()) {
          await rollback(cfg);
          const run = await child<SnapshotRun>({ kind: 'snapshot', dbPath: live, conn, prefix: cfg.prefix, snapshot: cfg.snapshot, idsFile: idsFile[w], warmup: cfg.snapshot.mode === 'incremental', workload: w });
          results.get(cfg.name)!.runs.push(run);
          log(`[${label}] incremental: rep ${rep + 1}/${o.reps} ${cfg.name} ${w}: flush ${fmtMs(run.wallMs)} ms, uploaded ${fmtBytes(run.upload.total)}, peak +${fmtBytes(run.peakRss - run.idleRss)}`);
        }
      }
    }
    for (const cfg of cfgs) await rollback(cfg);

    // 3. Restores of the base snapshot next to the raw download of the same objects.
    const objects = new Map<string, { names: string[]; blockSize?: number; indexKey?: string }>();
    for (const cfg of cfgs) {
      const m = JSON.parse(cfg.base!.manifest.toString('utf8')) as { snapshots: { key: string; kind?: string }[] };
      const latest = m.snapshots[0]!;
      if (latest.kind === 'chunks') {
        const index = JSON.parse((await container.getBlobClient(`${cfg.prefix}/${latest.key}`).downloadToBuffer()).toString('utf8')) as { chunks: string[] };
        objects.set(cfg.name, { names: [...new Set(index.chunks)].map((a) => `${cfg.prefix}/chunks/${a}`), indexKey: latest.key });
      } else {
        objects.set(cfg.name, { names: [`${cfg.prefix}/${latest.key}`], blockSize: 8 << 20 });
      }
    }
    for (let rep = 0; rep < o.restoreReps; rep++) {
      for (const cfg of (rep % 2 === 0 ? cfgs : [...cfgs].reverse()).filter((c) => rep < Math.min(c.reps, o.restoreReps))) {
        const r = results.get(cfg.name)!;
        const obj = objects.get(cfg.name)!;
        const rawCpu0 = processCpuMs(az.pid);
        const raw = await child<RawRun>({ kind: 'raw', conn, names: obj.names, concurrency: RAW_CONCURRENCY, ...(obj.blockSize ? { blockSize: obj.blockSize } : {}) });
        raw.storeCpuMs = processCpuMs(az.pid) - rawCpu0;
        r.raws.push(raw);
        if (obj.indexKey) {
          const floor = await child<FloorRun>({ kind: 'floor', conn, prefix: cfg.prefix, indexKey: obj.indexKey, outPath: join(work, 'incr-floor.db') });
          (r.floors ??= []).push(floor);
        }
        const dir = join(work, `incr-restore-${rep}`);
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
        const restore = await child<RestoreRun>({ kind: 'restore', dbPath: join(dir, 'app.db'), conn, prefix: cfg.prefix, probeId });
        r.restores.push(restore);
        await rm(dir, { recursive: true, force: true });
        if (cfg.snapshot.chunkSize === DEFAULT_CHUNK_SIZE) {
          // The same pair over a 1 Gbit/s link: what a restore costs when the network, not this CPU, is the limit.
          const link = await startShapedLink({ targetHost: '127.0.0.1', targetPort: Number(new URL(az.blobEndpoint).port), bytesPerSec: LINK_BYTES_PER_SEC });
          try {
            const linkedConn = link.route(conn);
            const linkedRaw = await child<RawRun>({ kind: 'raw', conn: linkedConn, names: obj.names, concurrency: RAW_CONCURRENCY });
            await rm(dir, { recursive: true, force: true });
            await mkdir(dir, { recursive: true });
            const linkedRestore = await child<RestoreRun>({ kind: 'restore', dbPath: join(dir, 'app.db'), conn: linkedConn, prefix: cfg.prefix, probeId });
            await rm(dir, { recursive: true, force: true });
            r.linked ??= { bytesPerSec: LINK_BYTES_PER_SEC, raws: [], restores: [] };
            r.linked.raws.push(linkedRaw);
            r.linked.restores.push(linkedRestore);
            log(`[${label}] incremental: restore rep ${rep + 1}/${o.restoreReps} ${cfg.name} over a ${(LINK_BYTES_PER_SEC * 8) / 1e9} Gbit/s link: raw ${fmtMs(linkedRaw.wallMs)} ms, restore ${fmtMs(linkedRestore.hydrateMs)} ms (quick_check ${fmtMs(linkedRestore.verifyMs)} ms)`);
          } finally {
            await link.close();
          }
        }
        const floor = r.floors?.at(-1);
        const bound = floor ? ` | floor ${fmtRatio(restoreFloor(raw, floor).withQuickCheck / raw.wallMs)} (decode ${fmtMs(floor.decodeMs)} + write ${fmtMs(floor.writeMs)} + quick_check ${fmtMs(floor.quickCheckMs)} ms; raw CPU ${fmtMs(raw.cpuMs)} + Azurite ${fmtMs(raw.storeCpuMs ?? NaN)} ms)` : '';
        log(`[${label}] incremental: restore rep ${rep + 1}/${o.restoreReps} ${cfg.name}: raw ${fmtMs(raw.wallMs)} ms, restore ${fmtMs(restore.hydrateMs)} ms (quick_check ${fmtMs(restore.verifyMs)} ms), peak +${fmtBytes(restore.peakRss - restore.idleRss)}${bound}`);
      }
    }

    // 4. A restore point at the end of a chain of page deltas, restored next to the same data as a fresh chunk set.
    const chainCfg = cfgs.find((c) => c.snapshot.chunkSize === DEFAULT_CHUNK_SIZE);
    if (chainCfg && o.chainDeltas > 0) {
      await rollback(chainCfg);
      const freshPrefix = `fresh-${label}-${process.pid}`;
      log(`[${label}] incremental: a chain of ${o.chainDeltas} page deltas`);
      const built = await child<ChainBuilt>({ kind: 'chain', dbPath: live, conn, prefix: chainCfg.prefix, freshPrefix, idsFile: idsFile.random, deltas: o.chainDeltas });
      chain = { ...built, chainRestores: [], freshRestores: [] };
      try {
        // Nine interleaved pairs, more than the others: on a shared 2-core machine restores of the same
        // 607 MiB varied 1.9-3.3 s within one run, and medians of 5 moved the ratio by 0.1-0.2 between runs
        // (1.08x-1.26x) while its parts did not change: the chain's own cost (fetching its deltas beside
        // the chunks, ~70 ms of positioned writes for 3000 pages) is about 5-8% of the restore.
        const chainReps = Math.max(9, o.restoreReps + 2);
        for (let rep = 0; rep < chainReps; rep++) {
          for (const [which, prefix] of rep % 2 === 0 ? ([['chain', chainCfg.prefix], ['fresh', freshPrefix]] as const) : ([['fresh', freshPrefix], ['chain', chainCfg.prefix]] as const)) {
            const dir = join(work, `incr-chain-${rep}`);
            await rm(dir, { recursive: true, force: true });
            await mkdir(dir, { recursive: true });
            const restore = await child<RestoreRun>({ kind: 'restore', dbPath: join(dir, 'app.db'), conn, prefix, probeId });
            await rm(dir, { recursive: true, force: true });
            (which === 'chain' ? chain.chainRestores : chain.freshRestores).push(restore);
            log(`[${label}] incremental: restore rep ${rep + 1}/${chainReps} ${which === 'chain' ? `chunk set + ${built.deltas} deltas` : 'fresh chunk set'}: ${fmtMs(restore.hydrateMs)} ms`);
          }
        }
      } finally {
        await deletePrefixFast(container, freshPrefix).catch(() => undefined);
        await rollback(chainCfg);
      }
    }

    // 5. Where the time goes, per chunk size (also sizes not measured end to end above).
    const basePath = cfgs[0]!.base!.db;
    for (const chunkSize of o.profileChunkSizes) {
      for (const w of WORKLOADS) {
        await copyDb(basePath, live);
        const p = await child<ProfileRun>({ kind: 'profile', dbPath: live, basePath, chunkSize, idsFile: idsFile[w], workload: w, conn, prefix: `prof-${label}-${process.pid}`, maxUploads: Math.max(8, Math.floor((32 << 20) / chunkSize)) });
        profiles.push(p);
        log(`[${label}] incremental: profile ${chunkLabel(chunkSize)} ${w}: ${p.freshChunks}/${p.chunks} new chunks, ${fmtBytes(p.freshBytes)}; read file ${fmtMs(p.fileReadMs)} + dbpage ${fmtMs(p.dbpageReadMs)} (${p.dbpageChunks} chunks) + sha256 ${fmtMs(p.hashMs)} + encode ${fmtMs(p.encodeMs)} + upload ${fmtMs(p.uploadMs)} ms`);
      }
    }
  } finally {
    for (const cfg of cfgs) await deletePrefixFast(container, cfg.prefix).catch(() => undefined); // Azurite keeps blobs in memory
    for (const cfg of cfgs) if (cfg.base) await rm(cfg.base.db, { force: true });
    await rm(live, { force: true });
  }

  let litestream: IncrementalResult['litestream'];
  if (o.litestream) {
    log(`[${label}] incremental: litestream`);
    litestream = await ensureLitestream()
      .then(({ bin, version }) => runLitestreamIncr(bin, version, az, dataset, work, label, ids, probeId))
      .catch((e: unknown) => ({ error: (e as Error).message }));
  }
  return { rows: dataset.rows, dbBytes: dataset.bytes, updatedRows, reps: o.reps, restoreReps: o.restoreReps, configs: [...results.values()], ...(litestream ? { litestream } : {}), ...(chain ? { chain } : {}), profiles, elapsedMs: performance.now() - started };
}

// ---------------------------------------------------------------------------------------------------
// Litestream

/** `/usr/bin/time -f` around a command: wall, CPU and max RSS of the command itself. */
function timeCommand(bin: string, args: string[]): Promise<{ code: number; cpuMs: number; maxRss: number; output: string }> {
  return new Promise((resolvePromise) => {
    const proc = spawn('/usr/bin/time', ['-f', 'TIMEV %U %S %M', bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
    proc.stderr.setEncoding('utf8').on('data', (s: string) => (output += s));
    proc.once('error', () => resolvePromise({ code: -1, cpuMs: NaN, maxRss: NaN, output }));
    proc.once('exit', (code) => {
      const m = /TIMEV ([\d.]+) ([\d.]+) (\d+)/.exec(output);
      resolvePromise({ code: code ?? -1, cpuMs: m ? (Number(m[1]) + Number(m[2])) * 1000 : NaN, maxRss: m ? Number(m[3]) * 1024 : NaN, output });
    });
  });
}

async function runLitestreamIncr(bin: string, version: string, az: { connectionString: string; blobEndpoint: string; accountName: string; accountKey: string }, dataset: Dataset, work: string, label: string, ids: Record<Workload, string[]>, probeId: string): Promise<LitestreamIncr> {
  const dbPath = join(work, 'ls-incr.db');
  await copyDb(dataset.path, dbPath);
  await rm(`${dbPath}-litestream`, { recursive: true, force: true });
  const replicaPath = `lsi-${label}-${process.pid}`;
  const config = join(work, 'litestream-incr.yml');
  await writeFile(config, ['dbs:', `  - path: ${dbPath}`, '    replicas:', '      - type: abs', `        account-name: ${az.accountName}`, `        account-key: ${az.accountKey}`, `        bucket: ${LS_CONTAINER}`, `        path: ${replicaPath}`, `        endpoint: ${az.blobEndpoint}`, '        sync-interval: 1s', ''].join('\n'));
  const container = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient(LS_CONTAINER);
  await container.createIfNotExists();
  const list = () => listBlobs(container, replicaPath);
  const total = (m: Map<string, { size: number }>) => [...m.values()].reduce((a, b) => a + b.size, 0);
  /** Waits until the listing has not changed for `quietMs` (and, with `after`, differs from it); returns it and when it last changed. */
  const settle = async (quietMs: number, after?: Map<string, { etag: string }>) => {
    const t0 = performance.now();
    let last = await list();
    let changedAt = performance.now();
    const same = (a: Map<string, { etag: string }>, b: Map<string, { etag: string }>) => a.size === b.size && [...a].every(([k, v]) => b.get(k)?.etag === v.etag);
    for (;;) {
      if (replicate.child.exitCode !== null) throw new Error(`litestream replicate exited ${replicate.child.exitCode}:\n${replicate.output()}`);
      if (performance.now() - t0 > 600_000) throw new Error(`litestream did not settle in 600 s:\n${replicate.output()}`);
      await sleep(100);
      const now = await list();
      if (!same(now, last)) {
        last = now;
        changedAt = performance.now();
      } else if (performance.now() - changedAt >= quietMs && (!after || !same(now, after)) && [...now.keys()].some((k) => /\/snapshots\//.test(k))) return { blobs: now, changedAt };
    }
  };

  const replicate = spawnTimed(bin, ['replicate', '-config', config], join(work, 'replicate-incr.times'));
  const updates: LitestreamIncr['updates'] = [];
  let baseBytes = NaN;
  try {
    let { blobs } = await settle(2_500);
    baseBytes = total(blobs);
    const sqlite = new Database(dbPath);
    try {
      sqlite.pragma('busy_timeout = 5000');
      sqlite.pragma('journal_mode = WAL');
      for (const w of WORKLOADS) {
        const u0 = performance.now();
        const stmt = (n: number) => sqlite.prepare(`UPDATE documents SET updated_at = ?, content = json_set(content, '$.rev', ?) WHERE id IN (${Array(n).fill('?').join(',')})`);
        const rows = [ids[w].slice(0, 1), ...Array.from({ length: Math.ceil((ids[w].length - 1) / BATCH) }, (_, i) => ids[w].slice(1 + i * BATCH, 1 + (i + 1) * BATCH))];
        for (const batch of rows) if (batch.length) stmt(batch.length).run(UPDATED_AT, REV, ...batch);
        const committedAt = performance.now();
        const next = await settle(2_500, blobs);
        const diff = uploadDiff(blobs, next.blobs);
        updates.push({ workload: w, bytes: diff.total, segments: [...next.blobs.keys()].filter((k) => !blobs.has(k)).length, commitToUploadedMs: next.changedAt - committedAt, updateMs: committedAt - u0 });
        blobs = next.blobs;
      }
    } finally {
      sqlite.close();
    }
  } finally {
    replicate.child.kill('SIGTERM');
    await replicate.result();
  }

  const outPath = join(work, 'ls-incr-restored.db');
  for (const suffix of ['', '-wal', '-shm']) await rm(`${outPath}${suffix}`, { force: true });
  const r0 = performance.now();
  const res = await timeCommand(bin, ['restore', '-config', config, '-o', outPath, dbPath]);
  const restoreMs = performance.now() - r0;
  if (res.code !== 0) throw new Error(`litestream restore exited ${res.code}:\n${res.output}`);
  const sqlite = new Database(outPath, { readonly: true });
  try {
    const row = sqlite.prepare("SELECT json_extract(content, '$.rev') AS rev FROM documents WHERE id = ?").get(probeId) as { rev: number } | undefined;
    if (row?.rev !== REV) throw new Error('the Litestream restore lacks the update');
  } finally {
    sqlite.close();
  }
  const restoredBytes = statSync(outPath).size;
  await rm(`${dbPath}-litestream`, { recursive: true, force: true });
  for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`, outPath]) await rm(f, { force: true });
  await deletePrefixFast(container, replicaPath);
  return { version, baseBytes, updates, restoreMs, restoreCpuMs: res.cpuMs, restoreMaxRss: res.maxRss, restoredBytes };
}

// ---------------------------------------------------------------------------------------------------
// Report

const runsOf = (c: ConfigResult, w: Workload) => c.runs.filter((r) => r.workload === w);
const med = <T>(xs: readonly T[], f: (x: T) => number): number => median(xs.map(f));
const range = <T>(xs: readonly T[], f: (x: T) => number): string => (xs.length > 1 ? ` (${fmtMs(Math.min(...xs.map(f)))}–${fmtMs(Math.max(...xs.map(f)))})` : '');
const above = (m: Memory) => m.peakRss - m.idleRss;
const maxAbove = (xs: readonly Memory[]) => Math.max(...xs.map(above));
const pct = (r: number) => (Number.isFinite(r) ? `${(r * 100).toFixed(r < 0.1 ? 2 : 1)}%` : '–');

/**
 * The fastest any restore of these chunks could be on this machine: the raw download's CPU (client and
 * Azurite, which share the cores here) plus the unavoidable decode + verify + write, spread perfectly over
 * every core and never shorter than the raw download itself; then quick_check, which needs the whole file
 * and runs in one thread. Ignores everything else a restore does (probe, lease, index, worker start).
 */
export function restoreFloor(raw: RawRun, floor: FloorRun, cores = availableParallelism()): { withoutQuickCheck: number; withQuickCheck: number } {
  const storeCpu = Number.isFinite(raw.storeCpuMs) ? raw.storeCpuMs! : 0;
  const withoutQuickCheck = Math.max(raw.wallMs, (raw.cpuMs + storeCpu + floor.decodeMs + floor.writeMs) / cores);
  return { withoutQuickCheck, withQuickCheck: withoutQuickCheck + floor.quickCheckMs };
}

function floorsOf(c: ConfigResult): Array<{ raw: RawRun; floor: FloorRun; bound: { withoutQuickCheck: number; withQuickCheck: number } }> {
  return (c.floors ?? []).map((floor, i) => ({ raw: c.raws[i]!, floor, bound: restoreFloor(c.raws[i]!, floor) })).filter((x) => x.raw);
}

function judged(r: IncrementalResult): ConfigResult | undefined {
  return r.configs.find((c) => c.chunkSize === DEFAULT_CHUNK_SIZE) ?? r.configs.find((c) => c.mode === 'incremental');
}

export function incrementalChecks(size: string, r: IncrementalResult): Check[] {
  const full = r.configs.find((c) => c.mode === 'full');
  const incr = judged(r);
  const out: Check[] = [];
  if (full && incr) {
    const tag = `${incr.name}, ${r.updatedRows} recent rows updated`;
    const fb = med(runsOf(full, 'recent'), (x) => x.upload.total);
    const ib = med(runsOf(incr, 'recent'), (x) => x.upload.total);
    out.push({ name: `bytes uploaded: incremental / full snapshot (${tag})`, size, value: `${fmtBytes(ib)} / ${fmtBytes(fb)} = ${pct(ratio(ib, fb))}`, target: `≤ ${INCR_BYTES_TARGET * 100}%`, pass: ratio(ib, fb) <= INCR_BYTES_TARGET, gating: false });
    const fw = med(runsOf(full, 'recent'), (x) => x.wallMs);
    const iw = med(runsOf(incr, 'recent'), (x) => x.wallMs);
    out.push({ name: `snapshot wall: incremental / full flush() (${tag}, p50 of ${runsOf(incr, 'recent').length})`, size, value: `${fmtMs(iw)} / ${fmtMs(fw)} ms = ${pct(ratio(iw, fw))}`, target: `≤ ${INCR_WALL_TARGET * 100}%`, pass: ratio(iw, fw) <= INCR_WALL_TARGET, gating: false });
  }
  if (incr && incr.restores.length && incr.raws.length) {
    const rest = med(incr.restores, (x) => x.hydrateMs);
    const raw = med(incr.raws, (x) => x.wallMs);
    out.push({ name: `restore incl. quick_check / raw SDK download of its ${incr.raws[0]!.blobs} chunk blobs (concurrency ${RAW_CONCURRENCY}, ${incr.name})`, size, value: `${fmtMs(rest)} / ${fmtMs(raw)} ms = ${fmtRatio(ratio(rest, raw))}`, target: `≤ ${RESTORE_RAW_TARGET}×`, pass: ratio(rest, raw) <= RESTORE_RAW_TARGET, gating: false });
    if (incr.linked?.restores.length) {
      const lr = med(incr.linked.restores, (x) => x.hydrateMs);
      const lraw = med(incr.linked.raws, (x) => x.wallMs);
      const lnoQc = med(incr.linked.restores, (x) => x.hydrateMs - x.verifyMs);
      out.push({ name: `restore incl. quick_check / raw download of the same chunk blobs, both over a ${(incr.linked.bytesPerSec * 8) / 1e9} Gbit/s link (informational; ${incr.name})`, size, value: `${fmtMs(lr)} / ${fmtMs(lraw)} ms = ${fmtRatio(ratio(lr, lraw))} (${fmtRatio(ratio(lnoQc, lraw))} without quick_check)`, target: `≤ ${RESTORE_RAW_TARGET}×`, pass: ratio(lr, lraw) <= RESTORE_RAW_TARGET, gating: false });
    }
    const floors = floorsOf(incr);
    if (floors.length) {
      const bound = median(floors.map((f) => f.bound.withQuickCheck / f.raw.wallMs));
      const boundNoQc = median(floors.map((f) => f.bound.withoutQuickCheck / f.raw.wallMs));
      out.push({ name: `lower bound for any restore / raw on this machine (${availableParallelism()} cores shared with Azurite; raw CPU + decode/verify/write spread over all cores, then quick_check; ${incr.name})`, size, value: `${fmtRatio(bound)} (${fmtRatio(boundNoQc)} without quick_check)`, target: `≤ ${RESTORE_RAW_TARGET}× (is the target reachable here?)`, pass: bound <= RESTORE_RAW_TARGET, gating: false });
    }
  }
  const oneRow = incr?.runs.flatMap((x) => (x.oneRow ? [x.oneRow] : [])) ?? [];
  if (incr && oneRow.length) {
    const uploaded = med(oneRow, (x) => x.upload.total);
    const read = med(oneRow, (x) => x.readBytes);
    const rc = med(oneRow, (x) => x.rchar);
    out.push({ name: `one single-row commit: bytes uploaded by its snapshot (${incr.name}, p50 of ${oneRow.length})`, size, value: fmtBytes(uploaded), target: `≤ ${fmtBytes(ONE_ROW_UPLOAD_TARGET)}`, pass: uploaded <= ONE_ROW_UPLOAD_TARGET, gating: false });
    out.push({ name: `one single-row commit: database bytes its snapshot read (${incr.name}, p50 of ${oneRow.length}; process rchar ${fmtBytes(rc)})`, size, value: fmtBytes(read), target: `≤ ${fmtBytes(ONE_ROW_READ_TARGET)}`, pass: read <= ONE_ROW_READ_TARGET, gating: false });
  }
  if (r.chain && r.chain.chainRestores.length && r.chain.freshRestores.length) {
    const ch = med(r.chain.chainRestores, (x) => x.hydrateMs);
    const fr = med(r.chain.freshRestores, (x) => x.hydrateMs);
    out.push({ name: `restore of a chunk set + ${r.chain.deltas} page deltas (${fmtBytes(r.chain.deltaBytes)}) / the same data as a fresh chunk set (p50 of ${r.chain.chainRestores.length})`, size, value: `${fmtMs(ch)} / ${fmtMs(fr)} ms = ${fmtRatio(ratio(ch, fr))}`, target: `≤ ${CHAIN_RESTORE_TARGET}×`, pass: ratio(ch, fr) <= CHAIN_RESTORE_TARGET, gating: false });
  }
  const ls = r.litestream && !('error' in r.litestream) ? r.litestream : undefined;
  if (incr && ls) {
    for (const w of WORKLOADS) {
      const u = ls.updates.find((x) => x.workload === w);
      const runs = runsOf(incr, w);
      if (!u || runs.length === 0) continue;
      const ours = med(runs, (x) => x.upload.total);
      out.push({ name: `bytes uploaded for 1% ${w === 'recent' ? 'most recent' : 'random'} rows updated: ours (${incr.name}) / Litestream ${ls.version}`, size, value: `${fmtBytes(ours)} / ${fmtBytes(u.bytes)} = ${fmtRatio(ratio(ours, u.bytes))}`, target: '≤ 1.0×', pass: ratio(ours, u.bytes) <= 1, gating: false });
    }
  }
  for (const c of [full, incr]) {
    if (!c) continue;
    const snaps = [c.base, ...c.runs];
    out.push({ name: `peak RSS above idle during snapshot (${c.name}, worst of ${snaps.length} incl. the whole-database one)`, size, value: fmtBytes(maxAbove(snaps)), target: `< ${fmtBytes(MEMORY_TARGET_BYTES)}`, pass: maxAbove(snaps) < MEMORY_TARGET_BYTES, gating: false });
    if (c.restores.length) out.push({ name: `peak RSS above idle during restore (${c.name}, worst of ${c.restores.length})`, size, value: fmtBytes(maxAbove(c.restores)), target: `< ${fmtBytes(MEMORY_TARGET_BYTES)}`, pass: maxAbove(c.restores) < MEMORY_TARGET_BYTES, gating: false });
  }
  return out;
}

/** One row of the restore table: restores of a configuration next to the raw download of the same objects. */
function restoreRow(size: string, name: string, raws: RawRun[], restores: RestoreRun[]): string[] {
  const raw = med(raws, (x) => x.wallMs);
  const h = med(restores, (x) => x.hydrateMs);
  const noQc = med(restores, (x) => x.hydrateMs - x.verifyMs);
  return [
    size,
    name,
    `${restores.length}`,
    `${fmtMs(raw)}${range(raws, (x) => x.wallMs)} (${raws[0]!.blobs} blobs, ${fmtBytes(raws[0]!.bytes)})`,
    `${fmtMs(h)}${range(restores, (x) => x.hydrateMs)}`,
    fmtRatio(ratio(h, raw)),
    fmtMs(noQc),
    fmtRatio(ratio(noQc, raw)),
    `${fmtMs(med(restores, (x) => x.downloadMs))} / ${fmtMs(med(restores, (x) => x.verifyMs))}`,
    fmtMs(med(restores, (x) => x.firstQueryMs)),
    fmtMs(med(restores, (x) => x.cpuMs)),
    `${fmtBytes(maxAbove(restores))} (raw ${fmtBytes(maxAbove(raws))})`,
  ];
}

export function renderIncremental(sizes: readonly { label: string; incremental?: IncrementalResult | { error: string } }[]): string {
  const out: string[] = [];
  const snapRows: string[][] = [];
  const baseRows: string[][] = [];
  const restRows: string[][] = [];
  const floorRows: string[][] = [];
  const notes: string[] = [];
  for (const s of sizes) {
    const r = s.incremental;
    if (!r) continue;
    if ('error' in r) {
      notes.push(`${s.label}: not measured: ${r.error}`);
      continue;
    }
    const full = r.configs.find((c) => c.mode === 'full');
    const ls = r.litestream && 'version' in r.litestream ? r.litestream : undefined;
    for (const w of WORKLOADS) {
      const fb = full ? med(runsOf(full, w), (x) => x.upload.total) : NaN;
      const fw = full ? med(runsOf(full, w), (x) => x.wallMs) : NaN;
      for (const c of r.configs) {
        const runs = runsOf(c, w);
        if (!runs.length) continue;
        const b = med(runs, (x) => x.upload.total);
        const wall = med(runs, (x) => x.wallMs);
        snapRows.push([
          s.label,
          w === 'recent' ? '(a) recent 1%' : '(b) random 1%',
          c.name,
          String(runs.length),
          c.mode === 'full' ? `${fmtBytes(b)} (file ${fmtBytes(med(runs, (x) => x.upload.snapshotObjectBytes))})` : `${fmtBytes(b)} (${med(runs, (x) => x.upload.chunks)} chunks ${fmtBytes(med(runs, (x) => x.upload.chunkBytes))} + index ${fmtBytes(med(runs, (x) => x.upload.snapshotObjectBytes))})`,
          pct(ratio(b, fb)),
          `${fmtMs(wall)}${range(runs, (x) => x.wallMs)}`,
          pct(ratio(wall, fw)),
          fmtMs(med(runs, (x) => x.durationMs)),
          fmtMs(med(runs, (x) => x.cpuMs)),
          fmtBytes(maxAbove(runs)),
          c.mode === 'incremental' ? fmtMs(med(runs, (x) => x.firstSnapshotMs)) : '',
          fmtMs(med(runs, (x) => x.updateMs)),
        ]);
      }
      const u = ls?.updates.find((x) => x.workload === w);
      if (u) snapRows.push([s.label, w === 'recent' ? '(a) recent 1%' : '(b) random 1%', `litestream ${ls!.version}${w === 'random' ? ' (after (a))' : ''}`, '1', `${fmtBytes(u.bytes)} (${u.segments} WAL segments)`, pct(ratio(u.bytes, fb)), `${fmtMs(u.commitToUploadedMs)} (last commit → segments listed; sync-interval 1 s)`, '', '', '', '', '', fmtMs(u.updateMs)]);
    }
    for (const c of r.configs) baseRows.push([s.label, c.name, fmtBytes(c.base.upload.total), String(c.baseObjects), fmtMs(c.base.wallMs), fmtMs(c.base.cpuMs), fmtBytes(above(c.base)), c.listChunksMs !== undefined ? fmtMs(c.listChunksMs) : '']);
    if (ls) baseRows.push([s.label, `litestream ${ls.version}`, `${fmtBytes(ls.baseBytes)} (snapshot + WAL)`, '', '', '', '', '']);
    for (const c of r.configs) if (c.restores.length) restRows.push(restoreRow(s.label, c.name, c.raws, c.restores));
    for (const c of r.configs) {
      const floors = floorsOf(c);
      if (!floors.length) continue;
      const m = (f: (x: (typeof floors)[number]) => number) => median(floors.map(f));
      floorRows.push([
        s.label,
        c.name,
        String(floors.length),
        `${fmtMs(m((x) => x.raw.wallMs))} (CPU ${fmtMs(m((x) => x.raw.cpuMs))} + Azurite ${fmtMs(m((x) => x.raw.storeCpuMs ?? NaN))})`,
        `${fmtMs(m((x) => x.floor.decodeMs))} (${fmtBytes(floors[0]!.floor.plainBytes)}: ${(m((x) => x.floor.decodeMs) / (floors[0]!.floor.plainBytes / 2 ** 20)).toFixed(2)} ms/MiB)`,
        fmtMs(m((x) => x.floor.writeMs)),
        fmtMs(m((x) => x.floor.quickCheckMs)),
        `${fmtMs(m((x) => x.bound.withoutQuickCheck))} = ${fmtRatio(m((x) => x.bound.withoutQuickCheck / x.raw.wallMs))}`,
        `${fmtMs(m((x) => x.bound.withQuickCheck))} = ${fmtRatio(m((x) => x.bound.withQuickCheck / x.raw.wallMs))}`,
        fmtRatio(ratio(med(c.restores, (x) => x.hydrateMs), med(c.raws, (x) => x.wallMs))),
      ]);
    }
    for (const c of r.configs) {
      if (c.linked?.restores.length) restRows.push(restoreRow(s.label, `${c.name}, over a ${(c.linked.bytesPerSec * 8) / 1e9} Gbit/s link`, c.linked.raws, c.linked.restores));
    }
    if (ls) restRows.push([s.label, `litestream ${ls.version} (snapshot + WAL of both updates)`, '1', '', fmtMs(ls.restoreMs), '', '', '', '', '', fmtMs(ls.restoreCpuMs), `${fmtBytes(ls.restoreMaxRss)} (max RSS)`]);
    if (r.litestream && 'error' in r.litestream) notes.push(`${s.label}: Litestream not measured: ${r.litestream.error}`);
    const incs = r.configs.filter((c) => c.mode === 'incremental');
    if (incs.length > 1) {
      const best = (f: (c: ConfigResult) => number) => incs.reduce((a, b) => (f(b) < f(a) ? b : a)).name;
      notes.push(`${s.label}, best chunk size by: (a) bytes ${best((c) => med(runsOf(c, 'recent'), (x) => x.upload.total))}, (a) wall ${best((c) => med(runsOf(c, 'recent'), (x) => x.wallMs))}, (b) bytes ${best((c) => med(runsOf(c, 'random'), (x) => x.upload.total))}, (b) wall ${best((c) => med(runsOf(c, 'random'), (x) => x.wallMs))}, restore ${best((c) => (c.restores.length ? med(c.restores, (x) => x.hydrateMs) : Infinity))}, snapshot memory ${best((c) => maxAbove([c.base, ...c.runs]))}.`);
    }
    notes.push(`${s.label}: ${r.updatedRows} of ${r.rows} rows updated; ${r.reps} repetition(s) per snapshot configuration and workload, ${r.restoreReps} per restore; phase took ${(r.elapsedMs / 1000).toFixed(0)} s.`);
  }
  if (!snapRows.length && !notes.length) return '';
  out.push(
    '',
    '## 7. Full vs incremental snapshots vs Litestream (1% of rows updated)',
    '',
    `Each configuration takes a base snapshot of the dataset once; before every repetition the local file, its sidecar and the store are rolled back to it. A child process opens the copy with our drizzle() (snapshots on flush() only), updates 1% of the documents through it (\`UPDATE documents SET updated_at = ?, content = json_set(content, '$.rev', ?) WHERE id IN (...)\`, batches of ${BATCH}) and times \`db.$sync.flush()\`. Incremental runs first update one of those rows and flush once, so the measured snapshot is not the process's first (the first one also lists the store's chunks for orphans and reads the base index; its time is the "first snapshot" column); full mode applies the same one-row update without a flush, so both end with identical files. Uploaded = every object the measured flush wrote (new chunks + chunk index or the snapshot file, + manifest), from listings before and after. Peak RSS = VmHWM of the child (reset through /proc/self/clear_refs right before the operation) minus its RSS then; target < ${fmtBytes(MEMORY_TARGET_BYTES)}. (a) = the 1% most recently created documents (judged), (b) = 1% uniformly at random (informational). Litestream v0.3.13 replicates a copy of the same file to the same Azurite (sync-interval 1 s); the same statements are applied to it (b after a) and the WAL segments it uploads for each are counted.`,
    '',
    markdownTable(['size', 'workload', 'config', 'reps', 'uploaded by the snapshot (p50)', '× full bytes', 'flush() wall ms p50 (min–max)', '× full wall', 'SnapshotInfo.durationMs p50', 'CPU ms p50', 'peak RSS above idle (worst)', 'first snapshot in a process ms', 'update through drizzle() ms'], snapRows, ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']),
    '',
    '**Initial snapshot** (the whole database, first flush() of a fresh store):',
    '',
    markdownTable(['size', 'config', 'uploaded', 'objects', 'wall ms', 'CPU ms', 'peak RSS above idle', 'listing its chunks once ms'], baseRows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r']),
    '',
    `**Restore** of the base snapshot into an empty path (drizzle() in a child process: probe, lease, download + decode + verify + assemble, PRAGMA quick_check, open; then one query). The target (restore ≤ ${RESTORE_RAW_TARGET}× raw) is judged on the full restore including quick_check; "without quick_check" subtracts the worker's quick_check time (verifyMs of the 'restored database from snapshot' log line). Raw = the same distinct objects downloaded with the SDK into memory, ${RAW_CONCURRENCY} at a time, nothing decoded or written (a full snapshot: downloadToBuffer, concurrency ${RAW_CONCURRENCY}, 8 MiB blocks). "over a ${(LINK_BYTES_PER_SEC * 8) / 1e9} Gbit/s link" = the same raw download and restore, both through a relay in front of Azurite that shapes everything it returns to ${fmtBytes(LINK_BYTES_PER_SEC)}/s shared by all connections (bench/shaped-link.ts), so the network rather than this machine's CPU is the limit, as on Azure.`,
    '',
    markdownTable(['size', 'config', 'reps', 'raw download ms p50', 'restore ms p50 (judged)', '× raw', 'restore without quick_check ms', '× raw', 'log: downloadMs / verifyMs (quick_check)', 'time to first query ms', 'CPU ms', 'peak RSS above idle (worst)'], restRows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']),
    ...(floorRows.length
      ? [
          '',
          `**Restore floor on this machine**: how fast any restore of the same chunks could be here. The library's own decodeChunk (lz4 + sha256 against the chunk's address) and the writes at their offsets, timed alone in one thread over chunks already in memory, and PRAGMA quick_check of the result; the raw download's CPU (the client's, and Azurite's from /proc: the emulator shares the ${availableParallelism()} cores). Floor = max(raw wall, (raw CPU + Azurite CPU + decode + write) / cores), then + quick_check, which needs the whole file and runs in one thread. Everything else a restore does (probe, lease, manifest and index reads, starting the worker, fsync) is left out, so the floor is a lower bound. Over a real network the download is slower and the decode hides under it; quick_check does not.`,
          '',
          markdownTable(['size', 'config', 'reps', 'raw download ms p50 (CPU: client + Azurite)', 'decode + verify ms', 'write ms', 'quick_check ms', 'floor without quick_check (× raw)', 'floor with quick_check (× raw)', 'measured restore × raw'], floorRows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']),
        ]
      : []),
  );
  const profRows: string[][] = [];
  for (const s of sizes) {
    const r = s.incremental;
    if (!r || 'error' in r) continue;
    const full = r.configs.find((c) => c.mode === 'full');
    for (const p of r.profiles ?? []) {
      const fb = full ? med(runsOf(full, p.workload), (x) => x.upload.total) : NaN;
      const sum = p.fileReadMs + p.dbpageReadMs + p.hashMs + p.encodeMs + p.closeMs + p.uploadMs;
      profRows.push([
        s.label,
        p.workload === 'recent' ? '(a) recent 1%' : '(b) random 1%',
        chunkLabel(p.chunkSize),
        `${p.freshChunks} / ${p.chunks}`,
        fmtBytes(p.freshBytes),
        `≈${fmtBytes(p.indexBytes)}`,
        pct(ratio(p.freshBytes + p.indexBytes, fb)),
        `${p.walPages} / ${p.dbpageChunks}`,
        fmtMs(p.fileReadMs),
        fmtMs(p.dbpageReadMs),
        fmtMs(p.hashMs),
        fmtMs(p.encodeMs),
        fmtMs(p.closeMs),
        `${fmtMs(p.uploadMs)}${p.uploadedChunks < p.freshChunks ? ` (scaled from ${p.uploadedChunks})` : ''}`,
        fmtMs(sum),
      ]);
    }
  }
  if (profRows.length) {
    out.push(
      '',
      `**Where the time of an incremental snapshot goes** (profile): the same update applied by an @libsql/client connection to a copy of the base, then the library's own page reader (openPageImage) and chunk codec (chunkAddress, encodeChunk), imported from the build under test, stepped through in one thread; the known chunks are the base file's at that chunk size, so chunk sizes not measured end to end above cost seconds here. "× full bytes" = (new chunks + index) / the full snapshot's upload measured above. The flush() additionally starts a worker thread (importing @libsql/client, ~150 ms), writes new chunks to a spool file and reads them back, and uploads the index and the manifest. The reader fetches each page that has a WAL frame with its own \`SELECT data FROM sqlite_dbpage WHERE pgno = ?\`: the vtab's xBestIndex uses only an equality on pgno (a \`pgno >= ? AND pgno <= ?\` range scanned the whole page list for every chunk that had a WAL page).`,
      '',
      markdownTable(['size', 'workload', 'chunk', 'new / all chunks', 'new chunk bytes (lz4)', 'index', '× full bytes', 'WAL pages / chunks read via sqlite_dbpage', 'read from file ms', 'read via sqlite_dbpage ms', 'sha256 ms', 'encode (lz4) ms', 'close (checkpoint) ms', 'upload ms (concurrency 4)', 'sum ms'], profRows, ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']),
    );
  }
  if (notes.length) out.push('', ...notes.map((n) => `- ${n}`));
  return out.join('\n');
}
