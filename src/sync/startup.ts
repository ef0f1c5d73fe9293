/**
 * Start-up: gathers the facts (local file, sidecar, store head, lease outcome), asks the pure
 * `decideStartup()` what to do, and performs only that. Fails closed: if the store cannot be read, the
 * app does not start (an empty database would later overwrite the good backup).
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { createClient } from '@libsql/client/sqlite3';
import { SyncError, isSyncError } from '../errors.ts';
import type { RestoreVerify, Role } from '../config.ts';
import type { SyncLogger } from '../log.ts';
import type { LeaseGrant, ObjectStore, SmallObject } from '../store/store.ts';
import { changedOutside, newGeneration, type Position, type Sidecar, type SidecarState } from '../local/sidecar.ts';
import { describeTarget, latestSnapshot, noMatch, selectSnapshot, type Manifest, type MigrationLookup, type RestoreTarget, type SnapshotEntry } from './manifest.ts';
import { DECODE_HERE_BYTES, checkDatabase, downloadFirstVerifying, installFile, markWalMode, readHead, syncFile, type RemoteHead, type RestoreMode, type SkippedSnapshot } from './restore.ts';
import { warmWorkers } from './run-in-worker.ts';
import type { ChunkKeys } from './chunks/encryption.ts';
import type { WriterLease } from './lease.ts';
import { settleBeforeReplacing } from '../local/settle-connections.ts';
import { decideStartup, leaseRequest, type StartupDecision, type StartupFacts } from './startup-decision.ts';

export interface StartupResult {
  role: 'writer' | 'replica';
  decision: Exclude<StartupDecision, { action: 'refuse' }>;
  /** The store's head as read after the lease: `undefined` = not read (restore: 'skip'). */
  head: RemoteHead | null | undefined;
  restoredFrom: SnapshotEntry | null;
  /** Newer snapshots that failed verification and were skipped to reach `restoredFrom`. */
  skipped: SkippedSnapshot[];
  /** Set after a point-in-time restore: the first snapshot records it in the manifest. */
  rolledBackTo?: { seq: number; target: string };
  /** The local file holds commits the store has not seen: snapshot it soon. */
  pending: boolean;
  durationMs: number;
  /**
   * A download installed before its fsync (and, unless 'hash-only', its quick_check): the controller runs
   * it beside the open database, holding writes and snapshots until it passes, then records `started`.
   */
  check?: RestoreCheck;
}

export interface RestoreCheck {
  verify: Exclude<RestoreVerify, 'before-open'>;
  /** Where the file stands once the check passed (for `Sidecar.started`). */
  position: Position;
  pending: boolean;
  /** fsync of the file and its directory, then quick_check unless 'hash-only'. Rejects SNAPSHOT_CORRUPT. */
  run(): Promise<void>;
}

