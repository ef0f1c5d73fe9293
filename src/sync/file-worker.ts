/**
 * The file worker: snapshot copies (VACUUM INTO, page images, chunk encoding), restores (decoding,
 * assembling chunks) and their verification (sha256, quick_check). Runs in a worker thread: every step here is synchronous or CPU-heavy in libSQL and must never run
 * on the app's event loop (VACUUM INTO on the main thread froze writes for 2.7 s on a 450 MB file).
 */
import { parentPort } from 'node:worker_threads';
import { dirname } from 'node:path';
import { copyFile, open, unlink, writeFile } from 'node:fs/promises';
import { chunkAddress, encodeChunk, rootHash, storedDigest } from './chunks/chunk-codec.ts';
import { chunkWriter } from './chunks/chunk-writer.ts';
import { canonicalizeFileHeader, canonicalizeHeaderBytes, openPageImage } from './chunks/page-image.ts';
import { deltaPayload, sealDelta } from './chunks/delta-codec.ts';
import { applyDeltasToFile } from './chunks/delta-apply.ts';
import { pathToFileURL } from 'node:url';
import { compressFile, decodeToFile, type CodecResult } from './codec.ts';
import { SyncError } from '../errors.ts';
import { collectGarbage, youngCollector } from './collect-garbage.ts';
import { lowerThreadPriority } from './thread-priority.ts';
import { BACKGROUND_OPS, type ChunksResult, type FromWorker, type ToWorker, type WorkerRequest, type WorkerReply } from './worker-protocol.ts';
import { scanVerdict, type ScanResult, type WalCursor } from './wal/changed-pages.ts';
import { foldedAfter, pinnedScan, readWalIndex, scanFrames } from './wal/wal-scan.ts';
import { ABANDONED, BUSY, DONE, FAILED, HELD, JournalWriter, READY, STATE, announce, claimRestart, readSecondPassCursor } from './wal/checkpoint-journal.ts';
import { restartWal, type WalRestart } from './wal/wal-restart.ts';
import { readSchemaPosition, type SchemaPosition } from './schema-position.ts';

// Only the local-file driver, loaded on first use: a worker that only decodes chunks never pays for it.
type Libsql = typeof import('@libsql/client/sqlite3');
let libsqlModule: Promise<Libsql> | undefined;
function loadLibsql(): Promise<Libsql> {
  libsqlModule ??= import('@libsql/client/sqlite3');
  return libsqlModule;
}


async function copyConsistently(dbPath: string, rawPath: string): Promise<void> {
  const client = (await loadLibsql()).createClient({ url: pathToFileURL(dbPath).href });
  try {
    // One statement, one read transaction: a point-in-time copy while writers continue in WAL mode.
    await client.execute({ sql: 'VACUUM INTO ?', args: [rawPath] });
    // Writers kept appending to the WAL while the copy held its read snapshot; fold it back here, off
    // the app's thread (otherwise the app's next commit runs that checkpoint and stalls for 100 ms+).
    await client.execute('PRAGMA wal_checkpoint(PASSIVE)');
  } finally {
    client.close();
  }
}

/** The migration position of a file nobody writes (a full snapshot's copy). */
async function schemaPositionOf(path: string, table: string): Promise<SchemaPosition> {
  const client = (await loadLibsql()).createClient({ url: pathToFileURL(path).href });
  try {
    return await readSchemaPosition((sql, args) => client.execute({ sql, args: args ?? [] }), table);
  } finally {
    client.close();
  }
}

