import { EventEmitter } from 'node:events';
import { SyncError, errorMessage, findSyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { CommitHooks } from '../client/counting-client.ts';
import type { WriteLock } from '../client/write-lock.ts';
import type { Position, Sidecar } from '../local/sidecar.ts';
import type { WriterLease } from './lease.ts';
import type { SnapshotEntry } from './manifest.ts';
import type { ReplicaFollower } from './replica.ts';
import type { RemoteHead, VerifiedSnapshot } from './restore.ts';
import type { RestoreCheck } from './startup.ts';
import type { RestoreVerify } from '../config.ts';
import { SnapshotScheduler, type SchedulePolicy } from './scheduler.ts';
import { Checkpointer } from './checkpointer.ts';
import { DurableWaiters, durableTimeout, uploadForWaitersNow, waiterVerdict, type DurabilityState, type DurableOptions } from './durability.ts';
import { nextRole, type RoleEvent, type RoleState } from './role.ts';
import type { SnapshotInfo, Snapshotter } from './snapshotter.ts';
import type { SchemaPosition } from './schema-position.ts';

export interface SyncStatus {
  /** Committed writes counted since this instance opened. */
  commits: number;
  /** Commits not yet covered by a snapshot durable in the store (1 if the local file started dirty). */
  pendingCommits: number;
  /**
   * The last upload (or the finding that nothing changed). `schema`: the migrations its restore point has
   * applied (drizzle's `__drizzle_migrations`: count, last hash and created_at), null when none.
   */
  lastSnapshot: { seq: number; at: string; bytes: number; compressedBytes: number; durationMs: number; sha256: string; uploaded: boolean; schema: SchemaPosition | null } | null;
  lastError: { code: string; message: string; at: string } | null;
  snapshotsOk: number;
  snapshotsFailed: number;
  restoredFrom: RestoredFrom | null;
  /** `stopped`: this instance lost the store to another writer (lease lost or conflict); no more snapshots or writes. */
  state: 'idle' | 'pending' | 'snapshotting' | 'stopped' | 'closing' | 'closed';
  /**
   * `writer` holds the lease and snapshots; `replica` serves reads and follows the store; `promoting`: a
   * replica that took the lease and is catching up; `stopped`: a writer fenced off (lease lost);
   * `closing` / `closed`. `remote`: `connection` names a libSQL server or Turso (or an embedded replica,
   * `syncUrl`); the server keeps the data, and this library adds no store, lease or snapshots (src/remote.ts).
   */
  role: RoleState | 'remote';
  /** The writer lease: `held` (renewed at `renewedAt`), `lost` (fenced), `none` (replica, or closed). */
  lease: { state: 'held' | 'lost' | 'none'; renewedAt: string | null };
  /** The store sequence the local file holds (a replica's view of how far it has followed). */
  localSeq: number;
}

export interface RestoredFrom {
  seq: number;
  generation: string;
  createdAt: string;
  bytes: number;
  durationMs: number;
  /** Newer snapshots that failed verification and were skipped (restore fell back past them). */
  skipped: Array<{ seq: number; code: string; message: string }>;
  /**
   * The restored file's quick_check and fsync (option `verify`). `running`: reads are served, writes wait;
   * `failed`: writes are refused with SNAPSHOT_CORRUPT and nothing is uploaded.
   */
  check: { verify: RestoreVerify; state: 'running' | 'passed' | 'failed'; durationMs: number | null };
}

/** The restored file's check finished (see RestoredFrom.check). */
export interface RestoreCheckEvent {
  verify: RestoreVerify;
  ok: boolean;
  durationMs: number;
  /** Why it failed: writes are refused with this error from now on. */
  error?: SyncError;
}

export interface RestoreEvent {
  seq: number;
  generation: string;
  bytes: number;
  durationMs: number;
  skipped: RestoredFrom['skipped'];
}

export interface SyncEvents {
  snapshot: [SnapshotInfo];
  'snapshot-error': [SyncError];
  restore: [RestoreEvent];
  /** The restored file's background check (verify 'background' or 'hash-only') passed or failed; replayed to late listeners. */
  'restore-check': [RestoreCheckEvent];
  /** The writer lost its lease: it refuses writes and takes no more snapshots from now on. */
  'lease-lost': [SyncError];
  /** A replica became the writer (it took the lease, caught up with the store, and now accepts writes). */
  promoted: [{ seq: number }];
  /** A replica reopened its database on a newer snapshot from the store. */
  'replica-update': [{ seq: number; generation: string; bytes: number; durationMs: number }];
}

export interface SyncHandle {
  flush(): Promise<SnapshotInfo | null>;
  /**
   * Resolves once every commit made before the call is in the store: answer a request (or ack a
   * message) after it, and the write survives losing this machine's disk. Starts an upload at once if
   * one is needed (no debounce); callers waiting at the same time share uploads (group commit). Waits
   * through failed uploads and their retries; rejects with `NOT_DURABLE` after `timeoutMs` (default
   * 30 s: the commits stay in the local file and upload when the store answers), with `LEASE_LOST`
   * (or the error that stopped this instance) when nothing it holds will ever upload, and with
   * `CLOSED` when close() ended with them still local. Resolves at once when nothing is pending,
   * without a store request (a read replica, which commits nothing, always).
   */
  durable(options?: DurableOptions): Promise<void>;
  /**
   * The restore drill, for the app to schedule: downloads the store's latest snapshot into a temporary
   * file beside the database and verifies it exactly as a restore would (sizes, sha256, quick_check),
   * then removes it. Never touches the live database or the store. Null when the store holds no snapshot;
   * rejects with the restore's error (`SNAPSHOT_CORRUPT`, `NOT_FOUND`, ...) when the latest would not restore.
   */
  verify(): Promise<VerifiedSnapshot | null>;
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
  /** For messages only. */
  storeLocation: string;
  /** The restore drill (see SyncHandle.verify). */
  verifyLatest: () => Promise<VerifiedSnapshot | null>;
}

interface ClientHandle {
  writeLock: WriteLock;
  /** Checkpoints and closes the real client. */
  close(): Promise<void>;
  /**
   * Last step of close(), after the lease and the sidecar are settled: releases the local file lock. Not
   * sooner: another opener that got the file in between would read the old sidecar and re-take the lease
   * this instance is still releasing.
   */
  releaseFile(): Promise<void>;
}

/**
 * Ties commit counting to the schedule, runs one snapshot at a time, and owns flush/close/signals.
 * It knows nothing about Azure: it talks to a Snapshotter.
 */
export class SyncController implements CommitHooks, SyncHandle {
  readonly #o: ControllerOptions;
  /** Present while this instance is the writer. */
  #snapshotter: Snapshotter | undefined;
  /** The writer lease (held by a writer; a role-'auto' replica tries to take it). */
  #lease: WriterLease | undefined;
  /** Present while this instance is a read replica. */
  #follower: ReplicaFollower | undefined;
  /** Recorded in the first snapshot after a point-in-time restore. */
  #rolledBackTo: SnapshotEntry['rolledBackTo'];
  readonly #events = new EventEmitter();
  readonly #scheduler: SnapshotScheduler;
  /** Folds the WAL in a worker when it passes its bound (the app's connections never checkpoint). */
  readonly #checkpointer: Checkpointer;
  #client: ClientHandle | undefined;
  readonly #sidecar: Sidecar;
  /** The one place the role lives; changed only by #transition. */
  #role: RoleState;
  /** After a failed snapshot, no new one before this time (commits do not shorten the backoff). */
  #retryAt = 0;

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
  /** While the restored file's check runs (it holds the write lock): snapshots wait for it. */
  #checking: Promise<void> | undefined;
  #checkEvent: RestoreCheckEvent | undefined;
  /** The durable() calls still waiting (see durability.ts). */
  readonly #durable = new DurableWaiters();
  readonly #onSignal = (signal: NodeJS.Signals) => this.#handleSignal(signal);

  constructor(options: ControllerOptions, sidecar: Sidecar, role: 'writer' | 'replica', dirtyAtStart: boolean) {
    this.#o = options;
    this.#sidecar = sidecar;
    this.#role = role;
    this.#dirtyAtStart = dirtyAtStart;
    this.#scheduler = new SnapshotScheduler(options.schedule, () => void this.#runSnapshot().catch(() => undefined));
    this.#checkpointer = new Checkpointer({ dbPath: options.dbPath, log: options.log, writeLock: () => this.#client?.writeLock });
  }

  /**
   * Called once the client exists, as the writer (`writer`) or as a read replica (`follower`); starts the
   * clock for a dirty-at-start file and installs signal handlers.
   */
  start(
    client: ClientHandle,
    restore: {
      from: SnapshotEntry | null;
      durationMs: number;
      skipped: RestoredFrom['skipped'];
      rolledBackTo?: SnapshotEntry['rolledBackTo'];
      verify: RestoreVerify;
      /** The downloaded file's fsync and quick_check still to run (verify 'background' / 'hash-only'). */
      check?: RestoreCheck | undefined;
    },
    role: { writer: Snapshotter; lease: WriterLease } | { follower: ReplicaFollower; lease: WriterLease | undefined },
  ): void {
    this.#client = client;
    const from = restore.from;
    if (from) {
      const check = { verify: restore.verify, state: restore.check ? 'running' : 'passed', durationMs: null } as const;
      this.#restoredFrom = { seq: from.seq, generation: from.generation, createdAt: from.createdAt, bytes: from.bytes, durationMs: restore.durationMs, skipped: restore.skipped, check };
    }
    if (restore.check) this.#checkRestored(client.writeLock, restore.check);
    this.#rolledBackTo = restore.rolledBackTo;
    this.#lease = role.lease;
    if ('writer' in role) this.#becomeWriter(role.writer);
    else {
      this.#follower = role.follower;
      // A replica follows (and may take over) only once its first file passed its check.
      const follow = () => {
        if (!this.#stoppedBy && !this.#closing) role.follower.start();
      };
      if (this.#checking) void this.#checking.then(follow);
      else follow();
    }
    if (this.#o.signals) for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, this.#onSignal);
  }

  /**
   * The restored file opened before its fsync and quick_check: they run now, in a worker, while reads are
   * served. The write lock is taken first (granted at once: nothing else can hold it yet), so every write
   * waits for the verdict; snapshots wait on `#checking`. Only a file that passed is recorded as started.
   */
  #checkRestored(writeLock: WriteLock, check: RestoreCheck): void {
    const locked = writeLock.acquire();
    const startedAt = performance.now();
    const settle = (state: 'passed' | 'failed', error?: SyncError) => {
      const durationMs = performance.now() - startedAt;
      if (this.#restoredFrom) this.#restoredFrom = { ...this.#restoredFrom, check: { verify: check.verify, state, durationMs } };
      this.#checkEvent = { verify: check.verify, ok: state === 'passed', durationMs, ...(error ? { error } : {}) };
      this.#events.emit('restore-check', this.#checkEvent);
    };
    this.#checking = locked.then(async (release) => {
      try {
        await check.run();
        // After close() gave up waiting, the sidecar stays 'restoring': the next start downloads again.
        if (!this.#closed) this.#sidecar.started(check.position, check.pending);
        this.#o.log.info({ verify: check.verify, durationMs: Math.round(performance.now() - startedAt) }, 'restored database checked: writes and snapshots may proceed');
        settle('passed');
      } catch (error) {
        const err = new SyncError(
          findSyncError(error)?.code === 'SNAPSHOT_CORRUPT' ? 'SNAPSHOT_CORRUPT' : 'SNAPSHOT_FAILED',
          `The restored database ${this.#o.dbPath} failed its check (${errorMessage(error)}). This instance serves reads but refuses writes and uploads nothing, ` +
            `so the backup stays as it is. Restore an older snapshot (restore: { seq } or \`npx drizzle-libsql-blob restore --seq N\`; list them with \`npx drizzle-libsql-blob list\`), ` +
            `or start with verify: 'before-open', which falls back to the newest snapshot that passes.`,
          { cause: error },
        );
        this.#stop(err, 'check-failed');
        settle('failed', err);
      } finally {
        this.#checking = undefined;
        release();
      }
    });
  }

  /** A replica took the writer lease: it catches up with the store before it becomes the writer. */
  leaseTaken(): void {
    this.#transition('lease-taken');
  }

  /** A replica took the lease and caught up: from now on it snapshots and accepts writes. */
  promote(snapshotter: Snapshotter, head: RemoteHead): void {
    if (this.#closing) return;
    this.#transition('lease-taken'); // no-op when leaseTaken() already moved it to promoting
    this.#transition('caught-up');
    this.#follower = undefined;
    this.#o.log.info({ seq: head.manifest.seq }, 'promoted: this instance is now the writer');
    this.#becomeWriter(snapshotter);
    this.#events.emit('promoted', { seq: head.manifest.seq });
  }

  #becomeWriter(snapshotter: Snapshotter): void {
    this.#snapshotter = snapshotter;
    snapshotter.attachWal(this.#checkpointer); // incremental: uploads follow the page record from the first one on
    snapshotter.onCompacted(() => this.#publishCompaction());
    if (this.#dirtyAtStart) {
      const now = Date.now();
      this.#firstPendingAt = now;
      this.#lastCommitAt = now;
      this.#scheduler.schedule(1, now, now);
    }
  }

  /** A replica reopened on a newer snapshot. */
  replicaUpdated(entry: SnapshotEntry, head: RemoteHead, durationMs: number): void {
    this.#sidecar.followed({ seq: head.manifest.seq, generation: head.manifest.generation });
    this.#o.log.info({ seq: entry.seq, durationMs: Math.round(durationMs) }, 'replica reopened on a newer snapshot');
    this.#events.emit('replica-update', { seq: entry.seq, generation: entry.generation, bytes: entry.bytes, durationMs });
  }

  /** Recorded before the manifest write (see SidecarState.publishing). */
  notePublishing(entry: SnapshotEntry): void {
    this.#sidecar.publishing(entry);
  }

  /** The store position the local file holds. */
  localPosition(): Position {
    return this.#sidecar.position();
  }

  #transition(event: RoleEvent): void {
    const next = nextRole(this.#role, event);
    if (next === null) return;
    this.#role = next;
  }

  /** The lease is gone (renewal refused, or the store fenced a publish): stop snapshotting, refuse writes. */
  leaseLost(error: SyncError): void {
    if (this.#stoppedBy?.code === 'LEASE_LOST') return;
    if (this.#role === 'promoting') {
      // Taken and lost again before catching up: nothing was written, it simply stays a replica.
      this.#transition('lease-lost');
      this.#o.log.warn({ code: error.code }, `the writer lease was lost while promoting; staying a replica: ${error.message}`);
      return;
    }
    this.#stop(error, 'lease-lost');
    this.#events.emit('lease-lost', error);
  }

  /** Stops for good (fenced, diverged, or a restored file that failed its check): no more writes or snapshots. */
  #stop(error: SyncError, event: 'lease-lost' | 'check-failed'): void {
    this.#stoppedBy = error;
    this.#transition(event);
    this.#scheduler.cancel();
    this.#lastError = { code: error.code, message: error.message, at: new Date().toISOString() };
    this.#o.log.error({ code: error.code, pendingCommits: this.#pending() }, error.message);
    this.#driveDurable(); // nothing will upload now: the waiters are told why
  }

  // ---- CommitHooks ----

  /**
   * The safety point before a migration (issue 15): every commit so far goes to the store first, so a
   * restore point with the schema before the migration exists before its first DDL. Nothing pending
   * (the store's latest is the file), or a store with no restore point yet (a first deploy: there is no
   * earlier state to come back to, and an app must start on a new database while its store is down):
   * nothing to do. Otherwise a store that cannot take the upload refuses the migration (NOT_DURABLE
   * after 30 s, naming the last upload error) rather than run it unprotected.
   */
  beforeMigrate(): Promise<void> {
    if (!this.#snapshotter || this.#pending() === 0 || !this.#snapshotter.storeHasRestorePoint) return Promise.resolve();
    this.#o.log.info({ pendingCommits: this.#pending() }, 'a migration is about to run: uploading the restore point before it first');
    return this.durable();
  }

  admitWrite(kind: 'statement' | 'transaction'): void {
    // Writes already queued when close() began still run (close waits for them); new ones are refused.
    if (this.#closing) throw new SyncError('CLOSED', 'The database is closing (final snapshot in progress); writes are no longer accepted.');
    this.#refuseIfNotWriter(kind);
  }

  beforeWrite(): void {
    this.#refuseIfNotWriter('statement');
    // On disk before the write can commit: a crash after it must not look like a clean file.
    this.#sidecar.writeBegan();
  }

  committed(): void {
    const now = Date.now();
    this.#checkpointer.noteCommit(now); // whatever the store does: the WAL stays bounded while it is down
    if (this.#pending() === 0) this.#firstPendingAt = now;
    this.#commits++;
    this.#lastCommitAt = now;
    if (this.#running || this.#stoppedBy || this.#closing) return; // rescheduled when the running snapshot settles
    if (now < this.#retryAt) return; // backing off after a failure: the retry timer is armed, commits do not shorten it
    this.#scheduler.schedule(this.#pending(), this.#firstPendingAt, this.#lastCommitAt, now);
  }

  /** A replica reads only (a transaction is admitted, its first write is not); a fenced writer writes nothing more. */
  #refuseIfNotWriter(kind: 'statement' | 'transaction'): void {
    if (this.#stoppedBy) throw this.#stoppedBy;
    if (!this.#snapshotter && kind === 'statement') {
      throw new SyncError(
        'READ_ONLY',
        `This instance is a read replica: another instance holds the writer lease on ${this.#o.storeLocation}. Send writes to the writer; ` +
          `this one takes over by itself when the lease frees (role 'auto').`,
      );
    }
  }

  // ---- SyncHandle ----

  status(): SyncStatus {
    const s = this.#lastSnapshot;
    return {
      commits: this.#commits,
      pendingCommits: this.#pending(),
      lastSnapshot: s && { seq: s.seq, at: s.at, bytes: s.bytes, compressedBytes: s.compressedBytes, durationMs: s.durationMs, sha256: s.sha256, uploaded: s.uploaded, schema: s.schema ?? null },
      lastError: this.#lastError,
      snapshotsOk: this.#ok,
      snapshotsFailed: this.#failed,
      restoredFrom: this.#restoredFrom,
      role: this.#role,
      lease: { state: this.#lease?.state === 'held' ? 'held' : this.#lease?.state === 'lost' ? 'lost' : 'none', renewedAt: this.#lease?.renewedAt?.toISOString() ?? null },
      localSeq: this.#sidecar.state.seq,
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
    if (event === 'restore-check' && this.#checkEvent) return this.#replayCheck(listener as (e: RestoreCheckEvent) => void);
    this.#events.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<E extends keyof SyncEvents>(event: E, listener: (...args: SyncEvents[E]) => void): this {
    this.#events.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once<E extends keyof SyncEvents>(event: E, listener: (...args: SyncEvents[E]) => void): this {
    if (event === 'restore') return this.#replayRestore(listener as (e: SyncEvents['restore'][0]) => void);
    if (event === 'restore-check' && this.#checkEvent) return this.#replayCheck(listener as (e: RestoreCheckEvent) => void);
    this.#events.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  /**
   * A restore happens once, at start, before the caller can subscribe: a 'restore' listener is
   * replayed it (asynchronously) if there was one.
   */
  #replayRestore(listener: (event: SyncEvents['restore'][0]) => void): this {
    const r = this.#restoredFrom;
    if (r) queueMicrotask(() => listener({ seq: r.seq, generation: r.generation, bytes: r.bytes, durationMs: r.durationMs, skipped: r.skipped }));
    return this;
  }

  /** The check settled before the listener came: replayed (asynchronously), like 'restore'. */
  #replayCheck(listener: (event: RestoreCheckEvent) => void): this {
    const e = this.#checkEvent!;
    queueMicrotask(() => listener(e));
    return this;
  }

  /** Snapshots now if anything is pending; resolves once every commit made before the call is durable in the store. */
  async flush(): Promise<SnapshotInfo | null> {
    const info = await this.#flushUploads();
    // The deletions after those uploads too (retention, garbage): what the store holds is then settled.
    await this.#snapshotter?.settleTidy();
    return info;
  }

  async #flushUploads(): Promise<SnapshotInfo | null> {
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

  durable(options?: DurableOptions): Promise<void> {
    let timeoutMs: number;
    try {
      timeoutMs = durableTimeout(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const target = this.#commits;
    switch (waiterVerdict(target, this.#durabilityState())) {
      case 'durable':
        return Promise.resolve();
      case 'stopped':
        return Promise.reject(this.#stoppedBy);
      case 'closed':
        return Promise.reject(this.#closedBeforeDurable());
      case 'waiting': {
        const wait = this.#durable.add(target, timeoutMs, () => this.#notDurable(target, timeoutMs));
        this.#driveDurable();
        return wait;
      }
    }
  }

  verify(): Promise<VerifiedSnapshot | null> {
    if (this.#closed) return Promise.reject(new SyncError('CLOSED', 'verify() after close(): the database is closed.'));
    return this.#o.verifyLatest();
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  // ---- internals ----

  #durabilityState(): DurabilityState {
    return { covered: this.#covered, dirtyAtStart: this.#dirtyAtStart, stopped: this.#stoppedBy, closed: this.#closed };
  }

  /**
   * Settles the durable() waiters after anything that can change their verdict (a snapshot settled, the
   * instance stopped or closed) and starts the upload the rest wait for when none is under way.
   */
  #driveDurable(): void {
    if (this.#durable.size === 0) return;
    const waiting = this.#durable.settle(this.#durabilityState(), () => this.#closedBeforeDurable());
    // A restored file's check still running is not an upload: #runSnapshot waits for it, then uploads.
    const upload = { waiting, canSnapshot: this.#snapshotter !== undefined, running: this.#running !== undefined, closing: this.#closing !== undefined, retryAt: this.#retryAt, now: Date.now() };
    if (uploadForWaitersNow(upload)) void this.#runSnapshot().catch(() => undefined); // a failure is logged, retried and emitted there
  }

  #notDurable(target: number, timeoutMs: number): SyncError {
    const pending = Math.max(0, target - this.#covered) + (this.#dirtyAtStart ? 1 : 0);
    const last = this.#failuresInARow > 0 ? this.#lastError : null;
    const why = last ? `the last upload failed with ${last.code}: ${last.message}` : 'the upload is still running';
    return new SyncError(
      'NOT_DURABLE',
      `durable(): ${pending} commit(s) made before the call were not in the store (${this.#o.storeLocation}) after ${timeoutMs} ms; ${why}. ` +
        `They are committed in the local file ${this.#o.dbPath} and upload when the store answers: call durable() again to keep waiting, or pass a longer durable({ timeoutMs }).`,
      { transient: true },
    );
  }

  #closedBeforeDurable(): SyncError {
    return new SyncError(
      'CLOSED',
      `durable(): the database closed with commits made before the call not in the store; they remain only in the local file ${this.#o.dbPath} (see the log line "CLOSED WITH ... COMMIT(S) NOT IN THE STORE").`,
    );
  }

  #pending(): number {
    return this.#commits - this.#covered + (this.#dirtyAtStart ? 1 : 0);
  }

  /**
   * A compaction has its chunks in the store: an upload publishes it now (after the one running, if
   * any), not at the next commit. Not while closing: close() publishes it itself, within its deadline.
   */
  #publishCompaction(): void {
    if (this.#stoppedBy || this.#closing || !this.#snapshotter) return;
    if (this.#running) {
      void this.#running.catch(() => undefined).then(() => this.#publishCompaction());
      return;
    }
    if (Date.now() < this.#retryAt) return; // the retry publishes it
    void this.#runSnapshot().catch(() => undefined); // a failure is logged, retried and emitted there
  }

  #runSnapshot(): Promise<SnapshotInfo> {
    // Nothing is uploaded before the restored file passed its check (and never if it failed).
    if (this.#checking) return this.#checking.then(() => this.#runSnapshot());
    if (this.#running) return this.#running;
    if (this.#stoppedBy) return Promise.reject(this.#stoppedBy);
    const snapshotter = this.#snapshotter;
    if (!snapshotter) return Promise.reject(new SyncError('READ_ONLY', 'A read replica takes no snapshots.'));
    this.#scheduler.cancel();
    const commitsAtStart = this.#commits;
    const coversStartup = this.#dirtyAtStart;
    const startedAt = Date.now();
    const run = snapshotter.snapshot(this.#sidecar.state, this.#rolledBackTo).then(
      ({ info, entry }) => {
        if (info.uploaded) this.#rolledBackTo = undefined; // recorded in the manifest now
        const covered = commitsAtStart - this.#covered + (coversStartup ? 1 : 0);
        this.#covered = commitsAtStart;
        if (coversStartup) this.#dirtyAtStart = false;
        const stillDirty = this.#commits > commitsAtStart;
        this.#sidecar.published({ seq: entry.seq, generation: entry.generation }, stillDirty);
        const result: SnapshotInfo = { ...info, commits: covered, ...(entry.schema ? { schema: entry.schema } : {}) };
        this.#lastSnapshot = result;
        this.#ok++;
        this.#failuresInARow = 0;
        this.#retryAt = 0;
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
        this.#driveDurable();
        return result;
      },
      (error: unknown) => {
        const err = error instanceof SyncError ? error : new SyncError('SNAPSHOT_FAILED', `Snapshot failed: ${errorMessage(error)}`, { cause: error });
        this.#failed++;
        this.#failuresInARow++;
        this.#lastError = { code: err.code, message: err.message, at: new Date().toISOString() };
        this.#running = undefined;
        if (err.code === 'LEASE_LOST') {
          this.leaseLost(err);
        } else if (err.code === 'CONFLICT' || err.code === 'DIVERGED') {
          this.#stop(err, 'lease-lost');
        } else {
          const delay = Math.min(this.#o.retryBaseMs * 2 ** (this.#failuresInARow - 1), this.#o.retryMaxMs);
          this.#o.log.warn({ code: err.code, retryInMs: delay, pendingCommits: this.#pending() }, `snapshot failed, will retry: ${err.message}`);
          this.#retryAt = Date.now() + delay;
          if (!this.#closing) this.#scheduler.retryIn(delay);
        }
        this.#events.emit('snapshot-error', err);
        this.#driveDurable(); // they wait for the retry (or their timeout), unless this stopped the instance
        throw err;
      },
    );
    this.#running = run;
    return run;
  }

  async #shutdown(): Promise<void> {
    this.#transition('close');
    this.#scheduler.cancel();
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.off(signal, this.#onSignal);
    // Every step that can wait on the store races one deadline: the platform kills the process soon after
    // (Container Apps: 30 s), and an idle instance must not hang on a blackholed store either.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new SyncError('SNAPSHOT_FAILED', `The final snapshot did not finish within shutdown.timeoutMs (${this.#o.shutdownTimeoutMs} ms).`)),
        this.#o.shutdownTimeoutMs,
      );
      timer.unref();
    });
    deadline.catch(() => undefined);
    const within = <T>(step: Promise<T>): Promise<T> => Promise.race([step, deadline]);
    const client = this.#client;
    let finalError: unknown;
    try {
      // A replica's poll in flight may wait on an unreachable store; it has nothing to save, so at the
      // deadline it closes without it (not an error: a "final snapshot" failure would be false).
      await within(this.#follower?.stop() ?? Promise.resolve()).catch(() =>
        this.#o.log.warn({ timeoutMs: this.#o.shutdownTimeoutMs }, 'replica poll still waiting on the store at shutdown.timeoutMs; closing without it'),
      );
      // Let writes already queued or in a transaction finish; later ones are refused by admitWrite.
      const release = await within(client ? client.writeLock.acquire() : Promise.resolve(() => {}));
      release();
      await within(this.#flushUploads()); // the deletions after it are waited for below
    } catch (error) {
      finalError = error;
    }
    if (!finalError && this.#snapshotter?.compacting) {
      // A compaction under way: published if it finishes in time (the next start then restores a short
      // chain); otherwise dropped, which loses nothing (the final upload above holds every commit).
      await within(this.#snapshotter.settleCompaction().then((ready) => (ready ? this.#runSnapshot() : undefined))).catch((error: unknown) =>
        this.#o.log.warn({ error: errorMessage(error) }, 'the compaction under way at close was not published'),
      );
    }
    if (this.#running) await within(this.#running).catch(() => undefined);
    await within(this.#snapshotter?.settleTidy() ?? Promise.resolve()).catch(() => undefined);
    await this.#checkpointer.stop(); // close()'s TRUNCATE checkpoint would find a worker's PASSIVE one busy
    await client?.close();
    this.#checkpointer.closeFiles(); // after the connections (POSIX locks, see there)
    this.#closed = true;
    const pending = this.#pending();
    if (pending === 0) {
      // The next instance takes over at once; if the store does not answer in time it expires by itself.
      await within(this.#lease?.release() ?? Promise.resolve(true)).catch(() => this.#lease?.stopRenewing());
    } else {
      // Keep it until it expires: a restart on this disk re-takes it (same id) and uploads these commits,
      // where a new writer taking over now would publish past them.
      this.#lease?.stopRenewing();
    }
    clearTimeout(timer);
    this.#sidecar.closed(pending > 0);
    this.#transition('closed');
    this.#driveDurable(); // covered by the final snapshot, or told it did not make it
    await client?.releaseFile();
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

/**
 * What `db.$sync` is at runtime: the SyncHandle methods and nothing else (the controller's internal
 * hooks — promote, leaseLost, admitWrite, ... — stay out of the app's reach).
 */
export function syncHandle(controller: SyncController): SyncHandle {
  const handle: SyncHandle = Object.freeze({
    flush: () => controller.flush(),
    durable: (options) => controller.durable(options),
    status: () => controller.status(),
    verify: () => controller.verify(),
    close: () => controller.close(),
    on: (event, listener) => (controller.on(event, listener), handle),
    off: (event, listener) => (controller.off(event, listener), handle),
    once: (event, listener) => (controller.once(event, listener), handle),
  } satisfies SyncHandle);
  return handle;
}
