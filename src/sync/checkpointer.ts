import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { endianness } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { SyncError, errorMessage } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { WriteLock } from '../client/write-lock.ts';
import { spawnWorker } from './run-in-worker.ts';
import type { ChangedPages, ScanResult } from './wal/changed-pages.ts';
import { ABANDONED, BUSY, CHANGES, CHECKPOINTED_FRAMES, DONE, FAILED, HELD, READY, SHARED_INTS, STATE, WAL_FRAMES, readJournal, releaseHeldWrites, walTurnFree, writeSecondPassCursor, type JournalPosition } from './wal/checkpoint-journal.ts';
import type { FromWorker, ToWorker, WorkerReply, WorkerRequest } from './worker-protocol.ts';
import { FRAME_HEADER_BYTES, parseWalIndexHeader } from './wal/wal-format.ts';

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
 * - when the WAL holds more than `WAL_CHECKPOINT_BYTES` not yet folded, here, whatever the store
 *   does: with the store down no snapshot runs, and without this the WAL would grow without limit.
 *
 * After a complete checkpoint the next commit restarts the WAL from the start of its file, and cuts
 * the file back to the bound (journal_size_limit) if a burst grew it past that.
 */

/**
 * Fold the WAL once it holds this much not yet folded: 4 MiB (1000 frames of 4 KiB), SQLite's own
 * automatic checkpoint mark. Plain libSQL restarts its WAL after every such checkpoint, so its commits
 * overwrite blocks the WAL file already has; a WAL that is never folded is extended by every commit
 * instead, and its index grows, which made our insert/update p50 1.12-1.18x plain's (a 64 MiB bound
 * restarted it about never). A checkpoint here costs a message to a worker that stays up (not a boot).
 */
export const WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024;
/**
 * The WAL file's size limit (journal_size_limit): when the WAL restarts, SQLite cuts its file back to
 * this. Well above the checkpoint bound, so a WAL that restarts after every checkpoint keeps its file
 * (commits overwrite it instead of extending it), while a burst or a store outage never leaves more
 * than this much on disk once the WAL restarts: ~10% above the database at 1M rows (607 MiB).
 */
export const WAL_FILE_LIMIT_BYTES = 64 * 1024 * 1024;
/** The WAL is looked at (its index header in -shm, read synchronously, or the file size) at most this often, and only after a commit. */
export const WAL_CHECK_INTERVAL_MS = 25;
/** After a failed checkpoint: the first retry delay (doubling up to the max). */
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 60_000;
/** After a checkpoint that could not fold every frame (a reader, e.g. a snapshot, still needs them): look again this much later. */
const PARTIAL_RETRY_MS = 1_000;

/**
 * How long a write on the app's connection waits for SQLite's WAL write lock before SQLITE_BUSY. The
 * app's writes never meet each other (the write lock queues them), but a connection of ours that reads
 * the WAL index header while a commit rewrites it (a pinned scan, a checkpoint, a snapshot's read) finds
 * its two copies unequal and takes the WAL write lock for a moment to read it again (SQLite's
 * walIndexReadHdr); a commit that began in that moment failed with SQLITE_BUSY under libSQL's default
 * of 0 (measured: 1 in ~200k back-to-back commits beside pinned scans; once in CI).
 * SQLite's busy handler sleeps 1, 2, 5, 10... ms on the app's thread, so the wait is short; the cap
 * bounds how long a foreign writer (another process's write transaction) can stall the event loop.
 */
export const WRITER_BUSY_WAIT_MS = 250;

/**
 * Per-connection settings of the writer's connections (run on each one). `synchronousPragma` is the
 * `synchronous` option's `PRAGMA synchronous=...`.
 */
export function writerConnectionSetup(synchronousPragma: string, walFileLimitBytes = WAL_FILE_LIMIT_BYTES): string {
  return `${synchronousPragma}; PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=${walFileLimitBytes}; PRAGMA busy_timeout=${WRITER_BUSY_WAIT_MS}`;
}

// ---- decisions (pure) ----

