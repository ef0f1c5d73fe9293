import { createHash } from 'node:crypto';
import { compressSync, uncompressSync } from 'lz4-napi';
import { SyncError } from '../../errors.ts';
import { decrypt, encrypt, keyedAddress, type ChunkKeys } from './encryption.ts';

/**
 * One chunk of a database's page image as stored: `[version][flags][payload]`, payload = the chunk,
 * lz4-compressed when that makes it smaller, then AES-256-GCM sealed when a key is configured. Its
 * address (object name) is the sha256 of the plain chunk, or an HMAC of it under encryption, so equal
 * content is stored once and every download can be verified against its name.
 */
const VERSION = 1;
const LZ4 = 1;
const SEALED = 2;

export function chunkAddress(plain: Buffer, keys: ChunkKeys | undefined): string {
  return keys ? keyedAddress(plain, keys.macKey) : createHash('sha256').update(plain).digest('hex');
}

export function encodeChunk(plain: Buffer, keys: ChunkKeys | undefined): Buffer {
  const packed = compressSync(plain);
  const useLz4 = packed.length < plain.length;
  const inner = useLz4 ? packed : plain;
  const payload = keys ? encrypt(inner, keys.encKey) : inner;
  return Buffer.concat([Buffer.from([VERSION, (useLz4 ? LZ4 : 0) | (keys ? SEALED : 0)]), payload]);
}

/** sha256 (hex) of a chunk's stored bytes: its digest in the chunk index. */
export function storedDigest(stored: Buffer): string {
  return createHash('sha256').update(stored).digest('hex');
}

/**
 * Decodes and verifies; SNAPSHOT_CORRUPT on any mismatch. With `digest` (the index's sha256 of the
 * stored bytes), stored bytes that match it are exactly the ones uploaded and are only decoded; any
 * others (no digest, or a chunk uploaded again since with another encoding) are verified by the
 * address they were fetched by, as without it: a digest can speed a chunk up, never let a wrong one in.
 */
export function decodeChunk(stored: Buffer, address: string, keys: ChunkKeys | undefined, label: string, digest?: string): Buffer {
  const authentic = digest !== undefined && digest !== '' && storedDigest(stored) === digest;
  const plain = openStored(stored, keys, `Chunk ${address.slice(0, 16)}… of ${label}`);
  if (!authentic && chunkAddress(plain, keys) !== address) throw new SyncError('SNAPSHOT_CORRUPT', `Chunk ${address.slice(0, 16)}… of ${label} does not match its address (content changed).`);
  return plain;
}

/**
 * Stored bytes to plain ones (decrypted, decompressed), without checking what they are: for bytes the
 * caller has already verified against a digest (a page delta's, checked once as it is fetched).
 */
export function openStored(stored: Buffer, keys: ChunkKeys | undefined, label: string): Buffer {
  const bad = (why: string, cause?: unknown) => new SyncError('SNAPSHOT_CORRUPT', `${label} ${why}.`, cause === undefined ? {} : { cause });
  if (stored.length < 2 || stored[0] !== VERSION) throw bad('has an unknown format');
  const flags = stored[1]!;
  if (Boolean(flags & SEALED) !== Boolean(keys)) throw bad(flags & SEALED ? 'is encrypted but no key is configured' : 'is not encrypted but a key is configured');
  let inner = stored.subarray(2);
  if (keys) {
    try {
      inner = decrypt(inner, keys.encKey);
    } catch (error) {
      throw bad('fails authentication (tampered or truncated)', error);
    }
  }
  let plain: Buffer;
  try {
    plain = flags & LZ4 ? uncompressSync(inner) : inner;
  } catch (error) {
    throw bad('does not decompress', error);
  }
  return plain;
}

/** A chunked snapshot's identity: equal databases (and chunking) give equal roots. */
export function rootHash(bytes: number, chunkSize: number, chunks: string[]): string {
  return createHash('sha256').update(`${bytes}:${chunkSize}:${chunks.join(',')}`).digest('hex');
}
