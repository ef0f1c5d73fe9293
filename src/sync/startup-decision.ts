/**
 * What a start does with the local file, decided from facts alone (no I/O): the table in
 * test/unit/startup-decision.test.ts has a row for every outcome. `startup.ts` gathers the facts and
 * performs the decision; nothing else decides.
 */
import type { SyncErrorCode } from '../errors.ts';
import type { Position } from '../local/sidecar.ts';
import type { Role } from '../config.ts';
import type { RestoreMode } from './restore.ts';

export interface StartupFacts {
  /** For messages only. */
  dbPath: string;
  location: string;
  options: {
    mode: RestoreMode;
    role: Role;
    /** A point-in-time restore was asked for (`restore: { at } | { seq }`). */
    target: string | undefined;
  };
  /** `hasContent` (any schema object) is known when it matters: no sidecar, or nothing in the store. */
  local: { exists: false } | { exists: true; hasContent?: boolean };
  /** The sidecar, when it names this store and the database file exists. */
  sidecar: {
    position: Position;
    dirty: boolean;
    /** Its fingerprint (taken at clean close) no longer matches the file: someone else wrote to it. */
    changedOutside: boolean;
    /** The last run closed cleanly (a fingerprint was taken). */
    cleanClose: boolean;
    publishing?: { seq: number; key: string } | undefined;
    /** The last start moved a download into place and died (or closed) before its fsync and quick_check passed. */
    restoring?: boolean;
  } | null;
  remote:
    | { kind: 'not-read' } // restore: 'skip'
    | { kind: 'empty' } // no manifest and no object under the prefix
    | { kind: 'data-without-manifest'; objects: number; example: string }
    | {
        kind: 'manifest';
        position: Position;
        /** The newest snapshot, or null for a manifest with none (a first writer's empty manifest). */
        latest: { seq: number; key: string } | null;
        /** The requested point-in-time restore is recorded in the manifest as done already. */
        targetDone: boolean;
      };
  /** `not-requested`: role 'replica', or the store must not get a manifest (see `leaseRequest`). */
  lease: 'held' | 'held-by-other' | 'not-requested';
}

export type StartupDecision =
  | { action: 'refuse'; code: SyncErrorCode; message: string }
  | {
      role: 'writer' | 'replica';
      /**
       * download: the store's latest (falling back to older ones that verify) or, with `rollback`, the
       * target and older; keep: the local file as it is; keep-and-upload: keep it and snapshot it soon;
       * start-empty: no file and nothing in the store.
       */
      action: 'download' | 'keep' | 'keep-and-upload' | 'start-empty';
      /** The position the local file holds once the action is done ('new': a new generation at seq 0). */
      position: Position | 'new' | 'store-head';
      rollback: boolean;
      /** One line for the start-up log: why this role and this action. */
      reason: string;
    };

/**
 * Whether to request the writer lease at all. Taking it on a store without a manifest creates one, so
 * it is not requested when the store holds data but no manifest (that start refuses), nor for
 * restore: 'required' on an empty store (which must stay empty).
 */
export function leaseRequest(role: Role, remote: StartupFacts['remote'], mode: RestoreMode): boolean {
  if (role === 'replica') return false;
  if (remote.kind === 'data-without-manifest') return false;
  if (remote.kind === 'empty' && mode === 'required') return false;
  return true;
}

