import { stat } from 'node:fs/promises';
import { errorMessage } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import { runInWorker } from './run-in-worker.ts';
import type { CheckpointReply } from './worker-protocol.ts';

/**
 * WAL checkpoints off the app's thread.
 *
 * SQLite's automatic checkpoint (every 1000 pages) runs inside whichever commit crosses the mark, on
 * the app's event loop: during a 1M-row snapshot that one commit stalled writes for 140-295 ms. The
 * writer's connections therefore run with `wal_autocheckpoint=0` (see `writerConnectionSetup`), and
 * the WAL is folded into the file by a worker thread's own connection with PASSIVE checkpoints, which
 * never block writers:
 * - after each snapshot: the snapshot's worker op checkpoints as soon as its read transaction ends
 *   (file-worker.ts copyConsistently, chunks/page-image.ts close), the earliest moment it can fold
 *   everything the snapshot had to leave in the WAL;
 * - when the WAL file passes `WAL_CHECKPOINT_BYTES`, here, whatever the store does: with the store
 *   down no snapshot runs, and without this the WAL would grow without limit.
 *
 * The same bound is the connection's `journal_size_limit`: the first commit after a complete
 * checkpoint restarts the WAL and truncates the file to it, so a burst does not leave a large file
 * behind, and "file larger than the bound" means "frames written since the WAL last restarted".
 */

/**
 * 64 MiB: 16k frames of 4 KiB pages. Far above SQLite's 4 MiB default, so the worker (a thread start,
 * a connection, a fsync) runs at most once per 64 MiB written, not every few hundred commits; small
 * enough that reads (which search the WAL index, growing with its frames) and a crash recovery stay
 * cheap, and the disk holds at most ~10% more than the database at 1M rows (607 MiB).
 */
export const WAL_CHECKPOINT_BYTES = 64 * 1024 * 1024;
/** The WAL's size is looked at (an async stat) at most this often, and only after a commit. */
export const WAL_CHECK_INTERVAL_MS = 100;
/** After a failed checkpoint: the first retry delay (doubling up to the max). */
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 60_000;
/** After a checkpoint that could not fold every frame (a reader, e.g. a snapshot, still needs them): look again this much later. */
const PARTIAL_RETRY_MS = 1_000;

/**
 * Per-connection settings of the writer's connections (run on each one). `synchronousPragma` is the
 * `synchronous` option's `PRAGMA synchronous=...`.
 */
export function writerConnectionSetup(synchronousPragma: string, walBoundBytes = WAL_CHECKPOINT_BYTES): string {
  return `${synchronousPragma}; PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=${walBoundBytes}`;
}

// ---- decisions (pure) ----

export interface WalCheckState {
  /** A stat or a checkpoint is in flight (at most one at a time). */
  busy: boolean;
  stopped: boolean;
  /** Commits since the last check began (only commits grow the WAL). */
  committedSinceCheck: boolean;
  lastCheckAt: number;
  /** No check before this time (after a failed or partial checkpoint). */
  retryAt: number;
  minIntervalMs: number;
}

/**
 * When the next look at the WAL's size may run: null when there is nothing to look at (no commit
 * since the last check), a check is in flight (it is looked at again when it settles) or we stopped.
 * Otherwise the earliest time: one check per interval, none before a retry time. The caller runs it
 * at once if that time has come, else arms one timer, so the last commit of a burst is always looked
 * at, even if no other commit follows.
 */
export function walCheckAt(s: WalCheckState): number | null {
  if (s.busy || s.stopped || !s.committedSinceCheck) return null;
  return Math.max(s.lastCheckAt + s.minIntervalMs, s.retryAt);
}

/** The WAL file's size says whether to checkpoint. */
export function walNeedsCheckpoint(walBytes: number, boundBytes: number): boolean {
  return walBytes > boundBytes;
}

export type CheckpointOutcome = 'complete' | 'partial' | 'failed';

export function checkpointOutcome(reply: { busy: boolean; walFrames: number; checkpointedFrames: number } | Error): CheckpointOutcome {
  if (reply instanceof Error) return 'failed';
  return !reply.busy && reply.checkpointedFrames >= reply.walFrames ? 'complete' : 'partial';
}

/** When the next check may run after a checkpoint with this outcome (`failuresInARow` counts this one). */
export function nextCheckAt(outcome: CheckpointOutcome, now: number, failuresInARow: number): number {
  if (outcome === 'complete') return 0;
  if (outcome === 'partial') return now + PARTIAL_RETRY_MS;
  return now + Math.min(RETRY_BASE_MS * 2 ** Math.max(0, failuresInARow - 1), RETRY_MAX_MS);
}

