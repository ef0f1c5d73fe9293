/**
 * The file worker: snapshot copies (VACUUM INTO, page images, chunk encoding), restores (decoding,
 * assembling chunks) and their verification (sha256, quick_check). Runs in a worker thread: every step here is synchronous or CPU-heavy in libSQL and must never run
 * on the app's event loop (VACUUM INTO on the main thread froze writes for 2.7 s on a 450 MB file).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { writeSync } from 'node:fs';
import { copyFile, open, unlink, writeFile } from 'node:fs/promises';
import { chunkAddress, decodeChunk, encodeChunk, rootHash } from './chunks/chunk-codec.ts';
import { canonicalizeHeaderBytes, openPageImage } from './chunks/page-image.ts';
import { pathToFileURL } from 'node:url';
import { compressFile, decodeToFile, type CodecResult } from './codec.ts';
import { SyncError } from '../errors.ts';
import type { CheckpointReply, WorkerAck, WorkerInput, WorkerNeed, WorkerRequest, WorkerReply } from './worker-protocol.ts';

// Only the local-file driver, and loading starts at once without blocking: a restore decodes while it loads.
const libsql = import('@libsql/client/sqlite3');
libsql.catch(() => undefined); // a failed load is reported where it is awaited

async function copyConsistently(dbPath: string, rawPath: string): Promise<void> {
  const client = (await libsql).createClient({ url: pathToFileURL(dbPath).href });
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

/** VACUUM INTO's copy with the canonical header (see canonicalizeHeaderBytes): an unchanged database hashes the same. */
async function canonicalizeHeader(path: string): Promise<void> {
  const file = await open(path, 'r+');
  try {
    const header = Buffer.alloc(100);
    await file.read(header, 0, 100, 0);
    canonicalizeHeaderBytes(header);
    await file.write(header, 0, 100, 0);
  } finally {
    await file.close();
  }
}

async function quickCheck(path: string): Promise<void> {
  let client;
  try {
    client = (await libsql).createClient({ url: pathToFileURL(path).href });
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
  }
}

async function handle(request: WorkerRequest): Promise<WorkerReply | CheckpointReply> {
  if (request.op === 'snapshot') {
    const started = performance.now();
    await copyConsistently(request.dbPath, request.rawPath);
    await canonicalizeHeader(request.rawPath);
    const copiedAt = performance.now();
    try {
      const result = await compressFile(request.rawPath, request.outPath, request.codec);
      return { ok: true, ...result, firstStepMs: copiedAt - started, secondStepMs: performance.now() - copiedAt };
    } finally {
      await unlink(request.rawPath).catch(() => undefined);
    }
  }
  if (request.op === 'checkpoint') return checkpointWal(request.dbPath, new Int32Array(request.shared), request.holdWrites);
  if (request.op === 'chunks') return snapshotChunks(request);
  if (request.op === 'assemble') return assembleChunks(request);
  // 'restore': decode what the main thread downloads, as it arrives.
  const started = performance.now();
  const decoded = await decodeToFile(inputBuffers(), request.path, request.codec, request.label);
  verifyAgainstManifest(request.label, decoded, request.expected);
  const decodedAt = performance.now();
  await quickCheck(request.path);
  return { ok: true, ...decoded, firstStepMs: decodedAt - started, secondStepMs: performance.now() - decodedAt };
}

