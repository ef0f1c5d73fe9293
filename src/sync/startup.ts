import { existsSync, rmSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { createClient } from '@libsql/client';
import { SyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { SnapshotStore } from '../store/store.ts';
import { describeTarget, latestSnapshot, selectSnapshot, type Manifest, type RestoreTarget, type SnapshotEntry } from './manifest.ts';
import { fingerprint, newGeneration, sameFingerprint, writeLocalState, type LocalState } from './local-state.ts';
import { downloadFirstVerifying, readHead, type RemoteHead, type RestoreMode, type SkippedSnapshot } from './restore.ts';
import type { RetryPolicy } from './retry.ts';
import type { ChunkKeys } from './chunks/encryption.ts';

export interface HydrateResult {
  state: LocalState;
  head: RemoteHead | null | undefined;
  restoredFrom: SnapshotEntry | null;
  /** Newer snapshots that failed verification and were skipped to reach `restoredFrom`. */
  skipped: SkippedSnapshot[];
  /** Set after a point-in-time restore: the first snapshot records it in the manifest. */
  rolledBackTo?: { seq: number; target: string };
  /** The local file holds commits the store has not seen: snapshot it soon. */
  pending: boolean;
  action: 'downloaded' | 'kept-local' | 'fresh' | 'skipped';
  durationMs: number;
}

interface HydrateOptions {
  store: SnapshotStore;
  dbPath: string;
  mode: RestoreMode;
  /** Roll back to this snapshot (once: not again if the manifest records this very roll-back). */
  target?: RestoreTarget;
  retry: RetryPolicy;
  log: SyncLogger;
  keys?: ChunkKeys | undefined;
  /** This file's sidecar as the caller read it at start: null if there is none or it belongs to another store. */
  local: LocalState | null;
  /** Recorded in the sidecar: the writer lease id this file's writer uses (undefined for a replica). */
  leaseId: string | undefined;
}

/** Counts schema objects; zero means the file holds nothing worth keeping. */
async function hasContent(dbPath: string): Promise<boolean> {
  const { size } = await stat(dbPath);
  if (size === 0) return false;
  const client = createClient({ url: pathToFileURL(dbPath).href });
  try {
    const result = await client.execute('SELECT count(*) AS n FROM sqlite_master');
    return Number(result.rows[0]?.[0] ?? 0) > 0;
  } catch (error) {
    throw new SyncError('CONFIG', `The local database ${dbPath} cannot be opened (${(error as Error).message}); move it away or fix it.`, { cause: error });
  } finally {
    client.close();
  }
}

/**
 * Brings the local file up to the store's latest snapshot before the app sees the database, or keeps
 * the local file when it is the newer of the two. Fails closed: if the store cannot be read, the app
 * does not start (an empty database would later overwrite the good backup).
 */
export async function hydrate(options: HydrateOptions): Promise<HydrateResult> {
  const { store, dbPath, mode, log } = options;
  const started = performance.now();
  const localExists = existsSync(dbPath);
  const state = localExists ? options.local : null;
  const done = (partial: Omit<HydrateResult, 'durationMs' | 'skipped'> & { skipped?: SkippedSnapshot[] }): HydrateResult => {
    const recorded = { ...partial.state, leaseId: options.leaseId };
    writeLocalState(dbPath, recorded);
    return { skipped: [], ...partial, state: recorded, durationMs: performance.now() - started };
  };

  if (!localExists) rmSync(`${dbPath}.sync.json`, { force: true }); // a sidecar without its file means nothing

  if (mode === 'skip') {
    const pending = localExists && (state ? state.dirty || !sameFingerprint(state.fingerprint, fingerprint(dbPath)) : await hasContent(dbPath));
    const base = state ?? { format: 1 as const, store: store.location, generation: newGeneration(), seq: 0, dirty: false, fingerprint: null };
    return done({ state: { ...base, dirty: base.dirty || pending, fingerprint: null }, head: undefined, restoredFrom: null, pending, action: 'skipped' });
  }

  const head = await readHead(store, options.retry, log);
  const latest = head && latestSnapshot(head.manifest);

  if (!latest) {
    if (mode === 'required') {
      throw new SyncError('NO_BACKUP', `restore: 'required' but ${store.location} holds no snapshot; check the container and prefix, or use restore: 'if-exists' for a first deploy.`);
    }
    const pending = localExists && (await hasContent(dbPath));
    const fresh: LocalState = { format: 1, store: store.location, generation: newGeneration(), seq: 0, dirty: pending, fingerprint: null };
    return done({ state: fresh, head, restoredFrom: null, pending, action: localExists ? 'kept-local' : 'fresh' });
  }

  // Died between publishing and recording it: the store's latest snapshot is this very file's.
  const ownPublish = state?.publishing && state.publishing.seq === head.manifest.seq && state.publishing.key === latest.key;
  if (state && ownPublish) {
    log.info({ dbPath, seq: head.manifest.seq }, 'the last run published this snapshot but stopped before recording it; continuing from it');
    state.seq = head.manifest.seq;
    state.generation = head.manifest.generation;
    state.dirty = true; // commits may have followed the snapshot; an unchanged file uploads nothing
    state.fingerprint = null;
  }
  if (state) state.publishing = undefined;

  const rollback = options.target && !alreadyRolledBack(head.manifest, options.target) ? options.target : undefined;
  if (options.target && !rollback) log.info({ target: describeTarget(options.target) }, 'point-in-time restore already done (the manifest records it); continuing from the latest snapshot');

  if (localExists) {
    const changedOutside = state !== null && !state.dirty && state.fingerprint !== null && !sameFingerprint(state.fingerprint, fingerprint(dbPath));
    const dirty = state !== null && (state.dirty || changedOutside);
    if (rollback && (dirty || (state === null && (await hasContent(dbPath))))) {
      throw new SyncError(
        'DIVERGED',
        `A point-in-time restore (${describeTarget(rollback)}) would discard ${dbPath}, which holds commits the store has not seen. Move the file away first if that is what you want.`,
      );
    }
    if (rollback) {
      // Replaced below by the requested snapshot.
    } else if (state === null) {
      if (await hasContent(dbPath)) {
        throw new SyncError(
          'DIVERGED',
          `${dbPath} exists but was not restored from ${store.location}, which holds snapshot seq ${latest.seq}. ` +
            `Move the local file away to restore the backup, or start with restore: 'skip' to keep it (its first snapshot will then refuse to replace the backup).`,
        );
      }
    } else if (state.seq === head.manifest.seq && state.generation === head.manifest.generation) {
      // The local file is the store's latest snapshot, plus any commits marked dirty: keep it.
      if (changedOutside) log.info({ dbPath }, 'local database changed outside this library since it was closed; it will be snapshotted');
      // No fingerprint means the last run did not close cleanly, so another process (drizzle-kit migrate)
      // may have changed the file unseen: snapshot it. Canonical snapshots make an unchanged file cost no upload.
      const unknown = !dirty && state.fingerprint === null;
      return done({ state: { ...state, dirty, fingerprint: null }, head, restoredFrom: null, pending: dirty || unknown, action: 'kept-local' });
    } else if (state.seq > head.manifest.seq) {
      // The store went backwards (restored or rolled back by hand): the local file is newer. Keep it.
      log.warn({ dbPath, localSeq: state.seq, storeSeq: head.manifest.seq }, 'store is older than the local database; keeping the local file and snapshotting it');
      return done({ state: { ...state, dirty: true, fingerprint: null }, head, restoredFrom: null, pending: true, action: 'kept-local' });
    } else if (dirty) {
      throw new SyncError(
        'DIVERGED',
        `${dbPath} holds commits never uploaded (from snapshot seq ${state.seq}), and ${store.location} has since moved on to seq ${head.manifest.seq} from another writer. ` +
          `Both cannot be kept automatically: copy the local file away to inspect it, then delete it to restore the store's snapshot.`,
      );
    }
  }

  const candidates = rollback ? olderFrom(head.manifest, rollback, store.location) : head.manifest.snapshots;
  // A local file being replaced may hold most chunks of the snapshot already (a restart on the same disk).
  const base = localExists ? dbPath : undefined;
  const { entry, skipped, info } = await downloadFirstVerifying(store, candidates, dbPath, options.retry, log, { keys: options.keys, ...(base ? { base } : {}) });
  // The local file continues from the store's head (seq), whichever snapshot it came from: the next
  // publish goes on top of the head, so a fallback or roll-back becomes the new latest.
  const restored: LocalState = {
    format: 1,
    store: store.location,
    generation: rollback ? newGeneration() : head.manifest.generation,
    seq: head.manifest.seq,
    dirty: rollback !== undefined,
    fingerprint: null,
  };
  log.info({ store: store.location, seq: entry.seq, bytes: entry.bytes, compressedBytes: entry.compressedBytes, skipped: skipped.length, ...info }, 'restored database from snapshot');
  return done({
    state: restored,
    head,
    restoredFrom: entry,
    skipped,
    pending: rollback !== undefined,
    action: 'downloaded',
    ...(rollback ? { rolledBackTo: { seq: entry.seq, target: describeTarget(rollback) } } : {}),
  });
}

/** True when a snapshot in the history records this very roll-back (so a restart does not repeat it). */
function alreadyRolledBack(manifest: Manifest, target: RestoreTarget): boolean {
  const wanted = describeTarget(target);
  return manifest.snapshots.some((s) => s.rolledBackTo?.target === wanted);
}

/** The target snapshot and everything older (fallback candidates), newest first. */
function olderFrom(manifest: Manifest, target: RestoreTarget, location: string): SnapshotEntry[] {
  const chosen = selectSnapshot(manifest, target);
  if (!chosen) {
    const oldest = manifest.snapshots.at(-1)!;
    throw new SyncError(
      'NOT_FOUND',
      `No retained snapshot in ${location} matches ${describeTarget(target)}: the store keeps seq ${oldest.seq} (${oldest.createdAt}) to seq ${manifest.seq}. List them with \`npx drizzle-libsql-blob list\`.`,
    );
  }
  return manifest.snapshots.slice(manifest.snapshots.indexOf(chosen));
}