// ---- the edge (I/O) ----

export interface CheckpointerOptions {
  dbPath: string;
  log: SyncLogger;
  /** Default WAL_CHECKPOINT_BYTES; must match the connections' journal_size_limit (writerConnectionSetup). */
  boundBytes?: number;
  /** Default WAL_CHECK_INTERVAL_MS. */
  minCheckIntervalMs?: number;
  /** Default: the 'checkpoint' op in a worker thread. */
  checkpoint?: (dbPath: string) => Promise<CheckpointReply>;
}

/** Owns the bound checkpoints of one database: told of commits, it checks the WAL's size and folds it in a worker. */
export class Checkpointer {
  readonly #dbPath: string;
  readonly #log: SyncLogger;
  readonly #boundBytes: number;
  readonly #minIntervalMs: number;
  readonly #checkpoint: (dbPath: string) => Promise<CheckpointReply>;
  #inFlight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #committedSinceCheck = false;
  #lastCheckAt = Number.NEGATIVE_INFINITY;
  #retryAt = 0;
  #failuresInARow = 0;
  /** Checkpoints this instance ran (any outcome); for tests and logs. */
  checkpoints = 0;

  constructor(options: CheckpointerOptions) {
    this.#dbPath = options.dbPath;
    this.#log = options.log;
    this.#boundBytes = options.boundBytes ?? WAL_CHECKPOINT_BYTES;
    this.#minIntervalMs = options.minCheckIntervalMs ?? WAL_CHECK_INTERVAL_MS;
    this.#checkpoint = options.checkpoint ?? ((dbPath) => runInWorker({ op: 'checkpoint', dbPath }) as unknown as Promise<CheckpointReply>);
  }

  /** After each commit: a comparison unless a check is due; never waits, never throws. */
  noteCommit(now = Date.now()): void {
    this.#committedSinceCheck = true;
    this.#schedule(now);
  }

  /** Resolves once no check or checkpoint is in flight (a timer armed for a later check does not count). */
  async idle(): Promise<void> {
    while (this.#inFlight) await this.#inFlight;
  }

  /** No checks from now on; resolves once the one in flight (if any) has settled. Before the connection closes. */
  stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    return this.idle();
  }

  #schedule(now: number): void {
    if (this.#timer) return; // already armed for the earliest allowed time
    const at = walCheckAt({
      busy: this.#inFlight !== undefined,
      stopped: this.#stopped,
      committedSinceCheck: this.#committedSinceCheck,
      lastCheckAt: this.#lastCheckAt,
      retryAt: this.#retryAt,
      minIntervalMs: this.#minIntervalMs,
    });
    if (at === null) return;
    if (at > now) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#schedule(Date.now());
      }, at - now);
      this.#timer.unref(); // never keeps the process alive
      return;
    }
    this.#lastCheckAt = now;
    this.#committedSinceCheck = false;
    this.#inFlight = this.#check()
      .catch((error: unknown) => this.#log.warn({ error: errorMessage(error) }, 'WAL check failed, will look again after later commits'))
      .finally(() => {
        this.#inFlight = undefined;
        this.#schedule(Date.now()); // commits that arrived meanwhile are looked at now (or when allowed)
      });
  }

  async #check(): Promise<void> {
    const walBytes = await stat(`${this.#dbPath}-wal`).then(
      (s) => s.size,
      () => 0, // no WAL file (yet): nothing to fold
    );
    if (this.#stopped || !walNeedsCheckpoint(walBytes, this.#boundBytes)) return;
    this.checkpoints++;
    const reply = await this.#checkpoint(this.#dbPath).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
    const outcome = checkpointOutcome(reply);
    this.#failuresInARow = outcome === 'failed' ? this.#failuresInARow + 1 : 0;
    this.#retryAt = nextCheckAt(outcome, Date.now(), this.#failuresInARow);
    if (reply instanceof Error) {
      this.#log.warn({ walBytes, retryInMs: this.#retryAt - Date.now(), error: errorMessage(reply) }, 'WAL checkpoint failed, will retry after later commits');
    } else {
      this.#log.info(
        { walBytes, walFrames: reply.walFrames, checkpointedFrames: reply.checkpointedFrames, busy: reply.busy, durationMs: Math.round(reply.durationMs), outcome },
        'WAL checkpointed (the WAL passed its bound)',
      );
    }
  }
}
