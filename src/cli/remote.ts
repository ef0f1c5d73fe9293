/**
 * Reads the store's manifest for the CLI: the library's own decoding (the context's store retries), plus whether the
 * writer lease on it is held. Read-only: nothing here writes to the store.
 */
import { SyncError } from '../errors.ts';
import type { ObjectStore } from '../store/store.ts';
import { MANIFEST_KEY, decodeManifest, noMatch, selectSnapshot, type Manifest, type MigrationLookup, type SnapshotEntry } from '../sync/manifest.ts';
import type { SnapshotSelector } from './args.ts';
import type { CliContext } from './context.ts';

export interface RemoteState {
  manifest: Manifest;
  etag: string;
  /** A writer holds the lease on the manifest (an instance is running as the writer). */
  leased: boolean;
}

/** null: the store has no manifest at all (nothing was ever published there). */
export async function readRemote(store: ObjectStore): Promise<RemoteState | null> {
  const object = await store.readSmall(MANIFEST_KEY);
  if (object === null) return null;
  return { manifest: decodeManifest(object.body, store.location), etag: object.etag, leased: object.leased };
}

/** The manifest, which must list at least one snapshot: otherwise `NO_BACKUP`, naming where we looked. */
export async function readBackups(ctx: CliContext): Promise<RemoteState> {
  const { store, storeSource } = ctx;
  const remote = await readRemote(store);
  const where = `${store.location} (chosen by ${storeSource})`;
  if (remote === null) throw new SyncError('NO_BACKUP', `No backup at ${where}: it holds no ${MANIFEST_KEY}. Check the store settings, or pass --backup-dir / --prefix.`);
  if (remote.manifest.snapshots.length === 0) throw new SyncError('NO_BACKUP', `No snapshot at ${where} yet: its ${MANIFEST_KEY} lists none (a writer started but never published).`);
  return remote;
}

/** The snapshots a selector names, newest first; a selector that matches nothing is a `CONFIG` error. */
export function pick(manifest: Manifest, select: SnapshotSelector, location: string, journal?: MigrationLookup): SnapshotEntry[] {
  if ('all' in select) return [...manifest.snapshots];
  if ('latest' in select) return manifest.snapshots.slice(0, 1);
  const found = selectSnapshot(manifest, select, journal);
  if (found) return [found];
  throw new SyncError('CONFIG', noMatch(manifest, select, location, journal));
}
