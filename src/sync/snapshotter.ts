import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { SyncError, isSyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { SnapshotStore } from '../store/store.ts';
import type { Codec } from './codec.ts';
import type { LocalState } from './local-state.ts';
import type { WriterLease } from './lease.ts';
import { MANIFEST_KEY, applyRetention, encodeManifest, latestSnapshot, snapshotKey, type Manifest, type RetentionPolicy, type SnapshotEntry } from './manifest.ts';
import { readHead, type RemoteHead } from './restore.ts';
import { withRetry, type RetryPolicy } from './retry.ts';
import { runInWorker } from './run-in-worker.ts';

export interface SnapshotInfo {
  seq: number;
  generation: string;
  key: string;
  at: string;
  bytes: number;
  compressedBytes: number;
  sha256: string;
  durationMs: number;
  /** False when the database was byte-identical to the latest snapshot, so nothing was uploaded. */
  uploaded: boolean;
  /** Commits this snapshot covers (filled in by the controller). */
  commits: number;
}

interface SnapshotterOptions {
  store: SnapshotStore;
  dbPath: string;
  codec: Codec;
  retention: RetentionPolicy;
  retry: RetryPolicy;
  log: SyncLogger;
  /** Every manifest write carries its id: the store refuses it once another instance holds the lease. */
  lease: WriterLease;
}

/**
 * Takes one consistent copy off the main thread, uploads it as an immutable blob, then publishes the
 * manifest with a conditional write so an older writer can never replace a newer snapshot. A crash
 * anywhere before the manifest write leaves the previous manifest valid.
 */
export class Snapshotter {
  readonly #o: SnapshotterOptions;
  /** The store's head as we last saw or wrote it; undefined until read (restore: 'skip'). */
  #head: RemoteHead | null | undefined;

  constructor(options: SnapshotterOptions, head: RemoteHead | null | undefined) {
    this.#o = options;
    this.#head = head;
  }

  /**
   * @param rolledBackTo set on the first snapshot after a point-in-time restore, so the manifest records
   *   that the roll-back happened (and a restart with the same target does not roll back again).
   */
  async snapshot(state: LocalState, rolledBackTo?: SnapshotEntry['rolledBackTo']): Promise<{ info: SnapshotInfo; entry: SnapshotEntry }> {
    const { store, dbPath, codec, log } = this.#o;
    const started = performance.now();
    const tag = randomBytes(6).toString('hex');
    const rawPath = `${dbPath}.snap-${tag}.raw`;
    const outPath = `${dbPath}.snap-${tag}.out`;
    let uploadedKey: string | undefined;
    try {
      const copy = await runInWorker({ op: 'snapshot', dbPath, rawPath, outPath, codec });
      const head = await this.#resolveHead(state);
      const at = new Date().toISOString();

      const latest = head && latestSnapshot(head.manifest);
      if (latest && latest.sha256 === copy.sha256 && !rolledBackTo) {
        // Unchanged since the latest snapshot: no upload, no manifest write, no storage request.
        return {
          entry: latest,
          info: { seq: latest.seq, generation: latest.generation, key: latest.key, at, bytes: copy.rawBytes, compressedBytes: copy.compressedBytes, sha256: copy.sha256, durationMs: performance.now() - started, uploaded: false, commits: 0 },
        };
      }

      const seq = Math.max(head?.manifest.seq ?? 0, state.seq) + 1;
      const generation = state.generation;
      const key = snapshotKey(generation, seq, codec, randomBytes(4).toString('hex'));
      const entry: SnapshotEntry = {
        seq,
        generation,
        key,
        codec,
        bytes: copy.rawBytes,
        sha256: copy.sha256,
        compressedBytes: copy.compressedBytes,
        createdAt: at,
        ...(rolledBackTo ? { rolledBackTo } : {}),
      };
      const metadata = { sha256: copy.sha256, bytes: String(copy.rawBytes), seq: String(seq), generation, codec };
      await withRetry(`upload ${key}`, () => store.uploadFile(key, outPath, metadata), this.#o.retry, (m) => log.warn({ key }, m));
      uploadedKey = key;

      const manifest: Manifest = { format: 1, generation, seq, snapshots: applyRetention([entry, ...(head?.manifest.snapshots ?? [])], this.#o.retention) };
      const etag = await this.#publish(manifest, head);
      uploadedKey = undefined; // published: no longer ours to clean up
      const previous = head?.manifest.snapshots ?? [];
      this.#head = { etag, manifest };
      await this.#evict(previous, manifest);
      return {
        entry,
        info: { seq, generation, key, at, bytes: copy.rawBytes, compressedBytes: copy.compressedBytes, sha256: copy.sha256, durationMs: performance.now() - started, uploaded: true, commits: 0 },
      };
    } finally {
      await rm(rawPath, { force: true });
      await rm(outPath, { force: true });
      if (uploadedKey) await store.delete(uploadedKey).catch(() => undefined); // never referenced by a manifest
    }
  }

  /** In skip mode the head is read on the first snapshot, and only a head this file descends from is accepted. */
  async #resolveHead(state: LocalState): Promise<RemoteHead | null> {
    if (this.#head !== undefined) return this.#head;
    const head = await readHead(this.#o.store, this.#o.retry, this.#o.log);
    if (head && head.manifest.seq > 0 && !(head.manifest.seq === state.seq && head.manifest.generation === state.generation)) {
      throw new SyncError(
        'CONFLICT',
        `${this.#o.store.location} already holds snapshot seq ${head.manifest.seq}, which this local database (started with restore: 'skip') does not descend from; ` +
          `refusing to replace it. Restart with restore enabled to continue from the backup.`,
      );
    }
    this.#head = head;
    return head;
  }

  async #publish(manifest: Manifest, head: RemoteHead | null): Promise<string> {
    const { store, retry, log, lease } = this.#o;
    const condition = head ? { ifMatch: head.etag, leaseId: lease.id } : { ifNoneMatch: '*' as const, leaseId: lease.id };
    try {
      const { etag } = await withRetry('publish manifest', () => store.writeSmall(MANIFEST_KEY, encodeManifest(manifest), condition), retry, (m) =>
        log.warn({}, m),
      );
      return etag;
    } catch (error) {
      if (isSyncError(error, 'LEASE_LOST') || isSyncError(error, 'LEASE_HELD')) {
        // Fenced by the store itself: another instance holds the lease now.
        lease.lost(error);
        throw new SyncError('LEASE_LOST', `The store refused this instance's manifest write: another instance holds the writer lease on ${store.location}. This instance stopped snapshotting and refuses writes.`, { cause: error });
      }
      if (!isSyncError(error, 'CONFLICT')) throw error;
      // A retried write (ours or the SDK's) whose first attempt landed with its response lost sees its
      // own manifest as a conflict: the blob key is unique to this attempt, so it tells us apart.
      const current = await readHead(store, retry, log).catch(() => null);
      if (current && latestSnapshot(current.manifest)?.key === latestSnapshot(manifest)?.key) return current.etag;
      // The manifest is leased by us: only a writer holding the lease since could have changed it.
      lease.lost(error);
      throw new SyncError(
        'LEASE_LOST',
        `Another writer published to ${store.location} since this instance last read it (its writer lease was lost); this instance stopped snapshotting and refuses writes so it cannot overwrite newer data. ` +
          `Restart it to continue from the newer snapshot.`,
        { cause: error },
      );
    }
  }

  /** Deletes blobs that dropped out of retention. Best effort: a leftover blob costs storage, not data. */
  async #evict(previous: SnapshotEntry[], manifest: Manifest): Promise<void> {
    const kept = new Set(manifest.snapshots.map((s) => s.key));
    for (const old of previous) {
      if (kept.has(old.key)) continue;
      await this.#o.store.delete(old.key).catch((error: unknown) => this.#o.log.warn({ key: old.key, error: String(error) }, 'could not delete an old snapshot'));
    }
  }
}
