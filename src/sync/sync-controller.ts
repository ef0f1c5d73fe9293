import { EventEmitter } from 'node:events';
import { SyncError, errorMessage } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { CommitHooks } from '../client/counting-client.ts';
import type { WriteLock } from '../client/write-lock.ts';
import { fingerprint, writeLocalState, type LocalState } from './local-state.ts';
import type { SnapshotEntry } from './manifest.ts';
import { SnapshotScheduler, type SchedulePolicy } from './scheduler.ts';
import type { SnapshotInfo, Snapshotter } from './snapshotter.ts';

export interface SyncStatus {
  /** Committed writes counted since this instance opened. */
  commits: number;
  /** Commits not yet covered by a snapshot durable in the store (1 if the local file started dirty). */
  pendingCommits: number;
  lastSnapshot: { seq: number; at: string; bytes: number; compressedBytes: number; durationMs: number; sha256: string; uploaded: boolean } | null;
  lastError: { code: string; message: string; at: string } | null;
  snapshotsOk: number;
  snapshotsFailed: number;
  restoredFrom: { seq: number; generation: string; createdAt: string; bytes: number; durationMs: number } | null;
  /** `stopped`: a conflict showed another writer owns the store; no more snapshots from this instance. */
  state: 'idle' | 'pending' | 'snapshotting' | 'stopped' | 'closing' | 'closed';
}

export interface SyncEvents {
  snapshot: [SnapshotInfo];
  'snapshot-error': [SyncError];
  restore: [{ seq: number; generation: string; bytes: number; durationMs: number }];
}

export interface SyncHandle {
  flush(): Promise<SnapshotInfo | null>;
  status(): SyncStatus;
  on<E extends keyof SyncEvents>(event: E, listener: (...args: SyncEvents[E]) => void): SyncHandle;
  off<E extends keyof SyncEvents>(event: E, listener: (...args: SyncEvents[E]) => void): SyncHandle;
  once<E extends keyof SyncEvents>(event: E, listener: (...args: SyncEvents[E]) => void): SyncHandle;
  close(): Promise<void>;
}

export interface ControllerOptions {
  dbPath: string;
  schedule: SchedulePolicy;
  /** Backoff between failed snapshot attempts (doubles up to `retryMaxMs`). */
  retryBaseMs: number;
  retryMaxMs: number;
  shutdownTimeoutMs: number;
  signals: boolean;
  log: SyncLogger;
}

interface ClientHandle {
  writeLock: WriteLock;
  /** Checkpoints and closes the real client. */
  close(): Promise<void>;
}

/**
 * Ties commit counting to the schedule, runs one snapshot at a time, and owns flush/close/signals.
 * It knows nothing about Azure: it talks to a Snapshotter.
 */
export class SyncController implements CommitHooks, SyncHandle {
  readonly #o: ControllerOptions;
  readonly #snapshotter: Snapshotter;
  readonly #events = new EventEmitter();
  readonly #scheduler: SnapshotScheduler;
  #client: ClientHandle | undefined;
  #state: LocalState;

  #commits = 0;
  #covered = 0;
  /** The local file held commits the store had not seen when we opened it. */
  #dirtyAtStart: boolean;
  #firstPendingAt = 0;
  #lastCommitAt = 0;
  #running: Promise<SnapshotInfo> | undefined;
  #failuresInARow = 0;
  #stoppedBy: SyncError | undefined;
  #closing: Promise<void> | undefined;
  #closed = false;
  #lastSnapshot: SnapshotInfo | null = null;
  #lastError: SyncStatus['lastError'] = null;
  #ok = 0;
  #failed = 0;
  #restoredFrom: SyncStatus['restoredFrom'] = null;
  readonly #onSignal = (signal: NodeJS.Signals) => this.#handleSignal(signal);

  constructor(options: ControllerOptions, snapshotter: Snapshotter, state: LocalState, dirtyAtStart: boolean) {
    this.#o = options;
    this.#snapshotter = snapshotter;
    this.#state = state;
    this.#dirtyAtStart = dirtyAtStart;
    this.#scheduler = new SnapshotScheduler(options.schedule, () => void this.#runSnapshot().catch(() => undefined));
  }

