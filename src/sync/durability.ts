import { assertKnownKeys, keysOf } from '../config-keys.ts';
import { SyncError } from '../errors.ts';

/**
 * `db.$sync.durable()`: an app that must not acknowledge a write before it is safe (an HTTP answer, a
 * message ack) waits here until every commit made before the call is in the store. Callers that wait
 * at the same time share one upload (group commit): a snapshot started for one of them covers every
 * commit made before it started, and the ones that committed while it ran share the next.
 */

export interface DurableOptions {
  /**
   * Reject with `NOT_DURABLE` when the commits are not in the store after this long. Default 30 000 ms.
   * The commits stay committed in the local file and upload when the store answers; only the wait ends.
   */
  timeoutMs?: number;
}

/** Default `durable({ timeoutMs })`: longer than a few failed uploads and their backoff, shorter than an HTTP client's patience. */
export const DURABLE_TIMEOUT_MS = 30_000;

const DURABLE_KEYS = keysOf<DurableOptions>({ timeoutMs: true });

/** Validated on entry (p-retry style): a bad option is CONFIG naming it, before anything waits. */
export function durableTimeout(options: DurableOptions | undefined): number {
  if (options === undefined) return DURABLE_TIMEOUT_MS;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new SyncError('CONFIG', `durable() takes an options object such as { timeoutMs: 10000 }; got ${JSON.stringify(options)}.`);
  }
  assertKnownKeys(options, DURABLE_KEYS, '', 'durable(): ');
  const { timeoutMs = DURABLE_TIMEOUT_MS } = options;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new SyncError('CONFIG', `durable(): timeoutMs must be a positive number of milliseconds, e.g. { timeoutMs: 10000 }; got ${JSON.stringify(timeoutMs)}.`);
  }
  return timeoutMs;
}

// ---- decisions (pure) ----

/** What the controller knows when a waiter is looked at. */
export interface DurabilityState {
  /** Commits counted so far that a published snapshot covers. */
  covered: number;
  /** The file held commits from before this process that no snapshot has covered yet. */
  dirtyAtStart: boolean;
  /** Stopped for good (lease lost, fenced, a restored file that failed its check): nothing will upload. */
  stopped: SyncError | undefined;
  /** close() has finished: nothing more will upload from this instance. */
  closed: boolean;
}

export type WaiterVerdict = 'durable' | 'waiting' | 'stopped' | 'closed';

/**
 * One waiter, whose call came after `target` commits: durable once a published snapshot covers that
 * many (and the commits a dirty file carried over from before, which every snapshot covers). A waiter
 * whose commits are covered resolves even when the instance stopped or closed afterwards.
 */
export function waiterVerdict(target: number, s: DurabilityState): WaiterVerdict {
  if (s.covered >= target && !s.dirtyAtStart) return 'durable';
  if (s.stopped) return 'stopped';
  if (s.closed) return 'closed';
  return 'waiting';
}

export interface UploadState {
  /** Someone still waits. */
  waiting: boolean;
  /** This instance is the writer and snapshots (a replica has no commits to wait for). */
  canSnapshot: boolean;
  /** A snapshot is running (the waiters will be looked at when it settles). */
  running: boolean;
  /** close() began: its final snapshot covers the waiters. */
  closing: boolean;
  /** No snapshot before this time (the backoff after a failed one; its retry timer runs it). */
  retryAt: number;
  now: number;
}

/**
 * Whether to start a snapshot now for the waiters: at once, not at the debounce (they asked for it), but
 * never beside a running one (the next one starts when it settles, for everyone who came meanwhile: the
 * group commit) and never inside a failed upload's backoff (the retry timer runs it, and a store that is
 * down is not hammered by callers).
 */
export function uploadForWaitersNow(s: UploadState): boolean {
  return s.waiting && s.canSnapshot && !s.running && !s.closing && s.now >= s.retryAt;
}

// ---- the waiters (state) ----

interface Waiter {
  target: number;
  resolve(): void;
  reject(error: SyncError): void;
  timer: NodeJS.Timeout;
}

/** Owns the pending durable() calls: each with its target and its own timeout. */
export class DurableWaiters {
  readonly #waiting = new Set<Waiter>();

  get size(): number {
    return this.#waiting.size;
  }

  /** Waits for `target` commits to be covered; `timedOut` builds the error when `timeoutMs` passes first. */
  add(target: number, timeoutMs: number, timedOut: () => SyncError): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        target,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiting.delete(waiter);
          reject(timedOut());
        }, timeoutMs),
      };
      this.#waiting.add(waiter);
    });
  }

  /** Resolves the waiters the state makes durable and rejects the ones it never will; true if any still wait. */
  settle(s: DurabilityState, closedError: () => SyncError): boolean {
    for (const waiter of this.#waiting) {
      const verdict = waiterVerdict(waiter.target, s);
      if (verdict === 'waiting') continue;
      this.#waiting.delete(waiter);
      clearTimeout(waiter.timer);
      if (verdict === 'durable') waiter.resolve();
      else waiter.reject(verdict === 'stopped' ? s.stopped! : closedError());
    }
    return this.#waiting.size > 0;
  }
}
