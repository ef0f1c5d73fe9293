import type { Codec, CodecResult } from './codec.ts';
import type { SyncErrorCode } from '../errors.ts';
import type { ChunkKeys } from './chunks/encryption.ts';

export type WorkerRequest =
  /** VACUUM INTO, then compress and hash. */
  | { op: 'snapshot'; dbPath: string; rawPath: string; outPath: string; codec: Codec }
  /**
   * Decode compressed chunks streamed in as `WorkerInput` messages into `path`, hashing as it goes,
   * then verify sizes and sha256 against the manifest and run PRAGMA quick_check. The main thread only downloads, so network and decoding overlap.
   */
  | { op: 'restore'; path: string; codec: Codec; label: string; expected: { compressedBytes: number; bytes: number; sha256: string } }
  /**
   * Read the live database's page image in one read transaction, split it into chunks, address each,
   * and encode (compress, seal) into `spoolPath` those whose address is not in `known`.
   */
  | { op: 'chunks'; dbPath: string; chunkSize: number; known: string[]; keys: ChunkKeys | undefined; spoolPath: string }
  /**
   * Write chunks streamed in (any order, each with its indexes) into `path`, verifying each, then quick_check.
   * With `base` (a local file, e.g. the replica's current database), the worker first copies it and
   * keeps every chunk whose content already has the right address, then says which indexes it still
   * needs (`WorkerNeed`): a catch-up downloads only what changed.
   */
  | { op: 'assemble'; path: string; chunkSize: number; bytes: number; chunks: string[]; keys: ChunkKeys | undefined; label: string; quickCheck: boolean; base?: string }
  /**
   * PRAGMA wal_checkpoint(PASSIVE) on the live database through the worker's own connection (never
   * blocks the app's writer). The result also goes into `shared` ([state 1 done / 2 failed, busy,
   * walFrames, checkpointedFrames]), which the checkpointer reads without waiting for the reply.
   * `holdWrites`: if that pass caught up, ask (state 3) for the app's writes to be held and, once they
   * are (4), fold what they appended meanwhile; go on without (5) if not held within a second.
   */
  | { op: 'checkpoint'; dbPath: string; shared: SharedArrayBuffer; holdWrites: boolean };

/** An 'assemble' worker with a base: the chunk indexes it still needs. */
export type WorkerNeed = { need: number[] };

/** Messages to a 'restore' worker: chunks in order (an 'assemble' worker: with the indexes they fill), then the end. */
export type WorkerInput = { chunk: Uint8Array; indexes?: number[] } | { end: true };

/** What a 'chunks' snapshot found: every chunk's address and stored size, and where the new ones are in the spool. */
export interface ChunksResult extends CodecResult {
  pageSize: number;
  chunks: string[];
  /** Stored (encoded) size of each new chunk, by address. */
  fresh: Array<{ address: string; offset: number; length: number }>;
}

/** A 'checkpoint' result: PRAGMA wal_checkpoint's row (busy: another checkpoint ran; frames in the WAL, frames folded into the file). */
export interface CheckpointResult {
  busy: boolean;
  walFrames: number;
  checkpointedFrames: number;
  durationMs: number;
}

/** What the worker replies to a 'checkpoint' request (beside the `WorkerReply` failure shape). */
export type CheckpointReply = { ok: true } & CheckpointResult;

/** The worker acknowledges every chunk so the main thread can bound what is in flight. */
export type WorkerAck = { ack: true };

export type WorkerReply =
  /** Steps: snapshot = VACUUM INTO, then compress + hash; restore = decode + hash + verify, then quick_check. */
  | ({ ok: true; firstStepMs: number; secondStepMs: number } & CodecResult)
  | ({ ok: true; firstStepMs: number; secondStepMs: number } & ChunksResult)
  | { ok: false; code: SyncErrorCode; message: string };