export interface WalCheckState {
  /** A checkpoint is in flight (at most one at a time). */
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

/** Whether the WAL's frames not yet folded into the file call for a checkpoint. */
export function walNeedsCheckpoint(pendingBytes: number, boundBytes: number): boolean {
  return pendingBytes > boundBytes;
}

/**
 * 16 times the WAL file's size limit (1 GiB by default): a safety valve, not a routine. The held pass ends with the
 * checkpoint's fsync and writes wait for it: in the 1M-row snapshot bench (whose writer never pauses,
 * so its WAL never restarts) holds at 2x and 8x the bound made one write wait 175-320 ms under load,
 * against a longest gap of 31-74 ms without. A writer that pauses lets the WAL restart after any
 * complete checkpoint (the snapshot's included); only a writer that never pauses gets here.
 */
export const HOLD_WRITES_FACTOR = 16;

/**
 * The routine hold: a checkpoint that starts with at most this many times the bound unfolded may hold
 * the app's writes for its second pass, so the WAL restarts as plain libSQL's does after each of its
 * automatic checkpoints (a PASSIVE pass beside a steady writer never catches up with the last commit,
 * and a WAL that never restarts is extended by every commit). Only after a small first pass: the
 * second folds what was appended during the first (a few dozen frames) and the writes wait for that
 * alone. A larger backlog (after a snapshot, whose reader held frames back) gets a plain pass first.
 */
export const HOLD_PENDING_FACTOR = 2;

/**
 * The longest the app's writes are held for a second pass. Its fsyncs can take 100-200 ms on a busy
 * disk (a 1M-row snapshot uploading beside it); past this the writes go on and only this restart is lost.
 */
export const HOLD_MAX_MS = 15;
/**
 * The most a routine hold grows to (see nextHoldCapMs). A second pass costs its fsyncs, and under a steady
 * writer on a slower disk those alone took 15-23 ms (measured 2026-12-02: every held pass ran into the
 * 15 ms cap, so the WAL restarted about once in 5 checkpoints and a cycle reached 212 MiB).
 */
export const HOLD_ESCALATED_MAX_MS = 120;
/** Past the safety valve (HOLD_WRITES_FACTOR): a WAL file this large must restart, and a one-off wait is the cheaper cost. */
export const SAFETY_HOLD_MAX_MS = 1_000;

/**
 * How long the next held pass may hold the app's writes, learnt from the last one: twice what it took
 * (within HOLD_MAX_MS..HOLD_ESCALATED_MAX_MS), or double its cap if it ran into it (the writes went on,
 * so the WAL could not restart). A writer on a disk whose passes take longer than a fixed cap would
 * never restart its WAL, which then grows by every commit until the safety valve.
 */
export function nextHoldCapMs(cap: number, last: { heldMs: number; capped: boolean }): number {
  const next = last.capped ? cap * 2 : last.heldMs * 2;
  return Math.min(Math.max(next, HOLD_MAX_MS), HOLD_ESCALATED_MAX_MS);
}

/** The WAL file is past the safety valve: held whatever is pending, and for up to SAFETY_HOLD_MAX_MS. */
export function pastSafetyValve(fileBytes: number, fileLimitBytes: number): boolean {
  return fileBytes > HOLD_WRITES_FACTOR * fileLimitBytes;
}

export interface WalShape {
  /** Frames not yet folded, in bytes. */
  pendingBytes: number;
  /** The WAL file's size. */
  fileBytes: number;
  boundBytes: number;
  /** The WAL file's size limit (journal_size_limit), which a restart cuts it back to. */
  fileLimitBytes: number;
  /** The app's write lock can be taken (the writer's client is there). */
  canHoldWrites: boolean;
  /** The last checkpoint held the app's writes and ran into its cap (nextHoldCapMs): the WAL did not restart. */
  lastHoldCapped?: boolean;
}

/**
 * 'passive': a PASSIVE checkpoint beside the writer. 'hold-writes': the same, and if it caught up
 * with every frame it saw, a second short pass with the app's writes held in their queue (not
 * blocked: the event loop runs) for the frames they appended meanwhile. A WAL restarts from the start
 * of its file only after a checkpoint that caught up with every frame, which a checkpoint beside a
 * writer that never pauses (a bulk import) never does: its file then grows without limit although
 * nearly all of it is folded. So past HOLD_WRITES_FACTOR times the file's size limit, the second
 * pass lets the next commit restart it (and cut the file back to its limit). A reader holding frames back (a
 * snapshot) makes the first pass fall short, and writes are not held then: it would not help until
 * the reader ends.
 */
export function checkpointKind(w: WalShape): 'none' | 'passive' | 'hold-writes' {
  if (w.canHoldWrites && pastSafetyValve(w.fileBytes, w.fileLimitBytes)) return 'hold-writes';
  // The last held pass ran into its cap: try again now (with a longer cap), not after another bound's worth.
  if (w.canHoldWrites && w.lastHoldCapped && w.pendingBytes > 0) return 'hold-writes';
  if (!walNeedsCheckpoint(w.pendingBytes, w.boundBytes)) return 'none';
  return w.canHoldWrites && w.pendingBytes <= HOLD_PENDING_FACTOR * w.boundBytes ? 'hold-writes' : 'passive';
}

/**
 * Bytes of WAL frames not yet folded into the database, from the WAL index header (the -shm file;
 * layout: https://www.sqlite.org/walformat.html, section 2.1): mxFrame (offset 16) frames in the WAL,
 * nBackfill (offset 96) of them folded, page size at offset 14, native byte order. Null when the
 * header cannot be read consistently (no -shm file, or a writer was updating it: its two copies
 * differ); the caller then uses the WAL file's size.
 */
export function pendingWalBytes(header: Buffer, littleEndian: boolean): number | null {
  const state = parseWalIndexHeader(header, littleEndian);
  if (typeof state === 'string') return null; // torn, or not initialised yet: the caller falls back to the WAL file's size
  return Math.max(0, state.mxFrame - state.nBackfill) * (state.pageSize + FRAME_HEADER_BYTES);
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
  /** Default WAL_CHECKPOINT_BYTES. */
  boundBytes?: number;
  /** The journal_size_limit the writer's connections run with (writerConnectionSetup); default WAL_FILE_LIMIT_BYTES. */
  fileLimitBytes?: number;
  /** Default WAL_CHECK_INTERVAL_MS. */
  minCheckIntervalMs?: number;
  /** The app's write lock, once there is a client (see checkpointKind 'hold-writes'). */
  writeLock?: () => WriteLock | undefined;
}

/**
 * A checkpoint's progress is shared with the worker (wal/checkpoint-journal.ts): its state (running,
 * done, failed, the 'hold-writes' handshake), numbers and, with a page record, the journal of its scans
 * and folds. Read synchronously on a commit, because an app writing in a tight loop of settled promises
 * (a bulk import, bench/) starves timers, I/O callbacks and the worker's reply message alike; the WAL
 * index header is read synchronously for the same reason.
 */
interface InFlight {
  shared: Int32Array;
  reply: Promise<unknown>;
  pendingBytes: number;
  kind: 'passive' | 'hold-writes';
  holdAsked: boolean;
  /** The longest the app's writes may be held (nextHoldCapMs, or SAFETY_HOLD_MAX_MS past the safety valve). */
  holdCapMs: number;
  /** How long the app's writes were held, if they were, and whether the cap ended the hold (the pass was not done). */
  heldMs?: number;
  capped?: boolean;
  /** The page record this checkpoint scans for, its journal, and what of it the record has taken in. */
  record?: { pages: ChangedPages; journal: SharedArrayBuffer; read: JournalPosition; scans: ScanResult[]; folds: number };
}

/** Room for a checkpoint's journal (scans are JSON of [pgno, frame] pairs): ~60k pages; more marks the record lost. */
const JOURNAL_BYTES = 1 << 20;

/**
 * Owns the bound checkpoints of one database: told of each commit, it looks at the WAL index at most
 * once per interval (a 136-byte read) and folds the WAL in a worker when it holds too much.
 */
export class Checkpointer {
  readonly #dbPath: string;
  readonly #log: SyncLogger;
  readonly #boundBytes: number;
  readonly #fileLimitBytes: number;
  readonly #minIntervalMs: number;
  #inFlight: InFlight | undefined;
  /**
   * The last checkpoint's reply, handled (its WAL restart counted and logged). The state in shared
   * memory says DONE before the reply message arrives, so a checkpoint is settled first; idle() also
   * waits for this, so what a caller reads after it (walRestarts) includes that checkpoint.
   */
  #replyHandled: Promise<void> = Promise.resolve();
  /** Why the in-flight checkpoint's worker failed, once its reply says so. */
  #failure: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer is due (commits before then need no look of their own). */
  #timerDueAt = 0;
  #stopped = false;
  #committedSinceCheck = false;
  #warmed = false;
  #lastCheckAt = Number.NEGATIVE_INFINITY;
  #retryAt = 0;
  #failuresInARow = 0;
  /** The next held pass's cap, and whether the last one ran into its own (nextHoldCapMs). */
  #holdCap = HOLD_MAX_MS;
  #lastHoldCapped = false;
  /** The -shm file, kept open until closeFiles() (undefined: not opened yet; null: closed for good). */
  #shm: number | null | undefined;
  readonly #header = Buffer.alloc(136);
  readonly #writeLock: () => WriteLock | undefined;
  /** Checkpoints this instance started (any outcome), and how many of them held writes; for tests and logs. */
  checkpoints = 0;
  heldWrites = 0;
  /** Times the worker started the WAL over after a held pass (wal/wal-restart.ts); for tests and logs. */
  walRestarts = 0;
  /**
   * The page record (src/sync/wal), once a snapshot started one (incremental mode): from then on every
   * checkpoint reads the frames past its cursor first and folds only under a pin, and feeds it.
   */
  record: ChangedPages | undefined;
  /** Pauses in force (a snapshot reading the WAL for the record): no checkpoint starts meanwhile. */
  #paused = 0;
  #journal: SharedArrayBuffer | undefined;
  /** Worker threads this instance started (one, unless a worker crashed); for tests. */
  get workerStarts(): number {
    return this.#worker.starts;
  }
  /** Its own worker, not the pool's (a writer that never yields must still get checkpoints), kept between checkpoints. */
  readonly #worker = new CheckpointWorker();

