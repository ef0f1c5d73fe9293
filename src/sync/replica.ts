import type { Client } from '@libsql/client';
import type { CountingClient } from '../client/counting-client.ts';
import { errorMessage, isSyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { ObjectStore } from '../store/store.ts';
import type { ChunkKeys } from './chunks/encryption.ts';
import type { WriterLease } from './lease.ts';
import { latestSnapshot, type SnapshotEntry } from './manifest.ts';
import { downloadFirstVerifying, installFile, readHead, type RemoteHead } from './restore.ts';

export interface FollowerOptions {
  /** A retrying store (`retrying()`). */
  store: ObjectStore;
  dbPath: string;
  log: SyncLogger;
  pollMs: number;
  client: CountingClient;
  keys: ChunkKeys | undefined;
  /** Opens a fresh client on `dbPath` (same options as the first one). */
  openClient: () => Client;
  /** Role 'auto': try to take the writer lease on every poll. Absent for role 'replica'. */
  lease: WriterLease | undefined;
  /** The store position the local file holds. */
  local: () => { seq: number; generation: string };
  /** The local file now holds `entry`, published as `head`. */
  onUpdate: (entry: SnapshotEntry, head: RemoteHead, durationMs: number) => void;
  /** The lease is ours and the local file is the store's latest: become the writer. */
  onPromote: (head: RemoteHead) => Promise<void>;
  /** The writer lease was just taken: the role is promoting until the catch-up is done. */
  onLeaseTaken: () => void;
}

/**
 * A read replica: polls the manifest and reopens the database on each newer snapshot (downloaded and
 * verified beside the live file, then swapped in between two queries). As role 'auto' it also tries
 * to take the writer lease, and once it has it (the writer released it or died) it catches up and
 * hands over to the writer.
 */
export class ReplicaFollower {
  readonly #o: FollowerOptions;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #stopped = false;

  constructor(options: FollowerOptions) {
    this.#o = options;
  }

  start(): void {
    this.#o.client.lockReadTransactions = true;
    this.#schedule();
  }

  /** Stops polling and waits for a poll in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#polling;
  }

  /** One poll now (also what the timer runs). */
  poll(): Promise<void> {
    this.#polling ??= this.#pollOnce().finally(() => {
      this.#polling = undefined;
      this.#schedule();
    });
    return this.#polling;
  }

  #schedule(): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.poll(), this.#o.pollMs);
    this.#timer.unref();
  }

  async #pollOnce(): Promise<void> {
    const { store, log, lease } = this.#o;
    try {
      if (lease && lease.state !== 'held') {
        try {
          await lease.acquire();
          if (this.#stopped) {
            // close() gave up waiting for this poll: a closed replica must not keep the writer lease.
            await lease.release();
            return;
          }
          log.info({ store: store.location }, 'writer lease acquired: this replica is taking over as the writer');
          this.#o.onLeaseTaken();
        } catch (error) {
          if (!isSyncError(error, 'LEASE_HELD')) throw error;
        }
      }
      const head = await readHead(store);
      if (head) await this.#catchUp(head);
      if (this.#stopped) return;
      if (lease?.state === 'held' && head) {
        this.#stopped = true;
        clearTimeout(this.#timer);
        this.#o.client.lockReadTransactions = false;
        await this.#o.onPromote(head);
      }
    } catch (error) {
      log.warn({ error: errorMessage(error) }, 'replica poll failed; will try again');
    }
  }

  /** Reopens on the store's latest snapshot if the local file is behind it. */
  async #catchUp(head: RemoteHead): Promise<void> {
    const latest = latestSnapshot(head.manifest);
    const local = this.#o.local();
    if (!latest || (local.seq === head.manifest.seq && local.generation === head.manifest.generation)) return;
    const started = performance.now();
    // The restore point the local file holds: a delta chain through it needs only the deltas after it.
    const held = head.manifest.snapshots.find((s) => s.seq === local.seq && s.generation === local.generation);
    const { entry } = await downloadFirstVerifying(this.#o.store, head.manifest.snapshots, this.#o.dbPath, this.#o.log, {
      install: (path) => this.#swap(path),
      keys: this.#o.keys,
      base: this.#o.dbPath, // the replica's file holds the previous snapshot: fetch only what changed
      ...(held ? { from: { path: this.#o.dbPath, entry: held } } : {}),
    });
    if (this.#stopped) return; // not installed (see #swap)
    this.#o.onUpdate(entry, head, performance.now() - started);
  }

  /** Between two queries: no transaction is open (the lock), and close, rename and open are synchronous. */
  async #swap(verifiedPath: string): Promise<void> {
    const { client } = this.#o;
    if (this.#stopped) return; // closed meanwhile: the verified copy is discarded, no client is reopened
    const release = await client.writeLock.acquire();
    try {
      if (this.#stopped) return;
      client.inner.close();
      installFile(verifiedPath, this.#o.dbPath);
      client.replaceInner(this.#o.openClient());
    } finally {
      release();
    }
  }
}
