import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/**
 * Nice value of a worker thread once it has done background work (a snapshot's reading, hashing and
 * compressing). On a small container (2 cores) those threads, the store's client and the app's thread
 * all want the CPU during a snapshot; at nice 10 a worker gets about a tenth of a core's share against
 * the app's thread, so the snapshot uses the idle cycles and the app's thread runs as soon as it wakes.
 * (Measured at 1M rows on Azurite this alone left the longest write gap at 166 ms: that stall was the
 * file system's journal, see SPOOL_SYNC_EVERY_BYTES in file-worker.ts.)
 */
export const BACKGROUND_NICE = 10;

let lowered = false;

/**
 * Lowers the calling thread's CPU priority, once (an unprivileged process cannot raise it again, so a
 * worker stays at it). Linux only: a thread id passed to setpriority(2) names that one thread, and
 * `/proc/thread-self` tells the calling thread's id. Elsewhere, or if refused, nothing changes.
 */
export function lowerThreadPriority(): void {
  if (lowered) return;
  lowered = true;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').at(-1));
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, BACKGROUND_NICE);
  } catch {
    // Not Linux, or no /proc: the work runs at the process's priority, as before.
  }
}