  /** Called once the client exists; starts the clock for a dirty-at-start file and installs signal handlers. */
  start(client: ClientHandle, restoredFrom: SnapshotEntry | null, restoreMs: number): void {
    this.#client = client;
    if (restoredFrom) {
      this.#restoredFrom = { seq: restoredFrom.seq, generation: restoredFrom.generation, createdAt: restoredFrom.createdAt, bytes: restoredFrom.bytes, durationMs: restoreMs };
    }
    if (this.#dirtyAtStart) {
      const now = Date.now();
      this.#firstPendingAt = now;
      this.#lastCommitAt = now;
      this.#scheduler.schedule(1, now, now);
    }
    if (this.#o.signals) for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, this.#onSignal);
  }

  // ---- CommitHooks ----

  admitWrite(): void {
    // Writes already queued when close() began still run (close waits for them); new ones are refused.
    if (this.#closing) throw new SyncError('CLOSED', 'The database is closing (final snapshot in progress); writes are no longer accepted.');
  }

  beforeWrite(): void {
    if (!this.#state.dirty) {
      // On disk before the write can commit: a crash after it must not look like a clean file.
      this.#state = { ...this.#state, dirty: true, fingerprint: null };
      writeLocalState(this.#o.dbPath, this.#state);
    }
  }

  committed(): void {
    const now = Date.now();
    if (this.#pending() === 0) this.#firstPendingAt = now;
    this.#commits++;
    this.#lastCommitAt = now;
    if (this.#running || this.#stoppedBy || this.#closing) return; // rescheduled when the running snapshot settles
    this.#scheduler.schedule(this.#pending(), this.#firstPendingAt, this.#lastCommitAt, now);
  }

  // ---- SyncHandle ----

  status(): SyncStatus {
    const s = this.#lastSnapshot;
    return {
      commits: this.#commits,
      pendingCommits: this.#pending(),
      lastSnapshot: s && { seq: s.seq, at: s.at, bytes: s.bytes, compressedBytes: s.compressedBytes, durationMs: s.durationMs, sha256: s.sha256, uploaded: s.uploaded },
      lastError: this.#lastError,
      snapshotsOk: this.#ok,
      snapshotsFailed: this.#failed,
      restoredFrom: this.#restoredFrom,
      state: this.#closed
        ? 'closed'
        : this.#closing
          ? 'closing'
          : this.#stoppedBy
            ? 'stopped'
            : this.#running
              ? 'snapshotting'
              : this.#pending() > 0
                ? 'pending'
                : 'idle',
    };
  }

  on<E extends keyof SyncEvents>(event: E, listener: (...args: SyncEvents[E]) => void): this {
    if (event === 'restore') return this.#replayRestore(listener as (e: SyncEvents['restore'][0]) => void);
    this.#events.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<E extends keyof SyncEvents>(event: E, listener: (...args: SyncEvents[E]) => void): this {
    this.#events.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once<E extends keyof SyncEvents>(event: E, listener: (...args: SyncEvents[E]) => void): this {
    if (event === 'restore') return this.#replayRestore(listener as (e: SyncEvents['restore'][0]) => void);
    this.#events.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  /**
   * A restore happens once, at start, before the caller can subscribe: a 'restore' listener is
   * replayed it (asynchronously) if there was one.
   */
  #replayRestore(listener: (event: SyncEvents['restore'][0]) => void): this {
    const r = this.#restoredFrom;
    if (r) queueMicrotask(() => listener({ seq: r.seq, generation: r.generation, bytes: r.bytes, durationMs: r.durationMs }));
    return this;
  }

  /** Snapshots now if anything is pending; resolves once every commit made before the call is durable in the store. */
  async flush(): Promise<SnapshotInfo | null> {
    if (this.#closed) throw new SyncError('CLOSED', 'flush() after close(): the database is closed.');
    const target = this.#commits;
    if (this.#covered >= target && !this.#dirtyAtStart) return null;
    for (;;) {
      if (this.#stoppedBy) throw this.#stoppedBy;
      if (this.#running) {
        const info = await this.#running.catch(() => undefined);
        if (info && this.#covered >= target && !this.#dirtyAtStart) return info;
        continue;
      }
      if (this.#covered >= target && !this.#dirtyAtStart) return this.#lastSnapshot;
      await this.#runSnapshot();
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  // ---- internals ----

  #pending(): number {
    return this.#commits - this.#covered + (this.#dirtyAtStart ? 1 : 0);
  }

  #runSnapshot(): Promise<SnapshotInfo> {
    if (this.#running) return this.#running;
    if (this.#stoppedBy) return Promise.reject(this.#stoppedBy);
    this.#scheduler.cancel();
    const commitsAtStart = this.#commits;
    const coversStartup = this.#dirtyAtStart;
    const startedAt = Date.now();
    const run = this.#snapshotter.snapshot(this.#state).then(
      ({ info, entry }) => {
        const covered = commitsAtStart - this.#covered + (coversStartup ? 1 : 0);
        this.#covered = commitsAtStart;
        if (coversStartup) this.#dirtyAtStart = false;
        const stillDirty = this.#commits > commitsAtStart;
        this.#state = { ...this.#state, seq: entry.seq, generation: entry.generation, dirty: stillDirty, fingerprint: null };
        writeLocalState(this.#o.dbPath, this.#state);
        const result = { ...info, commits: covered };
        this.#lastSnapshot = result;
        this.#ok++;
        this.#failuresInARow = 0;
        this.#running = undefined;
        this.#o.log.info(
          { seq: result.seq, bytes: result.bytes, compressedBytes: result.compressedBytes, durationMs: Math.round(result.durationMs), commits: covered, uploaded: result.uploaded },
          result.uploaded ? 'snapshot uploaded' : 'snapshot unchanged, nothing uploaded',
        );
        this.#events.emit('snapshot', result);
        if (stillDirty && !this.#closing) {
          // Commits that arrived during the snapshot: the first of them after it started opens the next window.
          this.#firstPendingAt = Math.max(this.#firstPendingAt, startedAt);
          this.#scheduler.schedule(this.#pending(), this.#firstPendingAt, this.#lastCommitAt);
        }
        return result;
      },
      (error: unknown) => {
        const err = error instanceof SyncError ? error : new SyncError('SNAPSHOT_FAILED', `Snapshot failed: ${errorMessage(error)}`, { cause: error });
        this.#failed++;
        this.#failuresInARow++;
        this.#lastError = { code: err.code, message: err.message, at: new Date().toISOString() };
        this.#running = undefined;
        if (err.code === 'CONFLICT') {
          this.#stoppedBy = err;
          this.#scheduler.cancel();
          this.#o.log.error({ code: err.code, pendingCommits: this.#pending() }, err.message);
        } else {
          const delay = Math.min(this.#o.retryBaseMs * 2 ** (this.#failuresInARow - 1), this.#o.retryMaxMs);
          this.#o.log.warn({ code: err.code, retryInMs: delay, pendingCommits: this.#pending() }, `snapshot failed, will retry: ${err.message}`);
          if (!this.#closing) this.#scheduler.retryIn(delay);
        }
        this.#events.emit('snapshot-error', err);
        throw err;
      },
    );
    this.#running = run;
    return run;
  }

  async #shutdown(): Promise<void> {
    this.#scheduler.cancel();
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.off(signal, this.#onSignal);
    const client = this.#client;
    let finalError: unknown;
    const deadline = new Promise<never>((_, reject) => {
      const timer = setTimeout(
        () => reject(new SyncError('SNAPSHOT_FAILED', `The final snapshot did not finish within shutdown.timeoutMs (${this.#o.shutdownTimeoutMs} ms).`)),
        this.#o.shutdownTimeoutMs,
      );
      timer.unref();
    });
    try {
      // Let writes already queued or in a transaction finish; later ones are refused by beforeWrite.
      const release = await Promise.race([client ? client.writeLock.acquire() : Promise.resolve(() => {}), deadline]);
      release();
      await Promise.race([this.flush(), deadline]);
    } catch (error) {
      finalError = error;
    }
    if (this.#running) await Promise.race([this.#running.catch(() => undefined), deadline.catch(() => undefined)]);
    await client?.close();
    this.#closed = true;
    const pending = this.#pending();
    this.#state = { ...this.#state, dirty: this.#state.dirty && pending > 0, fingerprint: fingerprint(this.#o.dbPath) };
    writeLocalState(this.#o.dbPath, this.#state);
    if (pending > 0) {
      this.#o.log.error(
        { pendingCommits: pending, error: finalError ? errorMessage(finalError) : undefined },
        `CLOSED WITH ${pending} COMMIT(S) NOT IN THE STORE: they remain only in the local file ${this.#o.dbPath}`,
      );
    }
    if (finalError) throw finalError;
  }

  #handleSignal(signal: NodeJS.Signals): void {
    this.#o.log.info({ signal }, 'signal received: taking the final snapshot before exit');
    this.close()
      .catch(() => undefined) // already logged loudly
      .finally(() => {
        // Re-raise so the process ends as the signal intends, unless the app handles it itself.
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
      });
  }
}
