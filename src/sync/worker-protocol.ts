import type { Codec, CodecResult } from './codec.ts';
import type { SyncErrorCode } from '../errors.ts';

export type WorkerRequest =
  | { op: 'snapshot'; dbPath: string; rawPath: string; outPath: string; codec: Codec }
  | {
      op: 'restore';
      compressedPath: string;
      outPath: string;
      codec: Codec;
      expectedBytes: number;
      expectedSha256: string;
      /** Names the snapshot in error messages. */
      label: string;
    };

export type WorkerReply =
  | ({ ok: true; copyMs: number; compressMs: number } & CodecResult)
  | { ok: false; code: SyncErrorCode; message: string };