  constructor(options: CheckpointerOptions) {
    this.#dbPath = options.dbPath;
    this.#log = options.log;
    this.#boundBytes = options.boundBytes ?? WAL_CHECKPOINT_BYTES;
    this.#fileLimitBytes = options.fileLimitBytes ?? WAL_FILE_LIMIT_BYTES;
    this.#minIntervalMs = options.minCheckIntervalMs ?? WAL_CHECK_INTERVAL_MS;
    this.#writeLock = options.writeLock ?? (() => undefined);
  }

  /** After each commit: a comparison unless a check is due (then a few µs); never waits, never throws. */
  noteCommit(now = Date.now()): void {
    if (!this.#warmed && !this.#stopped) {
      // At the first commit, not at start-up (a cold start pays for no thread it does not need yet):
      // the WAL's first cycle then ends at the bound, not a worker boot (80-140 ms of commits) past it.
      this.#warmed = true;
      this.#worker.warm();
    }
    this.#committedSinceCheck = true;
    // Most commits: a look is already armed for later and no checkpoint is in flight, so there is
    // nothing to decide (with one in flight, its shared state is read on every commit: see #settle).
    if (this.#inFlight === undefined && this.#timer !== undefined && now < this.#timerDueAt) return;
    this.#schedule(now);
  }

  /**
   * No checkpoint starts until resume(), and no held second pass: resolves once the one in flight (if
   * any) has its scan in the record, while its fold may still run (walTurnFree). A snapshot that reads
   * the WAL for the record runs between the two, so the record's scans never overlap. A scan of the
   * WAL's next generation taken meanwhile waits for folded() before it goes into the record.
   */
  async pause(): Promise<void> {
    this.#paused++;
    await this.#until(() => this.#walTurnFree());
  }

  resume(): void {
    if (this.#paused === 0) return;
    this.#paused--;
    if (this.#paused === 0 && !this.#stopped) this.#schedule(Date.now()); // commits made meanwhile are looked at now
  }

  /** Resolves once no checkpoint is in flight (a timer armed for a later check does not count). */
  async idle(): Promise<void> {
    await this.#until(() => this.#inFlight === undefined);
    await this.#replyHandled;
  }

  /** Resolves once every fold of the checkpoint in flight whose scan is in the record has its outcome there too. */
  async folded(): Promise<void> {
    await this.#until(() => this.#inFlight?.record === undefined || this.#inFlight.record.folds >= this.#inFlight.record.scans.length);
  }

  #walTurnFree(): boolean {
    const inFlight = this.#inFlight;
    if (!inFlight) return true;
    // Without a record its fold is not bounded by what was read: it may let the WAL restart under a scan.
    if (!inFlight.record) return false;
    return walTurnFree(Atomics.load(inFlight.shared, STATE), inFlight.record.scans.length);
  }

  /**
   * Settled before every wait and woken by the reply or by any change the worker makes: a checkpoint
   * that asks for the app's writes to be held (READY) is answered here too, not only on the next commit
   * (a snapshot that pauses the checkpointer waits here while no commit comes, and the worker would
   * wait out its second: 100k-row incremental flushes took 1.2 s instead of 0.2 s).
   */
  async #until(done: () => boolean): Promise<void> {
    for (;;) {
      const before = this.#inFlight;
      const seen = before ? Atomics.load(before.shared, CHANGES) : 0; // before looking: a change after it ends the wait
      this.#settle(Date.now());
      if (done()) return;
      const inFlight = this.#inFlight;
      if (!inFlight || inFlight !== before) continue;
      const changed = waitAsync(inFlight.shared, CHANGES, seen);
      await Promise.race([inFlight.reply, changed.async ? changed.value : Promise.resolve()]);
    }
  }

  /** No checks from now on; resolves once the checkpoint in flight (if any) has settled. Before the connections close. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const shared = this.#inFlight?.shared;
    if (shared && Atomics.compareExchange(shared, STATE, READY, ABANDONED) === READY) Atomics.notify(shared, STATE); // no hold now
    await this.idle();
    await this.#worker.terminate();
  }

  /**
   * Closes the -shm descriptor: only after the app's connections have closed. Closing any descriptor
   * of a file drops every POSIX lock this process holds on it, SQLite's shared-memory locks included;
   * while SQLite holds them another process (the CLI, a tool) could then treat the WAL index as stale.
   */
  closeFiles(): void {
    if (typeof this.#shm === 'number') closeSync(this.#shm);
    this.#shm = null;
  }

  #schedule(now: number): void {
    try {
      this.#settle(now);
      if (this.#paused > 0) return; // resume() looks again
      const at = walCheckAt({
        busy: this.#inFlight !== undefined,
        stopped: this.#stopped,
        committedSinceCheck: this.#committedSinceCheck,
        lastCheckAt: this.#lastCheckAt,
        retryAt: this.#retryAt,
        minIntervalMs: this.#minIntervalMs,
      });
      if (at === null) return;
      if (at > now) return this.#armTimer(at - now);
      this.#lastCheckAt = now;
      this.#committedSinceCheck = false;
      const pendingBytes = this.#pendingBytes();
      const fileBytes = walFileBytes(this.#dbPath);
      const kind = checkpointKind({ pendingBytes, fileBytes, boundBytes: this.#boundBytes, fileLimitBytes: this.#fileLimitBytes, canHoldWrites: this.#writeLock() !== undefined, lastHoldCapped: this.#lastHoldCapped });
      if (kind !== 'none') this.#start(pendingBytes, kind, pastSafetyValve(fileBytes, this.#fileLimitBytes) ? SAFETY_HOLD_MAX_MS : this.#holdCap);
    } catch (error) {
      this.#log.warn({ error: errorMessage(error) }, 'WAL check failed, will look again after later commits');
    }
  }

  /** The last commit of a burst is looked at even if no other commit follows (when the loop is free again). */
  #armTimer(delayMs: number): void {
    if (this.#timer) return;
    this.#timerDueAt = Date.now() + delayMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#schedule(Date.now());
    }, delayMs);
    this.#timer.unref(); // never keeps the process alive
  }

  #start(pendingBytes: number, kind: 'passive' | 'hold-writes', holdCap: number): void {
    const shared = new Int32Array(new SharedArrayBuffer(SHARED_INTS * 4));
    this.checkpoints++;
    const pages = this.record;
    // One journal buffer, reused: a checkpoint starts only once the last one settled and its entries were read.
    const record = pages ? { pages, journal: (this.#journal ??= new SharedArrayBuffer(JOURNAL_BYTES)), read: { offset: 0, read: 0 }, scans: [], folds: 0 } : undefined;
    // writerSetup: the settings a WAL restart in the worker runs with (wal/wal-restart.ts), synchronous
    // NORMAL: SQLite syncs the new WAL header at it as at FULL.
    const request = { op: 'checkpoint', dbPath: this.#dbPath, shared: shared.buffer as SharedArrayBuffer, holdWrites: kind === 'hold-writes', writerSetup: writerConnectionSetup('PRAGMA synchronous=NORMAL', this.#fileLimitBytes) } as const;
    const reply = this.#worker.run(record ? { ...request, record: { cursor: { ...record.pages.cursor }, scans: record.journal } } : request).catch((error: unknown) => {
      // The worker never started or crashed before writing its state: record the failure where #settle looks.
      Atomics.store(shared, STATE, FAILED);
      Atomics.add(shared, CHANGES, 1);
      this.#failure = errorMessage(error);
    });
    this.#inFlight = { shared, reply, pendingBytes, kind, holdCapMs: holdCap, holdAsked: false, ...(record ? { record } : {}) };
    // When the loop is free, the reply settles it without waiting for the next commit.
    this.#replyHandled = reply.then((result) => {
      const restart = result && 'restart' in result ? result.restart : undefined;
      if (restart === 'restarted') this.walRestarts++;
      else if (typeof restart === 'object') this.#log.warn({ error: restart.failed }, "the checkpoint's worker could not start the WAL over; the app's next commit does (its fsync on the app's thread)");
      this.#schedule(Date.now());
    });
  }

  /**
   * The worker's first pass caught up and it waits (HOLD_WAIT_MS at most) for the app's writes to be
   * held: take the write lock (writes queue behind it), say so, and give it back once the worker is done.
   */
  #holdWrites(inFlight: InFlight): void {
    const { shared } = inFlight;
    const lock = this.#stopped ? undefined : this.#writeLock();
    if (!lock) {
      if (Atomics.compareExchange(shared, STATE, READY, ABANDONED) === READY) Atomics.notify(shared, STATE);
      return;
    }
    void lock.acquire().then((release) => {
      if (this.#paused > 0 && Atomics.load(shared, STATE) === READY) {
        // A snapshot took its turn at the WAL meanwhile: the second pass must not scan beside it. Asked again at resume().
        inFlight.holdAsked = false;
        return release();
      }
      // The second pass scans from where the record is now (a delta may have read past the first scan).
      this.#absorb(inFlight);
      if (inFlight.record) writeSecondPassCursor(shared, inFlight.record.pages.cursor);
      if (Atomics.compareExchange(shared, STATE, READY, HELD) !== READY) return release(); // the worker stopped waiting
      Atomics.notify(shared, STATE);
      this.heldWrites++;
      const heldAt = performance.now();
      // Until the worker writes DONE (or the reply says it failed), its cap at most (nextHoldCapMs): the
      // second pass is a PASSIVE checkpoint, safe beside writes, so letting them go early only costs this restart.
      const done = waitAsync(shared, STATE, HELD);
      let timer: NodeJS.Timeout | undefined;
      const cap = new Promise<'capped'>((resolve) => (timer = setTimeout(() => resolve('capped'), inFlight.holdCapMs)));
      const settled = Promise.race([done.async ? done.value : Promise.resolve(), inFlight.reply]);
      void Promise.race([settled, cap]).then(async (how) => {
        clearTimeout(timer);
        // A restart of the WAL under way (the pass folded everything) has the writes wait for it: a
        // write beside it would wait in SQLite's busy handler, on this thread. Its fsync is what the
        // app's next commit would have done here otherwise (wal/wal-restart.ts).
        if (how === 'capped' && releaseHeldWrites(shared) === 'restarting') await settled;
        inFlight.heldMs = performance.now() - heldAt;
        inFlight.capped = how === 'capped';
        release();
      });
    });
  }

