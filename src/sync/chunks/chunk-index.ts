import { SyncError } from '../../errors.ts';

/**
 * The immutable object a chunked snapshot's manifest entry points to: the database's size, how it was
 * cut, and every chunk's address (object `chunks/<address>`) and stored size, in file order. Kept out
 * of the manifest so the one mutable object stays small whatever the database size.
 */
export interface ChunkIndex {
  format: 1;
  bytes: number;
  pageSize: number;
  chunkSize: number;
  chunks: string[];
  /** Stored (encoded) size of each chunk, parallel to `chunks`. */
  stored: number[];
  /**
   * sha256 (hex) of each chunk's stored bytes as uploaded, parallel to `chunks`; '' where the writer did
   * not know it (a chunk first stored by a version without digests). Absent in older indexes. A restore
   * verifies a chunk whose stored bytes match their digest by that alone (half the bytes of hashing the
   * decoded chunk: the index is authenticated by the manifest's indexSha256, so the stored bytes are
   * exactly those uploaded), and any other chunk by its address, as before.
   */
  digests?: string[];
  /** Present when the chunks are encrypted: the key's public id. */
  keyId?: string;
}

export const CHUNK_PREFIX = 'chunks/';
export const chunkKey = (address: string) => `${CHUNK_PREFIX}${address}`;

/** Each distinct address of `chunks` (only the positions in `which`, default all) with the positions it fills. */
export function chunkPositions(chunks: readonly string[], which: Iterable<number> = chunks.keys()): Map<string, number[]> {
  const positions = new Map<string, number[]>();
  for (const i of which) {
    const at = positions.get(chunks[i]!);
    if (at) at.push(i);
    else positions.set(chunks[i]!, [i]);
  }
  return positions;
}

export function encodeChunkIndex(index: ChunkIndex): Buffer {
  return Buffer.from(JSON.stringify(index));
}

export function decodeChunkIndex(body: Buffer, label: string): ChunkIndex {
  const bad = (why: string) => new SyncError('SNAPSHOT_CORRUPT', `The chunk index ${label} is unreadable (${why}).`);
  let value: Partial<ChunkIndex>;
  try {
    value = JSON.parse(body.toString('utf8')) as Partial<ChunkIndex>;
  } catch {
    throw bad('not JSON');
  }
  if (value?.format !== 1) throw bad('unknown format');
  const { bytes, pageSize, chunkSize, chunks, stored } = value;
  if (!Number.isSafeInteger(bytes) || !Number.isSafeInteger(pageSize) || !Number.isSafeInteger(chunkSize) || chunkSize! <= 0) throw bad('bad sizes');
  if (!Array.isArray(chunks) || !Array.isArray(stored) || chunks.length !== stored.length) throw bad('bad chunk list');
  if (chunks.length !== Math.ceil(bytes! / chunkSize!)) throw bad(`${chunks.length} chunks for ${bytes} bytes`);
  if (!chunks.every((c) => typeof c === 'string' && /^[0-9a-f]{64}$/.test(c))) throw bad('bad chunk address');
  const { digests } = value;
  if (digests !== undefined && (!Array.isArray(digests) || digests.length !== chunks.length || !digests.every((d) => typeof d === 'string' && /^([0-9a-f]{64})?$/.test(d)))) {
    throw bad('bad digest list');
  }
  return value as ChunkIndex;
}
