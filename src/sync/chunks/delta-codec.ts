import { SyncError } from '../../errors.ts';
import { encodeChunk, openStored, storedDigest } from './chunk-codec.ts';
import type { ChunkKeys } from './encryption.ts';

/**
 * A page delta (issue 14): the pages a database changed since the restore point it extends, each as of
 * one read transaction, plus the database's page count then. Applied in order on top of its chunk set
 * (restore, replicas), the chain gives the database at the newest delta.
 *
 * Plain layout: `DLBDELTA` | u32 page size | u32 page count | u32 n | n x u32 page number (ascending)
 * | n pages. Stored like a chunk (`encodeChunk`: lz4 when smaller, AES-256-GCM when keyed). The
 * manifest entry carries the sha256 of the stored bytes, so a delta is verified before it is decoded.
 */
const MAGIC = Buffer.from('DLBDELTA');
const HEADER = MAGIC.length + 12;

export interface DeltaPages {
  pageSize: number;
  /** The database's size in pages as of the delta: the file is cut (or grown) to this. */
  pageCount: number;
  /** Ascending page numbers, each in 1..pageCount. */
  pgnos: Uint32Array;
  /** The pages' bytes, `pageSize` each, in `pgnos` order. */
  data: Buffer;
}

/**
 * A plain payload with its header written and `pages`, the room for the pages after it, to be filled in
 * place (a delta of 10 000 pages is 40 MiB: one buffer, not a second copy).
 */
export function deltaPayload(pageSize: number, pageCount: number, pgnos: Uint32Array): { plain: Buffer; pages: Buffer } {
  const headBytes = HEADER + pgnos.length * 4;
  const plain = Buffer.allocUnsafe(headBytes + pgnos.length * pageSize);
  MAGIC.copy(plain, 0);
  plain.writeUInt32BE(pageSize, MAGIC.length);
  plain.writeUInt32BE(pageCount, MAGIC.length + 4);
  plain.writeUInt32BE(pgnos.length, MAGIC.length + 8);
  pgnos.forEach((p, i) => plain.writeUInt32BE(p, HEADER + i * 4));
  return { plain, pages: plain.subarray(headBytes) };
}

/** The plain payload of a delta. */
export function encodeDeltaPages(delta: DeltaPages): Buffer {
  const { plain, pages } = deltaPayload(delta.pageSize, delta.pageCount, delta.pgnos);
  delta.data.copy(pages);
  return plain;
}

/** Stored bytes of a plain payload, and their digest (the manifest entry's `sha256`). */
export function sealDelta(plain: Buffer, keys: ChunkKeys | undefined): { stored: Buffer; sha256: string } {
  const stored = encodeChunk(plain, keys);
  return { stored, sha256: storedDigest(stored) };
}

/** Parses and checks a plain payload (shape only: its integrity is the stored digest's job). */
export function decodeDeltaPages(plain: Buffer, label: string): DeltaPages {
  const bad = (why: string) => new SyncError('SNAPSHOT_CORRUPT', `The page delta ${label} is unreadable (${why}).`);
  if (plain.length < HEADER || !plain.subarray(0, MAGIC.length).equals(MAGIC)) throw bad('unknown format');
  const pageSize = plain.readUInt32BE(MAGIC.length);
  const pageCount = plain.readUInt32BE(MAGIC.length + 4);
  const n = plain.readUInt32BE(MAGIC.length + 8);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) throw bad(`page size ${pageSize}`);
  if (plain.length !== HEADER + n * 4 + n * pageSize) throw bad(`${plain.length} bytes for ${n} pages of ${pageSize}`);
  const pgnos = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const p = plain.readUInt32BE(HEADER + i * 4);
    if (p < 1 || p > pageCount || (i > 0 && p <= pgnos[i - 1]!)) throw bad(`page number ${p} out of order or past the page count ${pageCount}`);
    pgnos[i] = p;
  }
  return { pageSize, pageCount, pgnos, data: plain.subarray(HEADER + n * 4) };
}

/** Stored bytes and their digest (the manifest entry's `sha256`). */
export function encodeDelta(delta: DeltaPages, keys: ChunkKeys | undefined): { stored: Buffer; sha256: string } {
  return sealDelta(encodeDeltaPages(delta), keys);
}

/** Verifies stored bytes against the manifest's digest, then decodes: SNAPSHOT_CORRUPT on any mismatch. */
export function decodeDelta(stored: Buffer, sha256: string, keys: ChunkKeys | undefined, label: string): DeltaPages {
  if (storedDigest(stored) !== sha256) throw new SyncError('SNAPSHOT_CORRUPT', `The page delta ${label} does not match its sha256 in the manifest (damaged, truncated or replaced).`);
  return decodeVerifiedDelta(stored, keys, label);
}

/** Decodes stored bytes already verified against the manifest's digest (sealed: still authenticated under the key). */
export function decodeVerifiedDelta(stored: Buffer, keys: ChunkKeys | undefined, label: string): DeltaPages {
  return decodeDeltaPages(openStored(stored, keys, `The page delta ${label}`), label);
}