  /** A finished checkpoint (as the worker wrote it into shared memory): log it, decide when to look again. */
  #settle(now: number): void {
    const inFlight = this.#inFlight;
    if (!inFlight) return;
    const state = Atomics.load(inFlight.shared, STATE);
    this.#absorb(inFlight); // after the state: a final state comes after every entry
    if (state === READY && !inFlight.holdAsked && this.#paused === 0) {
      inFlight.holdAsked = true;
      this.#holdWrites(inFlight);
    }
    if (state !== DONE && state !== FAILED) return;
    this.#inFlight = undefined;
    if (inFlight.record && state === FAILED) inFlight.record.pages.markLost(`a checkpoint failed while it scanned or folded the WAL (${this.#failure ?? 'the worker failed'})`);
    const result =
      state === DONE
        ? { busy: inFlight.shared[BUSY] !== 0, walFrames: inFlight.shared[WAL_FRAMES]!, checkpointedFrames: inFlight.shared[CHECKPOINTED_FRAMES]! }
        : new Error(this.#failure ?? 'the checkpoint worker failed');
    this.#failure = undefined;
    const outcome = checkpointOutcome(result);
    this.#failuresInARow = outcome === 'failed' ? this.#failuresInARow + 1 : 0;
    this.#retryAt = nextCheckAt(outcome, now, this.#failuresInARow);
    this.#lastHoldCapped = inFlight.capped === true;
    if (inFlight.heldMs !== undefined) this.#holdCap = nextHoldCapMs(this.#holdCap, { heldMs: inFlight.heldMs, capped: inFlight.capped === true });
    // A held pass whose WAL still cannot restart (a reader on an old frame): not again at once.
    if (inFlight.kind === 'hold-writes' && outcome !== 'complete') this.#retryAt = Math.max(this.#retryAt, now + PARTIAL_RETRY_MS);
    if (result instanceof Error) {
      this.#log.warn({ pendingBytes: inFlight.pendingBytes, retryInMs: this.#retryAt - now, error: result.message }, 'WAL checkpoint failed, will retry after later commits');
    } else {
      this.#log.info({ pendingBytes: inFlight.pendingBytes, kind: inFlight.kind, ...result, outcome, ...(inFlight.heldMs === undefined ? {} : { heldMs: Math.round(inFlight.heldMs * 10) / 10, holdCapMs: Math.round(inFlight.holdCapMs), capped: inFlight.capped }) }, 'WAL checkpointed (it held more than its bound)');
    }
  }

