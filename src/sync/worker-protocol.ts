import type { Codec, CodecResult } from './codec.ts';
import type { SyncErrorCode } from '../errors.ts';

export type WorkerRequest =
  /** VACUUM INTO, then compress and hash. */
  | { op: 'snapshot'; dbPath: string; rawPath: string; outPath: string; codec: Codec }
  /**
   * Decode compressed chunks streamed in as `WorkerInput` messages into `path`, hashing as it goes,
   * then verify sizes and sha256 against the manifest and run PRAGMA quick_check. The main thread only downloads, so network and decoding overlap.
   */
  | { op: 'restore'; path: string; codec: Codec; label: string; expected: { compressedBytes: number; bytes: number; sha256: string } };

/** Messages to a 'restore' worker: chunks in order, then the end. */
export type WorkerInput = { chunk: Uint8Array } | { end: true };

/** The worker acknowledges every chunk so the main thread can bound what is in flight. */
export type WorkerAck = { ack: true };

export type WorkerReply =
  /** Steps: snapshot = VACUUM INTO, then compress + hash; restore = decode + hash + verify, then quick_check. */
  | ({ ok: true; firstStepMs: number; secondStepMs: number } & CodecResult)
  | { ok: false; code: SyncErrorCode; message: string };
