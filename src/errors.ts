/**
 * Every failure this library reports is a `SyncError` with a stable `code`, so apps can branch on it
 * and humans get a message that names what to fix.
 */
export type SyncErrorCode =
  | 'CONFIG' // bad options or environment: the message names the option
  | 'STORE_UNREACHABLE' // network failure, DNS, timeout, 5xx after retries
  | 'STORE_AUTH' // 401/403: wrong key, expired SAS, missing RBAC role
  | 'STORE_NOT_FOUND' // the container (or directory) itself does not exist
  | 'NOT_FOUND' // one object is missing from the store (a snapshot, chunk or index blob)
  | 'CONFLICT' // a conditional store operation's condition did not hold (If-Match, If-None-Match, If-Unmodified-Since)
  | 'SNAPSHOT_CORRUPT' // size, sha256, codec framing or quick_check failed
  | 'NO_BACKUP' // restore: 'required' and the store holds no manifest
  | 'MANIFEST_MISSING' // the store holds snapshot objects but no manifest: refused, nothing replaced or deleted
  | 'DIVERGED' // the local file and the store each hold data the other lacks: neither may replace the other
  | 'CLOSED' // the database was closed (or is closing)
  | 'NOT_DURABLE' // durable(): the commits were not in the store within its timeout (they stay in the local file and upload later)
  | 'LEASE_HELD' // another instance holds the writer lease (role 'writer' fails fast with it)
  | 'LEASE_LOST' // this writer's lease expired and was taken, or was broken: it is fenced off
  | 'READ_ONLY' // a write on a read replica (another instance is the writer)
  | 'LOCKED' // another process on this machine (or a second drizzle() in this one) has the local database file open
  | 'SCHEMA_AHEAD' // the database has migrations the app's migrations folder does not know (old code on a newer schema): refused before any write
  | 'MIGRATION_FAILED' // migrations.apply: a migration's SQL failed; the database is as it was before (one transaction) and nothing was uploaded
  | 'SNAPSHOT_FAILED'; // a snapshot failed for a reason of its own (local I/O, the worker) or did not finish before the shutdown deadline

export class SyncError extends Error {
  readonly code: SyncErrorCode;
  /** True when retrying the same operation later may succeed (network blips, throttling, 5xx). */
  readonly transient: boolean;

  constructor(code: SyncErrorCode, message: string, options: { cause?: unknown; transient?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SyncError';
    this.code = code;
    this.transient = options.transient ?? false;
  }
}

/** The SyncError in `error` or its `cause` chain (drizzle wraps driver errors in DrizzleQueryError). */
export function findSyncError(error: unknown): SyncError | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 8; current = current.cause, depth++) {
    if (current instanceof SyncError) return current;
  }
  return undefined;
}

/**
 * True when `error` itself is a SyncError (with that `code`, if given), and narrows it: after
 * `if (isSyncError(e, 'READ_ONLY'))`, `e.code` is `'READ_ONLY'`. It does not look through the `cause`
 * chain, because a narrowing that did would be a lie: a drizzle query that failed with READ_ONLY rejects
 * with drizzle's `DrizzleQueryError`, whose own `code` is not 'READ_ONLY'. For those, use
 * `hasSyncError` (a yes/no over the chain) or `findSyncError` (the SyncError itself, to read its code).
 */
export function isSyncError<C extends SyncErrorCode>(error: unknown, code: C): error is SyncError & { readonly code: C };
export function isSyncError(error: unknown): error is SyncError;
export function isSyncError(error: unknown, code?: SyncErrorCode): error is SyncError {
  return error instanceof SyncError && (code === undefined || error.code === code);
}

/**
 * True when `error` is, or was caused by, a SyncError (with that `code`, if given): the check for errors
 * that come out of a drizzle query. It narrows nothing (`error` may be the wrapper, and a `false` says
 * nothing about its type); read the code from `findSyncError(error)`.
 */
export function hasSyncError(error: unknown, code?: SyncErrorCode): boolean {
  const found = findSyncError(error);
  return found !== undefined && (code === undefined || found.code === code);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