async function quickCheck(path: string): Promise<void> {
  let client;
  try {
    client = (await loadLibsql()).createClient({ url: pathToFileURL(path).href });
    const result = await client.execute('PRAGMA quick_check');
    const verdicts = result.rows.map((row) => String(row[0]));
    if (verdicts.length !== 1 || verdicts[0] !== 'ok') {
      throw new SyncError('SNAPSHOT_CORRUPT', `Restored database failed PRAGMA quick_check: ${verdicts.slice(0, 5).join('; ')}.`);
    }
  } catch (error) {
    if (error instanceof SyncError) throw error;
    throw new SyncError('SNAPSHOT_CORRUPT', `Restored database cannot be opened by SQLite: ${(error as Error).message}.`, { cause: error });
  } finally {
    client?.close();
    // close() leaves the native connection (and its descriptor) open until the statement is collected
    // (src/local/settle-connections.ts): collected now, not whenever this worker is next idle. A restored
    // file is renamed over the live one right after this check (a replica's catch-up).
    collectGarbage('major');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Idle time after which a worker runs a full collection (see the reply's handler). */
const IDLE_FULL_GC_MS = 100;
let idleCollection: NodeJS.Timeout | undefined;

/** One request's streamed input and how to answer it. */
interface Job {
  readonly id: number;
  /** The main thread aborted it: a long op (a compaction's chunk reads) stops at its next step. */
  readonly aborted: boolean;
  /** Chunks posted by the main thread, each acknowledged once consumed (the main thread bounds what is in flight). */
  input(): AsyncGenerator<{ data: Buffer; indexes: number[] | undefined }>;
}

/** Every op, in one place: a new op is one more case here (and in worker-protocol.ts). */
async function handle(request: WorkerRequest, job: Job): Promise<WorkerReply> {
  // A snapshot's work runs beside the app and yields the CPU to the app's thread. The others keep the
  // process's priority: the app waits on a restore, a quick_check (writes wait for it), and a checkpoint
  // (it may hold writes for its short second pass: a low-priority thread there would invert priorities).
  if (BACKGROUND_OPS.has(request.op)) lowerThreadPriority();
  switch (request.op) {
    case 'snapshot':
      return snapshotCopy(request);
    case 'restore':
      return restoreStream(request, job);
    case 'chunks':
      return snapshotChunks(request, job);
    case 'delta':
      return readDelta(request);
    case 'keep-base':
      return { ok: true, kept: [...(await keepFromBase(request))] };
    case 'write-chunks':
      return writeChunks(request, job);
    case 'apply-deltas': {
      const started = performance.now();
      const pages = applyDeltasToFile(request.path, request.deltas, request.keys);
      return { ok: true, pages, durationMs: performance.now() - started };
    }
    case 'quick-check': {
      const started = performance.now();
      await quickCheck(request.path);
      return { ok: true, durationMs: performance.now() - started };
    }
    case 'fsync': {
      const started = performance.now();
      await fsyncPath(request.path, request.directory);
      return { ok: true, durationMs: performance.now() - started };
    }
    case 'checkpoint':
      return request.record
        ? checkpointWithRecord(request.dbPath, new Int32Array(request.shared), request.holdWrites, request.writerSetup, request.record.cursor, request.record.scans)
        : checkpointWal(request.dbPath, new Int32Array(request.shared), request.holdWrites, request.writerSetup);
  }
}

/** The checkpointer's op (src/sync/checkpointer.ts): folds the WAL into the file here, never on the app's thread. */
async function checkpointWal(dbPath: string, shared: Int32Array, holdWrites: boolean, writerSetup: string): Promise<WorkerReply> {
  let client;
  try {
    const libsql = await loadLibsql();
    client = libsql.createClient({ url: pathToFileURL(dbPath).href });
    const started = performance.now();
    const passive = async (): Promise<[number, number, number]> => {
      const row = (await client!.execute('PRAGMA wal_checkpoint(PASSIVE)')).rows[0]!;
      return [Number(row[0]), Number(row[1]), Number(row[2])];
    };
    let [busy, walFrames, checkpointedFrames] = await passive();
    // Caught up with what we saw, short of the frames the write in progress reads past (a reader that
    // holds many back, e.g. a snapshot, is not helped by held writes): ask for the app's writes to be
    // held, then fold what they appended meanwhile.
    let restart: WalRestart | undefined;
    if (holdWrites && busy === 0 && walFrames - checkpointedFrames <= 1024 && askForHeldWrites(shared)) {
      [busy, walFrames, checkpointedFrames] = await passive();
      if (busy === 0 && checkpointedFrames === walFrames && walFrames > 0 && claimRestart(shared)) restart = await restartWal(libsql, dbPath, writerSetup);
    }
    shared.set([busy, walFrames, checkpointedFrames], BUSY);
    announce(shared, DONE); // the state last: whoever sees DONE sees the numbers
    return { ok: true, busy: busy !== 0, walFrames, checkpointedFrames, durationMs: performance.now() - started, ...(restart ? { restart } : {}) };
  } catch (error) {
    announce(shared, FAILED);
    throw error;
  } finally {
    client?.close();
  }
}

/**
 * Says READY and waits (a second at most) for the app's writes to be held: true once they are (HELD),
 * false if the app's thread did not answer in time (ABANDONED: it will not hold them now). Woken at
 * once: a main thread waiting on the state (Checkpointer.idle(), e.g. a snapshot pausing the
 * checkpointer while no commit comes) answers at once, not after this wait ran out.
 */
function askForHeldWrites(shared: Int32Array): boolean {
  announce(shared, READY);
  Atomics.wait(shared, STATE, READY, 1_000); // this thread may block
  return Atomics.compareExchange(shared, STATE, READY, ABANDONED) === HELD;
}

/**
 * The checkpointer's op while a page record is kept: the same passes as checkpointWal, each one pinned
 * and preceded by a scan of the frames past the record's cursor (wal-scan.ts pinnedScan), so no fold
 * can let the WAL restart over a frame the record has not read. Each scan goes into the journal
 * (checkpoint-journal.ts) before its fold starts, and each fold's outcome after it: the record takes
 * the scan in at once, and page deltas read the WAL past it while the fold and its fsync run. The
 * second pass (writes held) scans from the record's cursor as the app's thread gives it (a delta may
 * have read past the first scan), pinned at the WAL's end, so it can fold everything and let the WAL
 * restart.
 */
async function checkpointWithRecord(dbPath: string, shared: Int32Array, holdWrites: boolean, writerSetup: string, cursor: WalCursor, journalBuffer: SharedArrayBuffer): Promise<WorkerReply> {
  const started = performance.now();
  const journal = new JournalWriter(shared, journalBuffer);
  try {
    const libsql = await loadLibsql();
    const first = await pinnedScan(libsql, dbPath, cursor, { checkpoint: true, onScanned: (scan) => journal.scan(scan) });
    journal.folded(first.scan.folded ?? false);
    let numbers = first.checkpoint ?? { busy: true, walFrames: first.scan.to, checkpointedFrames: 0 }; // no checkpoint ran (the WAL could not be read)
    let restart: WalRestart | undefined;
    if (holdWrites && first.checkpoint && !numbers.busy && numbers.walFrames - numbers.checkpointedFrames <= 1024 && askForHeldWrites(shared)) {
      const next: WalCursor = { ...readSecondPassCursor(shared), base: 0, folded: false };
      const second = await pinnedScan(libsql, dbPath, next, { checkpoint: true, onScanned: (scan) => journal.scan(scan) });
      journal.folded(second.scan.folded ?? false);
      if (second.checkpoint) numbers = second.checkpoint;
      // Every frame read and folded, the pin gone: the WAL may start over here (the record sees the new
      // generation's first frame, page 1, at its next scan, after this fold's outcome).
      if (second.scan.folded && claimRestart(shared)) restart = await restartWal(libsql, dbPath, writerSetup);
    }
    shared.set([numbers.busy ? 1 : 0, numbers.walFrames, numbers.checkpointedFrames], BUSY);
    announce(shared, DONE); // the state last: whoever sees DONE sees the numbers and every entry
    return { ok: true, busy: numbers.busy, walFrames: numbers.walFrames, checkpointedFrames: numbers.checkpointedFrames, durationMs: performance.now() - started, ...(restart ? { restart } : {}) };
  } catch (error) {
    announce(shared, FAILED);
    throw error;
  }
}

async function snapshotCopy(request: Extract<WorkerRequest, { op: 'snapshot' }>): Promise<WorkerReply> {
  const started = performance.now();
  await copyConsistently(request.dbPath, request.rawPath);
  await canonicalizeFileHeader(request.rawPath);
  const copiedAt = performance.now();
  try {
    const schema = await schemaPositionOf(request.rawPath, request.migrationsTable);
    const result = await compressFile(request.rawPath, request.outPath, request.codec);
    return { ok: true, ...result, schema, firstStepMs: copiedAt - started, secondStepMs: performance.now() - copiedAt };
  } finally {
    await unlink(request.rawPath).catch(() => undefined);
  }
}

/** A full snapshot: decode what the main thread downloads, as it arrives. */
async function restoreStream(request: Extract<WorkerRequest, { op: 'restore' }>, job: Job): Promise<WorkerReply> {
  const started = performance.now();
  const decoded = await decodeToFile(inputBuffers(job), request.path, request.codec, request.label, { fsync: request.fsync });
  verifyAgainstManifest(request.label, decoded, request.expected);
  const decodedAt = performance.now();
  if (request.quickCheck) await quickCheck(request.path);
  return { ok: true, ...decoded, firstStepMs: decodedAt - started, secondStepMs: performance.now() - decodedAt };
}

async function fsyncPath(path: string, directory: boolean): Promise<void> {
  const file = await open(path, 'r');
  try {
    await file.sync();
  } finally {
    await file.close();
  }
  if (!directory) return;
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

function verifyAgainstManifest(label: string, got: CodecResult, expected: { compressedBytes: number; bytes: number; sha256: string }): void {
  if (got.compressedBytes !== expected.compressedBytes) {
    throw new SyncError('SNAPSHOT_CORRUPT', `Snapshot ${label} is ${got.compressedBytes} bytes in the store, the manifest says ${expected.compressedBytes} (truncated or replaced).`);
  }
  if (got.rawBytes !== expected.bytes) {
    throw new SyncError('SNAPSHOT_CORRUPT', `Snapshot ${label} decompressed to ${got.rawBytes} bytes, the manifest says ${expected.bytes}.`);
  }
  if (got.sha256 !== expected.sha256) {
    throw new SyncError('SNAPSHOT_CORRUPT', `Snapshot ${label} has sha256 ${got.sha256}, the manifest says ${expected.sha256}.`);
  }
}

/**
 * New chunks are flushed to disk every 8 MiB of spool. Left to the kernel, a first snapshot's spool
 * (~300 MiB at 1M rows) sat dirty in the page cache, and the next journal commit of the file system
 * (any fsync: a checkpoint's) had to write it out first, while the app's commit that needed the
 * journal to grow the WAL waited: single commits of 150-170 ms during an upload to Azurite. Synced in
 * 8 MiB steps (on this low-priority thread) the longest gap was 40 ms (32 MiB steps: 50 ms).
 */
const SPOOL_SYNC_EVERY_BYTES = 8 * 1024 * 1024;

type ChunksRequest = Extract<WorkerRequest, { op: 'chunks' }>;

/** Waits (at most `maxMs`) while `busy` is not 0: a background job lets the uploads callers wait for have the CPU. */
function giveWay(busy: Int32Array, maxMs = 50): void {
  const until = performance.now() + maxMs;
  for (let v = Atomics.load(busy, 0); v !== 0; v = Atomics.load(busy, 0)) {
    const left = until - performance.now();
    if (left <= 0) return;
    Atomics.wait(busy, 0, v, left);
  }
}

/**
 * Chunk indexes that may differ from the baseline: those holding a page the record names or the scan
 * read, and, when the size changed, every chunk from the last one both sizes share.
 */
export function touchedChunks(pages: readonly number[], scan: ScanResult, image: { pageSize: number; bytes: number; chunkCount: number }, chunkSize: number, baselineBytes: number): Set<number> {
  const pagesPerChunk = Math.max(1, Math.floor(chunkSize / image.pageSize));
  const touched = new Set<number>();
  for (const p of pages) touched.add(Math.floor((p - 1) / pagesPerChunk));
  for (const [p] of scan.pages) touched.add(Math.floor((p - 1) / pagesPerChunk));
  if (image.bytes !== baselineBytes) {
    const shared = Math.min(image.bytes, baselineBytes);
    const chunkBytes = pagesPerChunk * image.pageSize;
    for (let i = shared === 0 ? 0 : Math.floor((shared - 1) / chunkBytes); i < image.chunkCount; i++) touched.add(i);
  }
  return touched;
}
/**
 * A scan taken under a snapshot's pin, told whether the WAL was folded to its end then (foldedAfter):
 * a WAL a checkpoint folded before the record began (or before this pin) may restart at the next
 * commit, and the record then expects the next generation instead of calling that restart foreign.
 */
function pinnedFold(dbPath: string, scan: ScanResult): ScanResult {
  if (scan.broken || scan.salt === '') return scan;
  return { ...scan, folded: foldedAfter(scan, readWalIndex(dbPath)) };
}

/**
 * A page delta: the WAL index's last frame is noted, the image pinned, the frames past the record's
 * cursor read under the pin; if they continue the record, the pages it names plus the scanned ones are
 * read as the pinned transaction sees them (pages past the page count are gone: the file is cut).
 */
async function readDelta(request: Extract<WorkerRequest, { op: 'delta' }>): Promise<WorkerReply> {
  const started = performance.now();
  const index = readWalIndex(request.dbPath);
  const start = index && index !== 'unstable' ? { salt: index.salt.toString('hex'), frame: index.mxFrame } : null;
  const image = await openPageImage(loadLibsql(), request.dbPath, 1 << 20);
  try {
    const scan = pinnedFold(request.dbPath, scanFrames(request.dbPath, request.record.cursor));
    // Judged as if the cursor's generation were folded to its end: whether it was may still be on its way
    // to the record (a checkpoint's fold ran beside this op). The app's thread judges the scan again with
    // the fold's outcome (recordScanAfterFolds), and drops this delta if the record broke.
    if (scanVerdict({ ...request.record.cursor, folded: true }, scan).kind !== 'apply') return { ok: true, scan, start };
    const wanted = new Set(request.record.pages);
    for (const [p] of scan.pages) wanted.add(p);
    const pgnos = Uint32Array.from([...wanted].filter((p) => p <= image.pageCount).sort((a, b) => a - b));
    const { plain, pages } = deltaPayload(image.pageSize, image.pageCount, pgnos);
    await image.pages(pgnos, pages);
    const { stored, sha256 } = sealDelta(plain, request.keys);
    const schema = await image.schemaPosition(request.migrationsTable);
    return { ok: true, scan, start, delta: { stored, sha256, pages: pgnos.length, pageSize: image.pageSize, pageCount: image.pageCount, durationMs: performance.now() - started, schema } };
  } finally {
    // Folding is the checkpointer's: its folds are pinned at what the record has read.
    await image.close({ fold: false });
  }
}

type WriteChunksRequest = Extract<WorkerRequest, { op: 'write-chunks' }>;
type KeepBaseRequest = Extract<WorkerRequest, { op: 'keep-base' }>;

/**
 * The page image in chunks: address each, and encode the ones the store does not have into the spool
 * file. With a page record (request.record): the WAL index's last frame is noted before the image is
 * pinned (what the record may forget once this upload is in: see Snapshotter), the frames past the
 * record's cursor are read under the image's pin, and with a baseline only the chunks holding a page
 * the record names are read; every other chunk is, page for page, the baseline's, and keeps its address.
 */
async function snapshotChunks(request: ChunksRequest, job: Job): Promise<WorkerReply> {
  const started = performance.now();
  const record = request.record;
  let start: { salt: string; frame: number } | null | undefined;
  if (record) {
    const index = readWalIndex(request.dbPath);
    start = index && index !== 'unstable' ? { salt: index.salt.toString('hex'), frame: index.mxFrame } : null;
  }
  const image = await openPageImage(loadLibsql(), request.dbPath, request.chunkSize);
  let scan: ScanResult | undefined;
  let schema: SchemaPosition;
  let touched: Set<number> | undefined;
  try {
    if (record) {
      const cursor: WalCursor = record.cursor ?? { salt: start?.salt ?? '', frame: start?.frame ?? 0, base: 0, folded: false };
      scan = pinnedFold(request.dbPath, scanFrames(request.dbPath, cursor));
      if (record.baseline && record.cursor && record.baseline.pageSize === image.pageSize && scanVerdict(record.cursor, scan).kind === 'apply') touched = touchedChunks(record.pages, scan, image, request.chunkSize, record.baseline.bytes);
      if (record.announce) parentPort!.postMessage({ id: job.id, pinned: { scan, start: start ?? null } } satisfies FromWorker);
    }
    schema = await image.schemaPosition(request.migrationsTable);
  } catch (error) {
    await image.close({ fold: !record }).catch(() => undefined);
    throw error;
  }
  const baseline = touched ? record!.baseline! : undefined;
  const yieldTo = request.yieldTo ? new Int32Array(request.yieldTo) : undefined;
  let readChunks = 0;
  const known = new Set(request.known);
  const spool = await open(request.spoolPath, 'w');
  const chunks: string[] = [];
  const fresh: ChunksResult['fresh'] = [];
  let offset = 0;
  let encodeMs = 0;
  const collect = youngCollector();
  let sinceSync = 0;
  try {
    for (let index = 0; index < image.chunkCount; index++) {
      const kept = baseline && !touched!.has(index) ? baseline.chunks[index] : undefined;
      // A kept chunk the store no longer has is read and uploaded again (content-addressed: same address).
      if (kept !== undefined && known.has(kept)) {
        chunks.push(kept);
        continue;
      }
      // A compaction dropped by an upload (which then waits for it) stops here, not after every chunk.
      if (job.aborted) throw ABORTED;
      if (yieldTo) giveWay(yieldTo);
      const data = await image.chunk(index);
      readChunks++;
      const address = chunkAddress(data, request.keys);
      chunks.push(address);
      if (known.has(address)) continue;
      known.add(address); // the same content twice in one image is stored once
      const t0 = performance.now();
      const stored = encodeChunk(data, request.keys);
      encodeMs += performance.now() - t0;
      await spool.write(stored, 0, stored.length, offset);
      fresh.push({ address, offset, length: stored.length, digest: storedDigest(stored) });
      offset += stored.length;
      if ((sinceSync += stored.length) >= SPOOL_SYNC_EVERY_BYTES) {
        sinceSync = 0;
        await spool.datasync();
      }
      collect(data.length + stored.length);
    }
  } finally {
    await spool.close();
    // With a record, folding is the checkpointer's: its folds are pinned at what the record has read.
    await image.close({ fold: !record });
  }
  return {
    ok: true,
    pageSize: image.pageSize,
    chunks,
    fresh,
    readChunks,
    schema,
    ...(record ? { scan, start } : {}),
    rawBytes: image.bytes,
    compressedBytes: offset,
    sha256: rootHash(image.bytes, request.chunkSize, chunks),
    firstStepMs: performance.now() - started - encodeMs,
    secondStepMs: encodeMs,
  };
}

/**
 * Chunks arrive in any order with the indexes they fill; each is verified against its address before
 * it is written. The file exists (created or copied from a base by the main thread / 'keep-base'); other
 * workers write other chunks into it at the same time, never the same ranges.
 */
async function writeChunks(request: WriteChunksRequest, job: Job): Promise<WorkerReply> {
  const file = await open(request.path, 'r+');
  const write = chunkWriter(file.fd, request);
  const filled: number[] = [];
  let storedBytes = 0;
  let busyMs = 0;
  const collect = youngCollector();
  try {
    for await (const { data, indexes } of job.input()) {
      const t0 = performance.now();
      const plainBytes = write(data, indexes);
      filled.push(...indexes!);
      storedBytes += data.length;
      collect(plainBytes + data.length);
      busyMs += performance.now() - t0;
    }
  } finally {
    await file.close();
  }
  return { ok: true, filled, storedBytes, busyMs };
}

/**
 * Copies the base file to the target and returns the chunk indexes whose bytes there already have the
 * snapshot's address (each one hashed: nothing is trusted unverified). The file is cut to size.
 */
async function keepFromBase(request: KeepBaseRequest): Promise<Set<number>> {
  const { chunks, chunkSize, bytes, keys } = request;
  const kept = new Set<number>();
  try {
    await copyFile(request.base, request.path);
  } catch {
    await writeFile(request.path, ''); // no usable base: everything is downloaded
    return kept;
  }
  const file = await open(request.path, 'r+');
  try {
    const buffer = Buffer.alloc(chunkSize);
    for (let i = 0; i < chunks.length; i++) {
      const length = Math.min(chunkSize, bytes - i * chunkSize);
      const { bytesRead } = await file.read(buffer, 0, length, i * chunkSize);
      const data = buffer.subarray(0, length);
      if (i === 0 && bytesRead >= 100) canonicalizeHeaderBytes(data);
      if (bytesRead === length && chunkAddress(data, keys) === chunks[i]) {
        kept.add(i);
        if (i === 0) await file.write(data, 0, length, 0); // keep the canonical header that matched
      }
    }
    await file.truncate(bytes);
  } finally {
    await file.close();
  }
  return kept;
}

async function* inputBuffers(job: Job): AsyncGenerator<Buffer> {
  for await (const { data } of job.input()) yield data;
}

const ABORTED = new SyncError('SNAPSHOT_FAILED', 'The job was aborted by the main thread.');

/** A running job: its input queue, fed by the message loop below. */
class RunningJob implements Job {
  readonly #queue: ToWorker[] = [];
  #wake: (() => void) | undefined;
  aborted = false;

  constructor(readonly id: number) {}

  push(message: ToWorker): void {
    if ('abort' in message) this.aborted = true;
    this.#queue.push(message);
    this.#wake?.();
  }

  async *input(): AsyncGenerator<{ data: Buffer; indexes: number[] | undefined }> {
    for (;;) {
      while (this.#queue.length === 0) await new Promise<void>((r) => (this.#wake = r));
      const message = this.#queue.shift()!;
      if ('end' in message) return;
      if ('abort' in message) throw ABORTED;
      if (!('chunk' in message)) continue;
      yield { data: Buffer.from(message.chunk.buffer, message.chunk.byteOffset, message.chunk.byteLength), indexes: message.indexes };
      parentPort!.postMessage({ id: this.id, ack: true } satisfies FromWorker);
    }
  }
}

function toReply(error: unknown): WorkerReply {
  return error instanceof SyncError
    ? { ok: false, code: error.code, message: error.message }
    : { ok: false, code: 'SNAPSHOT_FAILED', message: error instanceof Error ? error.message : String(error) };
}

/** Serves requests by id for the life of the thread; messages for a job that already finished are dropped. */
const running = new Map<number, RunningJob>();
parentPort!.on('message', (message: ToWorker) => {
  if ('warm' in message) {
    // Loaded now, between jobs; a failure surfaces at the first job that needs the driver, as before.
    loadLibsql().then(
      () => parentPort!.postMessage({ warmed: 'libsql' } satisfies FromWorker),
      () => undefined,
    );
    return;
  }
  if ('request' in message) {
    const job = new RunningJob(message.id);
    running.set(message.id, job);
    handle(message.request, job)
      .catch(toReply)
      .then((reply) => {
        running.delete(message.id);
        // A delta's stored bytes (up to tens of MiB) move to the main thread instead of being copied.
        const stored = reply.ok && 'delta' in reply ? reply.delta?.stored : undefined;
        const transfer = stored && stored.byteOffset === 0 && stored.byteLength === stored.buffer.byteLength && stored.buffer instanceof ArrayBuffer ? [stored.buffer] : [];
        try {
          parentPort!.postMessage({ id: message.id, reply } satisfies FromWorker, transfer);
        } catch {
          parentPort!.postMessage({ id: message.id, reply } satisfies FromWorker); // not transferable after all: copied
        }
        // The worker outlives its jobs: a young collection once idle (under a ms), and a full one (10-20
        // ms) once it has been idle IDLE_FULL_GC_MS, return what the jobs left (their closed connections'
        // descriptors included) without a full collection between the jobs of a busy stream of deltas.
        if (running.size === 0) setImmediate(() => running.size === 0 && collectGarbage('minor'));
        if (running.size === 0) {
          clearTimeout(idleCollection);
          idleCollection = setTimeout(() => running.size === 0 && collectGarbage('major'), IDLE_FULL_GC_MS);
        }
      });
    return;
  }
  running.get(message.id)?.push(message);
});

// Said once everything above is loaded: the pool counts this worker as ready from here (a start-up
// restore decodes on its own thread until then rather than wait for the boot).
parentPort!.postMessage({ ready: true } satisfies FromWorker);