export function decideStartup(facts: StartupFacts): StartupDecision {
  const { dbPath, location, options, local, remote, lease } = facts;
  let sidecar = facts.sidecar;
  const refuse = (code: SyncErrorCode, message: string): StartupDecision => ({ action: 'refuse', code, message });

  if (remote.kind === 'data-without-manifest') {
    return refuse(
      'MANIFEST_MISSING',
      `${location} holds ${remote.objects} snapshot object(s) (e.g. ${remote.example}) but no manifest.json: it was deleted (a lifecycle rule, an operator) or never published. ` +
        `Refusing to start, so nothing there is replaced or deleted. Rebuild it with \`npx drizzle-libsql-blob rebuild-manifest\` (it verifies what is there), or point the app at another prefix.`,
    );
  }

  // ---- the role ----
  let role: 'writer' | 'replica';
  let roleReason: string;
  if (lease === 'held') {
    role = 'writer';
    roleReason = 'writer: the writer lease was free (or is ours)';
  } else if (lease === 'held-by-other') {
    if (options.role === 'writer') {
      return refuse(
        'LEASE_HELD',
        `Another instance holds the writer lease on ${location} (role: 'writer' fails fast). Stop the other writer, wait for its lease to expire ` +
          `(at most lease.durationSec after it died), or use role: 'auto' to start as a read replica that takes over when the lease frees.`,
      );
    }
    if (options.target) {
      return refuse('LEASE_HELD', `A point-in-time restore needs the writer lease, and another instance holds it on ${location}: stop the writer first.`);
    }
    role = 'replica';
    roleReason = 'replica: another instance holds the writer lease';
  } else if (options.role === 'replica') {
    if (options.target) return refuse('CONFIG', `A point-in-time restore needs the writer: role 'replica' never takes the lease. Use role 'auto' or 'writer'.`);
    role = 'replica';
    roleReason = "replica: role 'replica'";
  } else if (remote.kind === 'empty' && options.mode === 'required') {
    return refuse('NO_BACKUP', `restore: 'required' but ${location} holds no manifest.json (nothing was written there); check the container and prefix, or use restore: 'if-exists' for a first deploy.`);
  } else {
    return refuse('CONFIG', `The writer lease on ${location} was not requested (role ${options.role}); this is a bug in drizzle-libsql-blob.`);
  }

  const mode = role === 'replica' && options.mode === 'skip' ? 'if-exists' : options.mode; // a replica always follows the store
  if (sidecar?.restoring && local.exists) {
    // The file is a download, not anyone's commits, and may be torn or damaged: never kept, never uploaded.
    if (mode !== 'skip' && remote.kind === 'manifest' && remote.latest !== null) {
      const rollback = options.target !== undefined && !remote.targetDone;
      return {
        role,
        action: 'download',
        position: 'store-head',
        rollback,
        reason: `${roleReason}; the last restore into ${dbPath} stopped before its fsync and quick_check passed: restoring again (chunks that still verify are kept)`,
      };
    }
    return refuse(
      'CONFIG',
      `${dbPath} is an interrupted restore (its fsync and quick_check never passed)${mode === 'skip' ? " and restore: 'skip' would keep it" : ` and ${location} holds no snapshot to restore it from`}. ` +
        `Move the file away (or delete it)${mode === 'skip' ? ", or start with restore: 'if-exists' to restore it again" : ''}.`,
    );
  }
  const dirty = sidecar !== null && (sidecar.dirty || sidecar.changedOutside);
  const unknownContent = local.exists && sidecar === null && local.hasContent === true;
  if (role === 'replica' && local.exists && (dirty || unknownContent)) {
    return refuse(
      'DIVERGED',
      `${dbPath} holds commits never uploaded${sidecar?.changedOutside ? ' (it changed outside this library since it was closed)' : ''}, and this instance starts as a read replica ` +
        `(${roleReason}), which would discard them. Copy the local file away to inspect it, then delete it to start as a replica of the store.`,
    );
  }

  const keep = (upload: boolean, position: Position | 'new', why: string): StartupDecision => ({
    role,
    action: upload && role === 'writer' ? 'keep-and-upload' : 'keep',
    position,
    rollback: false,
    reason: `${roleReason}; ${why}`,
  });
  const download = (why: string, rollback = false): StartupDecision => ({ role, action: 'download', position: 'store-head', rollback, reason: `${roleReason}; ${why}` });

  if (mode === 'skip' || remote.kind === 'not-read') {
    if (!local.exists) return { role, action: 'start-empty', position: 'new', rollback: false, reason: `${roleReason}; restore: 'skip' and no local file` };
    const pending = sidecar ? sidecar.dirty || sidecar.changedOutside || !sidecar.cleanClose : local.hasContent === true;
    return keep(pending, sidecar?.position ?? 'new', "restore: 'skip': the local file is kept as it is (its first snapshot refuses to replace a backup it does not descend from)");
  }

  if (remote.kind === 'empty' || remote.latest === null) {
    if (mode === 'required') {
      return refuse('NO_BACKUP', `restore: 'required' but ${location} holds no snapshot; check the container and prefix, or use restore: 'if-exists' for a first deploy.`);
    }
    if (!local.exists) return { role, action: 'start-empty', position: 'new', rollback: false, reason: `${roleReason}; no local file and no snapshot in the store` };
    return keep(local.hasContent === true, 'new', 'no snapshot in the store: the local file is the first');
  }

  // Died between publishing and recording it: the store's latest snapshot is this very file's.
  const head = remote.position;
  if (sidecar?.publishing && sidecar.publishing.seq === head.seq && sidecar.publishing.key === remote.latest.key) {
    sidecar = { ...sidecar, position: head, dirty: true, changedOutside: false, publishing: undefined };
  }
  const dirtyNow = sidecar !== null && (sidecar.dirty || sidecar.changedOutside);
  const rollback = options.target !== undefined && !remote.targetDone;

  if (!local.exists) return download(rollback ? `point-in-time restore (${options.target})` : 'no local file: restoring the latest snapshot', rollback);
  if (rollback) {
    if (dirtyNow || (sidecar === null && local.hasContent === true)) {
      return refuse('DIVERGED', `A point-in-time restore (${options.target}) would discard ${dbPath}, which holds commits the store has not seen. Move the file away first if that is what you want.`);
    }
    return download(`point-in-time restore (${options.target}) replaces the local file`, true);
  }
  if (sidecar === null) {
    if (local.hasContent === true) {
      return refuse(
        'DIVERGED',
        `${dbPath} exists but was not restored from ${location}, which holds snapshot seq ${remote.latest.seq}. ` +
          `Move the local file away to restore the backup, or start with restore: 'skip' to keep it (its first snapshot will then refuse to replace the backup).`,
      );
    }
    return download('the local file is empty: restoring the latest snapshot');
  }
  if (sidecar.position.seq === head.seq && sidecar.position.generation === head.generation) {
    // No fingerprint means the last run did not close cleanly, so another process (drizzle-kit migrate)
    // may have changed the file unseen: snapshot it. Canonical snapshots make an unchanged file cost no upload.
    const why = sidecar.changedOutside
      ? 'the local file is the latest snapshot, changed outside this library since it was closed: it will be snapshotted'
      : dirtyNow
        ? 'the local file is the latest snapshot plus commits not in the store yet'
        : sidecar.cleanClose
          ? 'the local file is the latest snapshot'
          : 'the local file is the latest snapshot; the last run did not close cleanly, so it is checked by a snapshot';
    return keep(dirtyNow || !sidecar.cleanClose, sidecar.position, why);
  }
  if (sidecar.position.seq > head.seq) {
    if (role === 'replica') {
      return refuse(
        'DIVERGED',
        `${dbPath} holds seq ${sidecar.position.seq}, newer than ${location} (seq ${head.seq}: the store went backwards), and this instance starts as a replica, which would replace it. ` +
          `Start the writer on this file to upload it, or delete it to follow the store.`,
      );
    }
    return keep(true, sidecar.position, `the store (seq ${head.seq}) is older than the local file (seq ${sidecar.position.seq}): keeping the local file and snapshotting it`);
  }
  if (dirtyNow) {
    return refuse(
      'DIVERGED',
      `${dbPath} holds commits never uploaded (from snapshot seq ${sidecar.position.seq}), and ${location} has since moved on to seq ${head.seq} from another writer. ` +
        `Both cannot be kept automatically: copy the local file away to inspect it, then delete it to restore the store's snapshot.`,
    );
  }
  return download(`the local file (seq ${sidecar.position.seq}) is behind the store (seq ${head.seq})`);
}