export interface StartupOptions {
  store: ObjectStore;
  dbPath: string;
  mode: RestoreMode;
  role: Role;
  /** Roll back to this snapshot (once: not again if the manifest records this very roll-back). */
  target: RestoreTarget | undefined;
  /** When a downloaded file is quick_checked and fsynced: before it is installed, or beside the open database. */
  verify: RestoreVerify;
  log: SyncLogger;
  keys: ChunkKeys | undefined;
  /** Already holds this opener's lease id (recorded before the lease is requested). */
  sidecar: Sidecar;
  /** The sidecar as found at start, when it names this store and the file exists. */
  previous: SidecarState | null;
  /** Absent for role 'replica'. */
  lease: WriterLease | undefined;
  /** The app's migrations journal (migrations.folder), naming the migration of a `beforeMigration` target. */
  journal?: MigrationLookup;
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

/** What the store holds: a manifest, nothing at all, or snapshot objects without a manifest (never "empty"). */
async function remoteFacts(store: ObjectStore, head: RemoteHead | null, target: RestoreTarget | undefined): Promise<StartupFacts['remote']> {
  if (head) {
    const latest = latestSnapshot(head.manifest);
    return {
      kind: 'manifest',
      position: { seq: head.manifest.seq, generation: head.manifest.generation },
      latest: latest ? { seq: latest.seq, key: latest.key } : null,
      targetDone: target !== undefined && alreadyRolledBack(head.manifest, target),
    };
  }
  const objects = [...(await store.list('snapshots/')), ...(await store.list('chunks/'))];
  return objects.length === 0 ? { kind: 'empty' } : { kind: 'data-without-manifest', objects: objects.length, example: objects[0]!.key };
}

export async function startUp(options: StartupOptions): Promise<StartupResult> {
  const { store, dbPath, log, lease, previous } = options;
  const started = performance.now();
  const localExists = existsSync(dbPath);

  // 1. The store, before the lease: taking the lease on a store without a manifest creates one.
  const skip = options.mode === 'skip' && options.role !== 'replica';
  let head = await probeAndReadHead(store, skip);
  // A restore of more than a few chunks decodes in a file worker: it boots now, on another core, beside
  // the lease and the index read. A small one is decoded on this thread and boots none before it opens.
  const latest = head ? latestSnapshot(head.manifest) : undefined;
  if (latest && latest.compressedBytes > DECODE_HERE_BYTES) warmWorkers(1);
  // An empty disk downloads the latest snapshot (unless told to roll back): its chunk index is read
  // now, beside the lease. The restore verifies it against the manifest it finally uses, as any read.
  const indexes = new Map<string, Promise<SmallObject | null>>();
  // (A page delta is restored from its chain's chunk set: that index.)
  const chunkSet = latest?.kind === 'delta' ? head!.manifest.snapshots.find((s) => s.key === latest.base) : latest;
  if (!localExists && chunkSet?.kind === 'chunks' && options.target === undefined) {
    const read = store.readSmall(chunkSet.key);
    read.catch(() => {}); // unused, or its failure is met again when the restore reads it
    indexes.set(chunkSet.key, read);
  }
  let remote: StartupFacts['remote'] = skip ? { kind: 'not-read' } : await remoteFacts(store, head ?? null, options.target);

  // 2. The lease.
  let leaseOutcome: StartupFacts['lease'] = 'not-requested';
  if (lease && leaseRequest(options.role, remote.kind === 'not-read' ? { kind: 'empty' } : remote, options.mode === 'skip' ? 'if-exists' : options.mode)) {
    let grant: LeaseGrant = {};
    try {
      options.sidecar.leaseRequested();
      grant = await lease.acquire(); // creates the empty manifest on an empty store (leaseRequest allowed it)
      leaseOutcome = 'held';
    } catch (error) {
      if (!isSyncError(error, 'LEASE_HELD')) throw error;
      leaseOutcome = 'held-by-other';
    }
    // Another writer may have published (and released) between the first read and the lease: read
    // again, unless we hold the lease and either read nothing to begin with ('skip') or the grant shows
    // the very manifest read (nothing was written since; now nobody can).
    if (!(leaseOutcome === 'held' && (skip || headIsCurrent(head, grant)))) {
      head = await readHead(store);
      remote = await remoteFacts(store, head, options.target);
    }
  }

  // 3. The decision.
  const sidecarFacts: StartupFacts['sidecar'] = previous
    ? {
        position: { seq: previous.seq, generation: previous.generation },
        dirty: previous.dirty,
        changedOutside: changedOutside(previous, dbPath),
        cleanClose: previous.fingerprint !== null,
        publishing: previous.publishing,
        restoring: previous.restoring === true,
      }
    : null;
  const needContent = localExists && (previous === null || remote.kind === 'empty' || (remote.kind === 'manifest' && remote.latest === null));
  const decision = decideStartup({
    dbPath,
    location: store.location,
    options: { mode: options.mode, role: options.role, target: options.target ? describeTarget(options.target) : undefined },
    local: localExists ? { exists: true, ...(needContent ? { hasContent: await hasContent(dbPath) } : {}) } : { exists: false },
    sidecar: sidecarFacts,
    remote,
    lease: leaseOutcome,
  });
  if (decision.action === 'refuse') throw new SyncError(decision.code, decision.message);

  // 4. The action.
  const position = (p: Position | 'new' | 'store-head'): Position =>
    p === 'new' ? { seq: 0, generation: newGeneration() } : p === 'store-head' ? { seq: head!.manifest.seq, generation: head!.manifest.generation } : p;
  // A roll-back continues from the store's head in a new generation (its first snapshot says so).
  const finalPosition = decision.action === 'download' && decision.rollback ? { seq: head!.manifest.seq, generation: newGeneration() } : position(decision.position);
  const pending = decision.action === 'keep-and-upload' || (decision.action === 'download' && decision.rollback);
  const done = (extra: Partial<StartupResult> = {}): StartupResult => {
    log.info({ dbPath, role: decision.role, action: decision.action, store: store.location }, `started as ${decision.reason}`);
    return { role: decision.role, decision, head, restoredFrom: null, skipped: [], pending, durationMs: performance.now() - started, ...extra };
  };
  if (decision.action !== 'download') {
    options.sidecar.started(finalPosition, pending);
    return done();
  }

  const manifest = head!.manifest;
  const candidates = decision.rollback ? olderFrom(manifest, options.target!, store.location, options.journal) : manifest.snapshots;
  const verify = options.verify;
  const before = verify === 'before-open';
  // A local file being replaced may hold most chunks of the snapshot already (a restart on the same disk).
  const { entry, skipped, info } = await downloadFirstVerifying(store, candidates, dbPath, log, {
    keys: options.keys,
    indexes,
    ...(localExists ? { base: dbPath } : {}),
    check: before ? 'quick-check' : 'none',
    fsync: before,
    decodeHereUntilWorkersBoot: true, // nothing is served yet
    // Checked later: the sidecar says so before the file is in place (a restart then downloads again).
    install: async (verifiedPath: string) => {
      // Our connections on the file being replaced (hasContent's, an earlier close()d instance's, a
      // worker's) must be gone first: one closing later could delete the new file's WAL by path.
      if (localExists) await settleBeforeReplacing(dbPath);
      if (!before) options.sidecar.restoring(finalPosition);
      // A writer's connection switches the file to WAL at once (prepareWriterConnection). A replica's file
      // stays in rollback mode: it swaps files under its own connections, and a closed connection whose
      // statements are not yet garbage-collected closes later and then deletes `-wal`/`-shm` by path.
      if (decision.role === 'writer') markWalMode(verifiedPath);
      installFile(verifiedPath, dbPath);
    },
  });
  log.info({ store: store.location, seq: entry.seq, bytes: entry.bytes, compressedBytes: entry.compressedBytes, skipped: skipped.length, verify, ...info }, 'restored database from snapshot');
  if (before) options.sidecar.started(finalPosition, pending);
  // The local file continues from the store's head (seq), whichever snapshot it came from: the next
  // publish goes on top of the head, so a fallback or roll-back becomes the new latest.
  return done({
    restoredFrom: entry,
    skipped,
    ...(decision.rollback ? { rolledBackTo: { seq: entry.seq, target: describeTarget(options.target!) } } : {}),
    ...(before
      ? {}
      : {
          check: {
            verify,
            position: finalPosition,
            pending,
            async run() {
              // Side by side, as downloadSnapshot's own checks: one waits on the disk, the other on the CPU.
              await Promise.all([syncFile(dbPath), verify === 'background' ? checkDatabase(dbPath) : undefined]);
            },
          },
        }),
  });
}

/**
 * The store's probe and its head, read side by side (one round trip, not two). The probe's failure
 * names the fix, so it wins; a head read that failed because the probe had to create the container
 * is read again. `skip`: only the probe.
 */
async function probeAndReadHead(store: ObjectStore, skip: boolean): Promise<RemoteHead | null | undefined> {
  const [probed, read] = await Promise.allSettled([store.probe(), skip ? undefined : readHead(store)]);
  if (probed.status === 'rejected') throw probed.reason;
  if (read.status === 'fulfilled') return read.value;
  if (isSyncError(read.reason, 'STORE_NOT_FOUND')) return readHead(store);
  throw read.reason;
}

/** Whether the lease was granted on the very manifest `head` read (same ETag): then no re-read is needed. */
export function headIsCurrent(head: RemoteHead | null | undefined, grant: LeaseGrant): boolean {
  return head !== undefined && head !== null && grant.etag !== undefined && grant.etag === head.etag;
}

/** True when a snapshot in the history records this very roll-back (so a restart does not repeat it). */
function alreadyRolledBack(manifest: Manifest, target: RestoreTarget): boolean {
  const wanted = describeTarget(target);
  return manifest.snapshots.some((s) => s.rolledBackTo?.target === wanted);
}

/** The target snapshot and everything older (fallback candidates), newest first. */
function olderFrom(manifest: Manifest, target: RestoreTarget, location: string, journal: MigrationLookup | undefined): SnapshotEntry[] {
  const chosen = selectSnapshot(manifest, target, journal);
  if (!chosen) throw new SyncError('CONFIG', `restore ${describeTarget(target)}: ${noMatch(manifest, target, location, journal)}`);
  return manifest.snapshots.slice(manifest.snapshots.indexOf(chosen));
}
