/**
 * Writing a restored chunk into the database file being assembled: verified against its stored digest
 * or its address (decodeChunk), then written at every offset the index gives it. The file workers do this for a
 * restore; so does the main thread for a start-up restore's first chunks while no worker has booted yet.
 */
import { writeSync } from 'node:fs';
import { SyncError } from '../../errors.ts';
import { decodeChunk } from './chunk-codec.ts';
import type { ChunkKeys } from './encryption.ts';

export interface ChunkLayout {
  chunks: string[];
  chunkSize: number;
  bytes: number;
  keys: ChunkKeys | undefined;
  /** The index's digests of the stored chunks (ChunkIndex.digests), when it has them. */
  digests?: string[] | undefined;
  /** The snapshot's key, for messages. */
  label: string;
}

/** Returns a writer into `fd` that takes a stored chunk and the indexes it fills, and returns its decoded size. */
export function chunkWriter(fd: number, layout: ChunkLayout): (data: Buffer, indexes: readonly number[] | undefined) => number {
  const { chunks, chunkSize, bytes, keys, label, digests } = layout;
  const corrupt = (why: string) => new SyncError('SNAPSHOT_CORRUPT', `Snapshot ${label}: ${why}.`);
  return (data, indexes) => {
    if (!indexes || indexes.length === 0) throw corrupt('a chunk arrived without its position');
    const address = chunks[indexes[0]!];
    if (address === undefined) throw corrupt(`chunk index ${indexes[0]} is out of range`);
    const plain = decodeChunk(data, address, keys, label, digests?.[indexes[0]!]);
    for (const index of indexes) {
      if (chunks[index] !== address) throw corrupt(`chunk index ${index} does not hold ${address.slice(0, 16)}…`);
      const expected = Math.min(chunkSize, bytes - index * chunkSize);
      if (plain.length !== expected) throw corrupt(`chunk ${index} is ${plain.length} bytes, expected ${expected}`);
      writeSync(fd, plain, 0, plain.length, index * chunkSize); // may block this thread; skips a thread-pool hop per chunk
    }
    return plain.length;
  };
}
