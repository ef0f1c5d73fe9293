import { createHash } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, createGunzip } from 'node:zlib';
import { compressSync, uncompressSync } from 'lz4-napi';
import { SyncError } from '../errors.ts';

/**
 * Snapshot compression. `lz4` is the default: measured by bench/codecs.ts on a 100 MB database it
 * decompresses ~4x faster than gzip level 1 (345 vs 87 MiB/s) and compresses ~4x faster, for files
 * ~37% larger (ratio 2.0 vs 2.8). Restore speed is what a restarting container waits on, and lz4
 * wins whenever the link is faster than ~15 MiB/s. Node 20 has no zstd.
 *
 * The lz4 file format is ours and streams in bounded memory: an 8-byte magic, then records of
 * [u32 rawLength][u32 compressedLength][lz4 block], then an end record [0][0]. A missing end record
 * means the file was truncated.
 */
export type Codec = 'lz4' | 'gzip' | 'none';
export const CODECS: readonly Codec[] = ['lz4', 'gzip', 'none'];

const LZ4_MAGIC = Buffer.from('DLBLZ4\x00\x01', 'latin1');
const BLOCK_BYTES = 1024 * 1024;

export interface CodecResult {
  rawBytes: number;
  compressedBytes: number;
  /** sha256 (hex) of the raw, uncompressed bytes. */
  sha256: string;
}

export function fileExtension(codec: Codec): string {
  return codec === 'none' ? 'db' : `db.${codec}`;
}

function corrupt(path: string, why: string, cause?: unknown): SyncError {
  return new SyncError('SNAPSHOT_CORRUPT', `Snapshot file ${path} is corrupt: ${why}.`, { cause });
}

/** Compresses `src` into `dst`, hashing the raw bytes on the way. Runs in the snapshot worker. */
export async function compressFile(src: string, dst: string, codec: Codec): Promise<CodecResult> {
  if (codec === 'lz4') return compressLz4(src, dst);
  const hash = createHash('sha256');
  let rawBytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      rawBytes += chunk.length;
      done(null, chunk);
    },
  });
  const input = createReadStream(src, { highWaterMark: BLOCK_BYTES });
  if (codec === 'gzip') await pipeline(input, tap, createGzip({ level: 1 }), createWriteStream(dst, { flush: true }));
  else await pipeline(input, tap, createWriteStream(dst, { flush: true }));
  const { size } = await stat(dst);
  return { rawBytes, compressedBytes: size, sha256: hash.digest('hex') };
}

/** Synchronous file I/O on purpose: this runs in a worker thread, where it beats threadpool round trips. */
/**
 * Yields to the (worker's) event loop every few blocks: lz4-napi's output buffers live outside V8's
 * heap and are freed by finalizers that only run between turns, so a loop that never yields holds
 * every block it compressed (+330 MB peak at 600 MB here, +43 MB when yielding).
 */
const YIELD_EVERY_BLOCKS = 4;

