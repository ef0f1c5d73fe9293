import type { Codec, CodecResult } from './codec.ts';
import type { SyncErrorCode } from '../errors.ts';
import type { ChunkKeys } from './chunks/encryption.ts';
import type { StoredDelta } from './chunks/delta-apply.ts';
import type { ScanResult, WalCursor } from './wal/changed-pages.ts';
import type { SchemaPosition } from './schema-position.ts';
import type { WalRestart } from './wal/wal-restart.ts';

/**
 * A snapshot that keeps the page record (src/sync/wal): `cursor` is where the record is (null: start
 * one), `pages` what it holds, `baseline` the chunk addresses and size of the upload it holds them
 * against. With a baseline, only chunks holding a recorded page are read; the others keep their address.
 */
export interface ChunksRecord {
  cursor: WalCursor | null;
  pages: number[];
  baseline?: { chunks: string[]; bytes: number; pageSize: number };
  /**
   * Post the scan (`ChunksPinned`) as soon as the image is pinned and the WAL past the cursor read: a
   * background compaction hands the WAL back to the checkpointer and the deltas then, not seconds later.
   */
  announce?: boolean;
}

/** A 'chunks' op's image is pinned: what the WAL held past the record's cursor, and the WAL index's last frame before the pin. */
export interface ChunksPinned {
  scan: ScanResult;
  start: { salt: string; frame: number } | null;
}

export type WorkerRequest =
  /** VACUUM INTO, then compress and hash. */
  | { op: 'snapshot'; dbPath: string; rawPath: string; outPath: string; codec: Codec; migrationsTable: string }
  /**
   * Decode compressed chunks streamed in as `WorkerInput` messages into `path`, hashing as it goes,
   * then verify sizes and sha256 against the manifest, fsync (`fsync`) and run PRAGMA quick_check
   * (`quickCheck`). The main thread only downloads, so network and decoding overlap.
   */
  | { op: 'restore'; path: string; codec: Codec; label: string; expected: { compressedBytes: number; bytes: number; sha256: string }; quickCheck: boolean; fsync: boolean }
  /**
   * Read the live database's page image in one read transaction, split it into chunks, address each,
   * and encode (compress, seal) into `spoolPath` those whose address is not in `known`. `yieldTo` (a
   * compaction's): before each chunk, wait up to 50 ms while its Int32 is not 0 (an upload in the foreground).
   */
  | { op: 'chunks'; dbPath: string; chunkSize: number; known: string[]; keys: ChunkKeys | undefined; spoolPath: string; record?: ChunksRecord; yieldTo?: SharedArrayBuffer; migrationsTable: string }
  /**
   * A page delta (src/sync/chunks/delta-codec.ts): under one read transaction, read the WAL past the
   * record's cursor, then the pages the record names plus those the scan found, as that transaction
   * sees them, and encode them. No delta when the scan does not continue the record (the caller then
   * reads the whole file).
   */
  | { op: 'delta'; dbPath: string; keys: ChunkKeys | undefined; record: { cursor: WalCursor; pages: number[] }; migrationsTable: string }
  /**
   * Copy `base` (a local file, e.g. the replica's current database) to `path`, cut it to `bytes`, and
   * say which chunk indexes already hold their address (each one hashed): a catch-up downloads only the rest.
   */
  | { op: 'keep-base'; path: string; base: string; chunkSize: number; bytes: number; chunks: string[]; keys: ChunkKeys | undefined }
  /**
   * Write chunks streamed in (any order, each with its indexes) into the existing file `path` at their
   * offsets, verifying each against its address first. Several of these run at once on one file: the
   * main thread gives each distinct chunk to one of them, so their writes never overlap.
   */
  | { op: 'write-chunks'; path: string; chunkSize: number; bytes: number; chunks: string[]; digests: string[] | undefined; keys: ChunkKeys | undefined; label: string }
  /**
   * Apply a restore point's page deltas (stored bytes verified against the manifest, oldest first) to
   * `path`, where its chunk set (or an earlier point of its chain) was assembled (src/sync/chunks/delta-apply.ts).
   */
  | { op: 'apply-deltas'; path: string; deltas: StoredDelta[]; keys: ChunkKeys | undefined }
  /** PRAGMA quick_check on its own connection (safe beside another connection that reads the file). */
  | { op: 'quick-check'; path: string }
  /** fsync the file, and with `directory` its directory (a rename or creation in it is durable too). */
  | { op: 'fsync'; path: string; directory: boolean }
  /**
   * PRAGMA wal_checkpoint(PASSIVE) on the live database through the worker's own connection (never
   * blocks the app's writer). The result also goes into `shared` ([state 1 done / 2 failed, busy,
   * walFrames, checkpointedFrames]), which the checkpointer reads without waiting for the reply.
   * `holdWrites`: if that pass caught up, ask (state 3) for the app's writes to be held and, once they
   * are (4), fold what they appended meanwhile; go on without (5) if not held within a second. A held
   * pass that folded every frame restarts the WAL itself, writes still held (wal/wal-restart.ts), with
   * the writer's connection settings, `writerSetup` (checkpointer.ts writerConnectionSetup).
   */
  | { op: 'checkpoint'; dbPath: string; shared: SharedArrayBuffer; holdWrites: boolean; writerSetup: string; record?: { cursor: WalCursor; scans: SharedArrayBuffer } };

