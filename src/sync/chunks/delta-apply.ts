/**
 * Applies a restore point's page deltas to the file its chunk set was assembled into: each delta
 * decoded in turn, its pages written in runs of consecutive pages with positioned synchronous writes,
 * then the file cut to the delta's size. 19 deltas of 5.6 MiB (about 5000 runs) took 200-350 ms as one
 * awaited write per run through the thread pool. Runs in a file worker (the 'apply-deltas' op), or on
 * the restoring thread at start-up before any worker is up (restore.ts, assembleChain).
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { SyncError } from '../../errors.ts';
import { decodeVerifiedDelta } from './delta-codec.ts';
import type { ChunkKeys } from './encryption.ts';

/** One delta of the chain: its stored bytes (already verified against the manifest's digest), its database size and a label for errors. */
export interface StoredDelta {
  stored: Uint8Array;
  bytes: number;
  label: string;
}

/** Writes each delta's pages and cuts the file to its size, in order. Returns the pages written. */
export function applyDeltasToFile(path: string, deltas: readonly StoredDelta[], keys: ChunkKeys | undefined): number {
  const fd = openSync(path, 'r+');
  let written = 0;
  try {
    for (const entry of deltas) {
      const stored = Buffer.from(entry.stored.buffer, entry.stored.byteOffset, entry.stored.byteLength);
      const { pgnos, pageSize, data, pageCount } = decodeVerifiedDelta(stored, keys, entry.label);
      if (pageCount * pageSize !== entry.bytes) throw new SyncError('SNAPSHOT_CORRUPT', `Page delta ${entry.label} ends in ${pageCount * pageSize} bytes, the manifest says ${entry.bytes}.`);
      for (let first = 0; first < pgnos.length; ) {
        let last = first;
        while (last + 1 < pgnos.length && pgnos[last + 1] === pgnos[last]! + 1) last++;
        const run = data.subarray(first * pageSize, (last + 1) * pageSize);
        const position = (pgnos[first]! - 1) * pageSize;
        for (let done = 0; done < run.length; ) done += writeSync(fd, run, done, run.length - done, position + done);
        first = last + 1;
      }
      written += pgnos.length;
      ftruncateSync(fd, pageCount * pageSize);
    }
  } finally {
    closeSync(fd);
  }
  return written;
}