async function compressLz4(src: string, dst: string): Promise<CodecResult> {
  const hash = createHash('sha256');
  const input = openSync(src, 'r');
  const out = openSync(dst, 'w');
  try {
    writeSync(out, LZ4_MAGIC);
    let rawBytes = 0;
    let compressedBytes = LZ4_MAGIC.length;
    const chunk = Buffer.allocUnsafe(BLOCK_BYTES);
    let blocks = 0;
    for (;;) {
      const n = readSync(input, chunk, 0, BLOCK_BYTES, null);
      if (n === 0) break;
      const raw = chunk.subarray(0, n);
      hash.update(raw);
      const block = compressSync(raw);
      const header = Buffer.allocUnsafe(8);
      header.writeUInt32LE(n, 0);
      header.writeUInt32LE(block.length, 4);
      writeSync(out, header);
      writeSync(out, block);
      rawBytes += n;
      compressedBytes += 8 + block.length;
      if (++blocks % YIELD_EVERY_BLOCKS === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    writeSync(out, Buffer.alloc(8));
    fsyncSync(out);
    return { rawBytes, compressedBytes: compressedBytes + 8, sha256: hash.digest('hex') };
  } finally {
    closeSync(input);
    closeSync(out);
  }
}

/**
 * Incremental decoder for the lz4 format: accepts compressed bytes in any chunking (a file read or
 * network ranges as they arrive) and returns whole raw blocks. `finish()` throws if the end record
 * never came (truncation) or bytes follow it.
 */
export class Lz4Decoder {
  readonly #label: string;
  #chunks: Buffer[] = [];
  #length = 0;
  /** Bytes needed before any progress is possible: input is only joined once they are there (linear time). */
  #need = LZ4_MAGIC.length;
  #offset = 0; // bytes consumed so far, for error messages
  #sawMagic = false;
  #ended = false;

  constructor(label: string) {
    this.#label = label;
  }

  push(chunk: Buffer): Buffer[] {
    if (chunk.length === 0) return [];
    if (this.#ended) throw corrupt(this.#label, `unexpected bytes after the end record at byte ${this.#offset}`);
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    if (this.#length < this.#need) return [];
    let buf = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#length);
    const blocks: Buffer[] = [];
    let pos = 0;
    for (;;) {
      const left = buf.length - pos;
      if (!this.#sawMagic) {
        if (left < LZ4_MAGIC.length) break;
        if (!buf.subarray(pos, pos + LZ4_MAGIC.length).equals(LZ4_MAGIC)) throw corrupt(this.#label, 'not an lz4 snapshot (bad magic)');
        pos += LZ4_MAGIC.length;
        this.#sawMagic = true;
        continue;
      }
      if (left < 8) {
        this.#need = 8;
        break;
      }
      const at = this.#offset + pos;
      const rawLength = buf.readUInt32LE(pos);
      const compressedLength = buf.readUInt32LE(pos + 4);
      if (rawLength === 0 && compressedLength === 0) {
        pos += 8;
        this.#ended = true;
        if (pos < buf.length) throw corrupt(this.#label, `${buf.length - pos} unexpected bytes after the end record`);
        break;
      }
      if (rawLength > BLOCK_BYTES * 64 || compressedLength > BLOCK_BYTES * 65) throw corrupt(this.#label, `implausible block size at byte ${at}`);
      if (left < 8 + compressedLength) {
        this.#need = 8 + compressedLength;
        break;
      }
      let raw: Buffer;
      try {
        raw = uncompressSync(buf.subarray(pos + 8, pos + 8 + compressedLength));
      } catch (error) {
        throw corrupt(this.#label, `lz4 block at byte ${at} does not decode`, error);
      }
      if (raw.length !== rawLength) throw corrupt(this.#label, `block at byte ${at} decoded to ${raw.length} bytes, expected ${rawLength}`);
      blocks.push(raw);
      pos += 8 + compressedLength;
    }
    buf = buf.subarray(pos);
    this.#offset += pos;
    this.#chunks = buf.length > 0 ? [buf] : [];
    this.#length = buf.length;
    return blocks;
  }

  finish(): void {
    if (!this.#ended) throw corrupt(this.#label, `truncated: no end record after ${this.#offset + this.#length} bytes`);
  }
}

/** Decompresses `src` into `dst`; throws SNAPSHOT_CORRUPT on any framing or codec error. */
export async function decompressFile(src: string, dst: string, codec: Codec): Promise<CodecResult> {
  return decodeToFile(createReadStream(src, { highWaterMark: 4 * BLOCK_BYTES }) as AsyncIterable<Buffer>, dst, codec, src);
}

/**
 * Decodes compressed chunks as they arrive (from a file or straight from the network, so download and
 * decompression overlap) into `dst`, hashing the raw bytes, then fsyncs it unless `fsync` is false (a
 * caller that syncs later, off its critical path). Codec errors become SNAPSHOT_CORRUPT;
 * errors of the source (a store failure) pass through unchanged.
 */
export async function decodeToFile(chunks: AsyncIterable<Buffer>, dst: string, codec: Codec, label: string, { fsync = true }: { fsync?: boolean } = {}): Promise<CodecResult> {
  const hash = createHash('sha256');
  let rawBytes = 0;
  let compressedBytes = 0;
  if (codec === 'lz4') {
    const decoder = new Lz4Decoder(label);
    const out = await open(dst, 'w');
    try {
      for await (const chunk of chunks) {
        compressedBytes += chunk.length;
        for (const raw of decoder.push(chunk)) {
          hash.update(raw);
          rawBytes += raw.length;
          await out.write(raw);
        }
      }
      decoder.finish();
      if (fsync) await out.sync();
    } finally {
      await out.close();
    }
    return { rawBytes, compressedBytes, sha256: hash.digest('hex') };
  }
  let sourceError: unknown;
  async function* counted() {
    try {
      for await (const chunk of chunks) {
        compressedBytes += chunk.length;
        yield chunk;
      }
    } catch (error) {
      sourceError = error;
      throw error;
    }
  }
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      rawBytes += chunk.length;
      done(null, chunk);
    },
  });
  try {
    if (codec === 'gzip') await pipeline(Readable.from(counted()), createGunzip(), tap, createWriteStream(dst, { flush: fsync }));
    else await pipeline(Readable.from(counted()), tap, createWriteStream(dst, { flush: fsync }));
  } catch (error) {
    if (sourceError !== undefined) throw sourceError;
    throw corrupt(label, `${codec} stream does not decode`, error);
  }
  return { rawBytes, compressedBytes, sha256: hash.digest('hex') };
}