export type WorkerOp = WorkerRequest['op'];

/**
 * Ops whose worker lowers its CPU priority (thread-priority.ts), for good: a snapshot's and a
 * compaction's reading, hashing and compressing, beside the app. The pool keeps the other ops, which
 * callers wait on, off those workers while it can (run-in-worker.ts pickSlot).
 */
export const BACKGROUND_OPS: ReadonlySet<WorkerOp> = new Set<WorkerOp>(['snapshot', 'chunks']);

/** Steps: snapshot = VACUUM INTO, then compress + hash; restore = decode + hash + verify, then quick_check. */
export interface StepTimes {
  firstStepMs: number;
  secondStepMs: number;
}

/** What a 'chunks' snapshot found: every chunk's address and stored size, and where the new ones are in the spool. */
export interface ChunksResult extends CodecResult {
  pageSize: number;
  chunks: string[];
  /** Each new chunk by address: where it is in the spool, its stored (encoded) size and the sha256 of those bytes. */
  fresh: Array<{ address: string; offset: number; length: number; digest: string }>;
  /** With a record: what the WAL held past its cursor, and the WAL index's last frame before the image was pinned. */
  scan?: ScanResult;
  start?: { salt: string; frame: number } | null;
  /** Chunks read from the database (the rest kept the baseline's address); equal to chunks.length for a whole-file read. */
  readChunks: number;
  /** The image's place in drizzle's migration history. */
  schema: SchemaPosition;
}

/** What a 'delta' op read: the scan and start (as a 'chunks' op's), and the delta unless the scan broke the record. */
export interface DeltaResult {
  scan: ScanResult;
  start: { salt: string; frame: number } | null;
  delta?: { stored: Uint8Array; sha256: string; pages: number; pageSize: number; pageCount: number; durationMs: number; schema: SchemaPosition };
}

/** Each op's successful reply (without `ok`). */
export interface WorkerResults {
  /** `schema`: the copy's place in drizzle's migration history. */
  snapshot: StepTimes & CodecResult & { schema: SchemaPosition };
  restore: StepTimes & CodecResult;
  chunks: StepTimes & ChunksResult;
  delta: DeltaResult;
  'keep-base': { kept: number[] };
  /** `filled`: the indexes written (each verified); `busyMs`: time spent decoding, hashing and writing. */
  'write-chunks': { filled: number[]; storedBytes: number; busyMs: number };
  'apply-deltas': { pages: number; durationMs: number };
  'quick-check': { durationMs: number };
  fsync: { durationMs: number };
  checkpoint: CheckpointResult;
}

/** A 'checkpoint' result: PRAGMA wal_checkpoint's row (busy: another checkpoint ran; frames in the WAL, frames folded into the file). */
export interface CheckpointResult {
  busy: boolean;
  walFrames: number;
  checkpointedFrames: number;
  durationMs: number;
  /** A held pass folded every frame and the worker started the WAL over (wal/wal-restart.ts), or tried to. */
  restart?: WalRestart;
}

export type WorkerFailure = { ok: false; code: SyncErrorCode; message: string };
export type ResultFor<Op extends WorkerOp> = { ok: true } & WorkerResults[Op];
export type WorkerReply = { [Op in WorkerOp]: ResultFor<Op> }[WorkerOp] | WorkerFailure;

/** Main thread → worker. A request starts job `id`; chunks and the end are its streamed input; abort ends it with an error; warm loads the local-file driver ahead of the jobs that need it. */
export type ToWorker =
  | { id: number; request: WorkerRequest }
  | { id: number; chunk: Uint8Array; indexes?: number[] }
  | { id: number; end: true }
  | { id: number; abort: true }
  | { warm: 'libsql' };

/** Worker → main thread: a job's reply; an acknowledged input chunk (the main thread bounds what is in flight); a 'chunks' op's pin (announce); once, that it has booted; once, if asked, that it loaded the local-file driver. */
export type FromWorker = { id: number; reply: WorkerReply } | { id: number; ack: true } | { id: number; pinned: ChunksPinned } | { ready: true } | { warmed: 'libsql' };
