/**
 * `restore`: downloads one snapshot (latest, `--seq N` or `--at TIME`) with the library's own
 * `downloadSnapshot` (size, sha256 and quick_check verified in a worker, then an atomic rename) into the
 * database file or `--to FILE`. Only reads the store.
 *
 * The sidecar (`<file>.sync.json`): written only when the target is the database file and the snapshot
 * is the store's latest, so the library starts on it without downloading it again. Otherwise any old
 * sidecar beside the target is removed: a `--to` copy is for inspection, and an older snapshot in the
 * database file must not pass for the store's head (the library then refuses to start on it with
 * DIVERGED, instead of silently downloading the latest over it).
 *
 * The target's file lock is held throughout: beside a live app on that file (or a `snapshot`), the
 * command fails with LOCKED before reading the store or touching the file and its sidecar. No writer
 * lease is ever taken: restore only reads the store.
 *
 * `--if-exists` is for a deploy's start script (`restore --if-exists && drizzle-kit migrate && ...`): the
 * first deploy's empty store, and a restart that finds its file still on disk, exit 0 instead of failing
 * the script. It never replaces an existing file (that stays `--force`'s); the library's own start-up then
 * decides what the kept file is worth against the store (keep, upload, download, or DIVERGED).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SyncError, findSyncError } from '../errors.ts';
import { acquireFileLock } from '../local/file-lock.ts';
import { Sidecar, removeSidecar } from '../local/sidecar.ts';
import { downloadSnapshot } from '../sync/restore.ts';
import { resolveChunkKeys } from '../sync/chunks/encryption.ts';
import type { SnapshotSelector } from './args.ts';
import type { CliContext } from './context.ts';
import { formatBytes, formatDuration } from './format.ts';
import { chunkProgress, progressStore } from './progress.ts';
import { pick, readBackups, readRemote, type RemoteState } from './remote.ts';

export interface RestoreOptions {
  select: SnapshotSelector;
  to?: string;
  force: boolean;
  /** Exit 0, changing nothing, when the store holds no snapshot or the target exists (without --force). */
  ifExists?: boolean;
  /** drizzle-kit's migrations folder, naming a --before-migration by its tag. */
  migrations?: string;
}

export async function restore(ctx: CliContext, options: RestoreOptions): Promise<number> {
  const dbPath = ctx.dbPath();
  const target = options.to === undefined ? dbPath : resolve(options.to);
  const isDatabase = target === dbPath;
  // Also with --if-exists on an empty store: the next step (drizzle-kit migrate) creates the file there.
  mkdirSync(dirname(target), { recursive: true });
  const lock = await acquireFileLock(target, 'cli restore');
  try {
    return await restoreLocked(ctx, options, target, isDatabase);
  } finally {
    await lock.release();
  }
}

async function restoreLocked(ctx: CliContext, options: RestoreOptions, target: string, isDatabase: boolean): Promise<number> {
  const { out } = ctx;
  if (existsSync(target) && !options.force) {
    if (options.ifExists) {
      out.result({ path: target, restored: null, reason: 'exists' });
      out.line(`${target} already exists: kept, nothing downloaded (--if-exists never replaces a file; --force does)`);
      return 0;
    }
    throw new SyncError('CONFIG', `${target} already exists; pass --force to replace it${options.to === undefined ? ', or --to FILE to restore somewhere else' : ''}.`);
  }

  const remote = options.ifExists ? await readIfAny(ctx) : await readBackups(ctx);
  if (remote === null) {
    out.result({ path: target, store: ctx.store.location, restored: null, reason: 'empty' });
    out.line(`no snapshot in ${ctx.store.location} (chosen by ${ctx.storeSource}) yet: nothing to restore, ${target} not created (--if-exists)`);
    return 0;
  }
  const { manifest, leased } = remote;
  // A migration named by its tag: the app's journal (--migrations, or drizzle-kit's default ./drizzle) says when it was made.
  const folder = options.migrations ?? (existsSync(resolve('drizzle', 'meta', '_journal.json')) ? 'drizzle' : undefined);
  const journal = 'beforeMigration' in options.select && folder !== undefined ? (await import('../migrations/journal.ts')).MigrationsJournal.read(folder) : undefined;
  const [entry] = pick(manifest, options.select, ctx.store.location, journal);
  const isLatest = entry!.seq === manifest.seq;
  if (isDatabase && leased && existsSync(target)) {
    // Not on this file on this machine (its lock would have refused us): another machine, or another file.
    out.warn(`a writer holds the lease on ${ctx.store.location} (not on ${target} here: it is not in use); it keeps publishing, so this file will fall behind the store.`);
  }

  const started = performance.now();
  // Encrypted incremental snapshots: the key comes from SNAPSHOT_ENCRYPTION_KEY, as for the app.
  const meter = chunkProgress(ctx, entry!);
  const timing = await downloadSnapshot(progressStore(ctx, [entry!]), entry!, target, {
    keys: await resolveChunkKeys(undefined),
    snapshots: manifest.snapshots, // a page delta is restored from its chain
    ...(meter ? { onProgress: (bytes: number) => meter.add(bytes) } : {}),
  });
  meter?.finish();
  removeSidecar(target);
  if (isDatabase && isLatest) Sidecar.restoredLatest(target, ctx.store.location, { seq: manifest.seq, generation: manifest.generation });
  const ms = performance.now() - started;

  out.result({ path: target, snapshot: entry, latest: isLatest, sidecar: isDatabase && isLatest, durationMs: ms, downloadMs: timing.downloadMs, verifyMs: timing.verifyMs });
  out.line(
    `restored seq ${entry!.seq} (taken ${entry!.createdAt}, ${formatBytes(entry!.bytes)}) to ${target} in ${formatDuration(ms)}` +
      ` (download ${formatDuration(timing.downloadMs)}, verify ${formatDuration(timing.verifyMs)})`,
  );
  if (isDatabase && !isLatest) {
    out.line(
      `note: seq ${entry!.seq} is older than the store's latest (seq ${manifest.seq}): the library refuses to start on this file while ` +
        `the store holds newer snapshots (DIVERGED). To roll the store itself back, use the library's restore: { seq: ${entry!.seq} } option` +
        ('beforeMigration' in options.select ? ` (or restore: { beforeMigration: ${JSON.stringify(options.select.beforeMigration)} }).` : '.'),
    );
  }
  return 0;
}

/**
 * The store's manifest if it lists a snapshot, else null (no manifest, an empty one, or a container that
 * does not exist yet but will be created by the first snapshot). Everything else fails as without --if-exists.
 */
async function readIfAny(ctx: CliContext): Promise<RemoteState | null> {
  let remote: RemoteState | null;
  try {
    remote = await readRemote(ctx.store);
  } catch (error) {
    if (ctx.createsContainer && isMissingContainer(error)) return null;
    throw error;
  }
  return remote === null || remote.manifest.snapshots.length === 0 ? null : remote;
}

function isMissingContainer(error: unknown): boolean {
  const sync = findSyncError(error);
  // The SDK's code, as the store read it (HEAD-like responses carry it only in details.errorCode).
  const cause = sync?.cause as { code?: unknown; details?: { errorCode?: unknown } } | undefined;
  return sync?.code === 'STORE_NOT_FOUND' && (cause?.code ?? cause?.details?.errorCode) === 'ContainerNotFound';
}
