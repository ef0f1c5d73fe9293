import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * A collection on demand, in whichever thread calls it. Buffers whose memory lives outside V8's heap
 * (downloaded bodies, lz4-napi's decoded output) are only collected for that memory after ~64 MiB of it
 * per thread, so a restore's main thread and each decoding worker held tens of MiB of dead chunks each
 * (+40-50 MiB peak RSS at 1M rows). A young-generation collection (scavenge) every few chunks frees them
 * for well under a millisecond; 'major' returns what a finished job left. Exposing `gc` in a fresh
 * context leaves the app's global scope untouched. A no-op where the flag cannot be set.
 */
export const collectGarbage: (type: 'minor' | 'major') => void = (() => {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as (options?: { type: 'minor' }) => void;
    // gc() with no options is the full (mark-compact) collection: Node 20's V8 does not know
    // { type: 'major' } and ran a scavenge for it, so a closed connection's statements stayed alive.
    return (type) => (type === 'major' ? gc() : gc({ type }));
  } catch {
    return () => {};
  }
})();

/**
 * Bytes of chunks handled between two young-generation collections: bounds each thread's garbage. At
 * 4 MiB chunks and a 1M-row restore, every 8 MiB gave 119-127 MiB peak RSS above idle, every 4 MiB
 * 83-90 MiB and no slower restore (fresh memory is not faulted in again and again).
 */
const COLLECT_EVERY_BYTES = 4 * 1024 * 1024;

/** Counts the bytes of chunks a loop handles and collects the young generation every COLLECT_EVERY_BYTES of them. */
export function youngCollector(): (bytes: number) => void {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < COLLECT_EVERY_BYTES) return;
    since = 0;
    collectGarbage('minor');
  };
}