  /** The journal's new entries into the record, in order: each scan as it was taken, each fold's outcome after its scan. */
  #absorb(inFlight: InFlight): void {
    const record = inFlight.record;
    if (!record) return;
    for (const entry of readJournal(inFlight.shared, record.journal, record.read)) {
      if ('scan' in entry) {
        record.pages.apply(entry.scan);
        record.scans.push(entry.scan);
      } else {
        const scan = record.scans[record.folds++];
        if (scan) record.pages.noteFolded(scan, entry.folded);
      }
    }
  }

  /** What the WAL holds unfolded (its index header), else the WAL file's size (an upper bound). Synchronous: see RUNNING. */
  #pendingBytes(): number {
    if (this.#shm === undefined) {
      try {
        this.#shm = openSync(`${this.#dbPath}-shm`, 'r'); // kept open: see closeFiles
      } catch {
        // Not there yet (or unreadable): the WAL file's size this time, another try at the next check.
      }
    }
    if (typeof this.#shm === 'number') {
      const read = readSync(this.#shm, this.#header, 0, this.#header.length, 0);
      const pending = pendingWalBytes(this.#header.subarray(0, read), LITTLE_ENDIAN);
      if (pending !== null) return pending;
    }
    return walFileBytes(this.#dbPath);
  }
}

/**
 * The checkpointer's own file worker, started on its first checkpoint and kept for the next ones: at
 * the 4 MiB bound a steady writer checkpoints several times a second, and a boot costs 50-140 ms of a
 * core. Not the pool's: a pooled worker gets its next job only when the main thread processes the
 * previous reply, which a writer that never yields never lets happen; a request posted here reaches
 * the worker at once. The worker itself is never referenced; while a request is outstanding a
 * referenced timer keeps the process alive instead (a reused worker with ref()/unref() around its
 * requests let the event loop empty while a held write waited, 1 run in 3: commit 9806732).
 */
class CheckpointWorker {
  #worker: Worker | undefined;
  readonly #pending = new Map<number, { resolve: (reply: WorkerReply & { ok: true }) => void; reject: (error: Error) => void }>();
  #keepAlive: NodeJS.Timeout | undefined;
  #nextId = 1;
  /** Workers started, for tests. */
  starts = 0;

  /** Starts the worker if it is not running, so the first checkpoint does not wait for its boot. */
  warm(): void {
    this.#worker ??= this.#start();
  }

  run(request: WorkerRequest): Promise<WorkerReply & { ok: true }> {
    const worker = (this.#worker ??= this.#start());
    const id = this.#nextId++;
    const reply = new Promise<WorkerReply & { ok: true }>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    this.#keepAlive ??= setInterval(() => undefined, 1 << 30);
    worker.postMessage({ id, request } satisfies ToWorker);
    return reply;
  }

  /** Ends the worker; a request still outstanding rejects. */
  async terminate(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    this.#failAll(new SyncError('SNAPSHOT_FAILED', 'The checkpoint worker was stopped.'));
    if (!worker) return;
    // The worker is never referenced: without a referenced handle the event loop could empty before
    // its exit, leaving whoever awaits this (close()) pending forever.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    try {
      await worker.terminate();
    } finally {
      clearInterval(keepAlive);
    }
  }

  #start(): Worker {
    const worker = spawnWorker();
    this.starts++;
    worker.unref();
    worker.once('online', () => worker.unref()); // an unref() before the worker is online does not stick (see run-in-worker.ts)
    worker.on('message', (message: FromWorker) => {
      if (!('reply' in message)) return;
      const job = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      this.#releaseKeepAlive();
      if (!job) return;
      if (message.reply.ok) job.resolve(message.reply);
      else job.reject(new SyncError(message.reply.code, message.reply.message));
    });
    const lost = (why: string, cause?: unknown) => {
      if (this.#worker !== worker) return;
      this.#worker = undefined; // the next request starts another
      this.#failAll(new SyncError('SNAPSHOT_FAILED', why, cause === undefined ? {} : { cause }));
    };
    worker.on('error', (error) => lost(`The checkpoint worker crashed: ${error.message}`, error));
    worker.on('exit', (code) => lost(`The checkpoint worker exited with code ${code} before replying.`));
    return worker;
  }

  #failAll(error: Error): void {
    const jobs = [...this.#pending.values()];
    this.#pending.clear();
    this.#releaseKeepAlive();
    for (const job of jobs) job.reject(error);
  }

  #releaseKeepAlive(): void {
    if (this.#pending.size > 0 || !this.#keepAlive) return;
    clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
  }
}

function walFileBytes(dbPath: string): number {
  try {
    return statSync(`${dbPath}-wal`).size;
  } catch {
    return 0; // no WAL file (yet): nothing to fold
  }
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** Atomics.waitAsync (Node 16+; not in TypeScript's ES2022 lib). */
const waitAsync = (Atomics as unknown as { waitAsync(array: Int32Array, index: number, value: number): { async: boolean; value: Promise<string> | string } }).waitAsync.bind(Atomics);