/** The checkpointer's op (src/sync/checkpointer.ts): folds the WAL into the file here, never on the app's thread. */
async function checkpointWal(dbPath: string, shared: Int32Array, holdWrites: boolean): Promise<CheckpointReply> {
  let client;
  try {
    client = (await libsql).createClient({ url: pathToFileURL(dbPath).href });
    const started = performance.now();
    const passive = async (): Promise<[number, number, number]> => {
      const row = (await client!.execute('PRAGMA wal_checkpoint(PASSIVE)')).rows[0]!;
      return [Number(row[0]), Number(row[1]), Number(row[2])];
    };
    let [busy, walFrames, checkpointedFrames] = await passive();
    // Caught up with what we saw, short of the frames the write in progress reads past (a reader that
    // holds many back, e.g. a snapshot, is not helped by held writes): ask for the app's writes to be
    // held, then fold what they appended meanwhile.
    if (holdWrites && busy === 0 && walFrames - checkpointedFrames <= 1024) {
      Atomics.store(shared, 0, 3);
      Atomics.wait(shared, 0, 3, 1_000); // this thread may block
      if (Atomics.compareExchange(shared, 0, 3, 5) === 4) [busy, walFrames, checkpointedFrames] = await passive();
    }
    shared.set([busy, walFrames, checkpointedFrames], 1);
    Atomics.store(shared, 0, 1); // the state last: whoever sees 1 sees the numbers
    Atomics.notify(shared, 0);
    return { ok: true, busy: busy !== 0, walFrames, checkpointedFrames, durationMs: performance.now() - started };
  } catch (error) {
    Atomics.store(shared, 0, 2);
    Atomics.notify(shared, 0);
    throw error;
  } finally {
    client?.close();
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

type ChunksRequest = Extract<WorkerRequest, { op: 'chunks' }>;
type AssembleRequest = Extract<WorkerRequest, { op: 'assemble' }>;

/** The page image in chunks: address each, and encode the ones the store does not have into the spool file. */
async function snapshotChunks(request: ChunksRequest): Promise<WorkerReply> {
  const started = performance.now();
  const image = await openPageImage(libsql, request.dbPath, request.chunkSize);
  const known = new Set(request.known);
  const spool = await open(request.spoolPath, 'w');
  const chunks: string[] = [];
  const fresh: Array<{ address: string; offset: number; length: number }> = [];
  let offset = 0;
  let encodeMs = 0;
  try {
    for await (const { data } of image.chunks()) {
      const address = chunkAddress(data, request.keys);
      chunks.push(address);
      if (known.has(address)) continue;
      known.add(address); // the same content twice in one image is stored once
      const t0 = performance.now();
      const stored = encodeChunk(data, request.keys);
      encodeMs += performance.now() - t0;
      await spool.write(stored, 0, stored.length, offset);
      fresh.push({ address, offset, length: stored.length });
      offset += stored.length;
    }
  } finally {
    await spool.close();
    await image.close();
  }
  return {
    ok: true,
    pageSize: image.pageSize,
    chunks,
    fresh,
    rawBytes: image.bytes,
    compressedBytes: offset,
    sha256: rootHash(image.bytes, request.chunkSize, chunks),
    firstStepMs: performance.now() - started - encodeMs,
    secondStepMs: encodeMs,
  };
}

/** Chunks arrive in any order with the indexes they fill; each is verified before it is written. */
async function assembleChunks(request: AssembleRequest): Promise<WorkerReply> {
  const started = performance.now();
  const { chunks, chunkSize, bytes, keys, label } = request;
  const corrupt = (why: string) => new SyncError('SNAPSHOT_CORRUPT', `Snapshot ${label}: ${why}.`);
  const filled = request.base ? await keepFromBase(request) : new Set<number>();
  if (request.base) parentPort!.postMessage({ need: chunks.map((_, i) => i).filter((i) => !filled.has(i)) } satisfies WorkerNeed);
  const file = await open(request.path, request.base ? 'r+' : 'w');
  let stored = 0;
  try {
    for await (const { data, indexes } of inputMessages()) {
      if (!indexes || indexes.length === 0) throw corrupt('a chunk arrived without its position');
      const address = chunks[indexes[0]!];
      if (address === undefined) throw corrupt(`chunk index ${indexes[0]} is out of range`);
      const plain = decodeChunk(data, address, keys, label);
      stored += data.length;
      for (const index of indexes) {
        if (chunks[index] !== address) throw corrupt(`chunk index ${index} does not hold ${address.slice(0, 16)}…`);
        const expected = Math.min(chunkSize, bytes - index * chunkSize);
        if (plain.length !== expected) throw corrupt(`chunk ${index} is ${plain.length} bytes, expected ${expected}`);
        writeSync(file.fd, plain, 0, plain.length, index * chunkSize); // this thread may block; skips a thread-pool hop per chunk
        filled.add(index);
      }
    }
    if (filled.size !== chunks.length) throw corrupt(`${chunks.length - filled.size} of ${chunks.length} chunks never arrived`);
    await file.sync();
  } finally {
    await file.close();
  }
  const assembledAt = performance.now();
  if (request.quickCheck) await quickCheck(request.path);
  return {
    ok: true,
    rawBytes: bytes,
    compressedBytes: stored,
    sha256: rootHash(bytes, chunkSize, chunks),
    firstStepMs: assembledAt - started,
    secondStepMs: performance.now() - assembledAt,
  };
}

/**
 * Copies the base file to the target and returns the chunk indexes whose bytes there already have the
 * snapshot's address (each one hashed: nothing is trusted unverified). The file is cut to size.
 */
async function keepFromBase(request: AssembleRequest): Promise<Set<number>> {
  const { chunks, chunkSize, bytes, keys } = request;
  const kept = new Set<number>();
  try {
    await copyFile(request.base!, request.path);
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

async function* inputBuffers(): AsyncGenerator<Buffer> {
  for await (const { data } of inputMessages()) yield data;
}

/** Chunks posted by the main thread, acknowledged once consumed (the main thread bounds what is in flight). */
async function* inputMessages(): AsyncGenerator<{ data: Buffer; indexes: number[] | undefined }> {
  const queue: WorkerInput[] = [];
  let wake: (() => void) | undefined;
  parentPort!.on('message', (message: WorkerInput) => {
    queue.push(message);
    wake?.();
  });
  for (;;) {
    while (queue.length === 0) await new Promise<void>((r) => (wake = r));
    const message = queue.shift()!;
    if ('end' in message) return;
    yield { data: Buffer.from(message.chunk.buffer, message.chunk.byteOffset, message.chunk.byteLength), indexes: message.indexes };
    parentPort!.postMessage({ ack: true } satisfies WorkerAck);
  }
}

function toReply(error: unknown): WorkerReply {
  return error instanceof SyncError
    ? { ok: false, code: error.code, message: error.message }
    : { ok: false, code: 'SNAPSHOT_FAILED', message: error instanceof Error ? error.message : String(error) };
}

handle(workerData as WorkerRequest)
  .then((reply) => parentPort!.postMessage(reply), (error: unknown) => parentPort!.postMessage(toReply(error)))
  .finally(() => parentPort!.close()); // the input listener would otherwise keep the thread alive
