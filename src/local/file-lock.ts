/**
 * One process per local database file: an OS lock on `<db>.lock`, held for the life of the process
 * (or until `release()`), that the kernel drops when the holder dies, even by `kill -9`. Not a PID
 * file: nothing goes stale, so there is nothing to clean up or second-guess after a crash.
 *
 * How: `<db>.lock` is a tiny SQLite file opened with @libsql/client. `BEGIN EXCLUSIVE` takes SQLite's
 * EXCLUSIVE lock (fcntl byte-range locks on the file); switching to `locking_mode=EXCLUSIVE` inside
 * that transaction and writing one value (`user_version`) makes the connection keep the lock after
 * COMMIT until it lets go. SQLite's unix VFS also refuses a second connection *in the same process*
 * (fcntl alone would not: POSIX locks belong to the process), so `drizzle()` twice on one file (hot
 * reload) is refused like a second process.
 *
 * The lock file itself is never deleted: unlinking a lock file on release lets a waiter lock the
 * unlinked inode while a newcomer creates and locks a new one. It is a few KB and means nothing without
 * a live holder.
 *
 * The holder's identity (pid, host, since, what) goes to `<db>.lock.json` after the lock is taken. It is
 * informative only (error messages, `status`); the lock is the truth.
 */
import { hostname } from 'node:os';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { Client } from '@libsql/client';
import { createClient } from '@libsql/client/sqlite3';
import { SyncError, errorMessage } from '../errors.ts';

/** Who holds the lock, as written by the holder. */
export interface LockHolder {
  pid: number;
  hostname: string;
  /** ISO time the lock was taken. */
  since: string;
  /** What holds it: `drizzle()` or `cli <command>`. */
  holder: string;
}

export interface FileLock {
  readonly dbPath: string;
  /** Lets go of the lock (idempotent). The kernel does the same if the process dies. */
  release(): Promise<void>;
}

export function lockPath(dbPath: string): string {
  return `${dbPath}.lock`;
}

export function lockInfoPath(dbPath: string): string {
  return `${dbPath}.lock.json`;
}

/**
 * How long a contended acquire waits before refusing. Not zero: `inspectFileLock` (the CLI's `status`)
 * holds a SHARED lock for the microseconds of one read, and an app starting at that instant must not be
 * refused for it. A real holder keeps the lock, so the refusal still comes in about this long.
 */
const BUSY_WAIT_MS = 100;

/**
 * Takes the lock on `dbPath` for this process, or throws `SyncError('LOCKED')` naming the holder. The
 * folder of `dbPath` must exist.
 */
export async function acquireFileLock(dbPath: string, holder: string): Promise<FileLock> {
  let client: Client | undefined;
  try {
    client = openLockFile(dbPath);
    // journal_mode first, in normal locking mode (a read that lets go at once); then the lock in one exec:
    // executeMultiple runs on one connection without prepared statements left behind (see release()).
    // No fsync and no journal file: this runs on the app's thread, where an fsync waits for whatever else
    // the disk is flushing (165 ms seen beside a writer; 0.5-2.4 s under CPU load in the network fault
    // test). The file holds no data: the one page written, page 1, goes down in a single write that a
    // killed process cannot tear, and the kernel's fcntl locks do not depend on it being on disk.
    await client.executeMultiple(`PRAGMA busy_timeout=${BUSY_WAIT_MS}; PRAGMA journal_mode=MEMORY; PRAGMA synchronous=OFF;`);
    await client.executeMultiple(`BEGIN EXCLUSIVE; PRAGMA locking_mode=EXCLUSIVE; PRAGMA user_version=${process.pid}; COMMIT;`);
  } catch (error) {
    if (client) await letGo(client);
    if (isBusy(error)) throw lockedError(dbPath, readLockHolder(dbPath), error);
    throw new SyncError(
      'CONFIG',
      `Cannot lock ${lockPath(dbPath)}: ${errorMessage(error)}. The database's folder must be writable; if that file is damaged, delete it (it holds no data).`,
      { cause: error },
    );
  }
  const held = client; // this connection keeps the lock
  const info: LockHolder = { pid: process.pid, hostname: hostname(), since: new Date().toISOString(), holder };
  try {
    writeLockHolder(dbPath, info);
  } catch {
    // Informative only: a holder without its identity file still holds the lock.
  }
  let released: Promise<void> | undefined;
  return {
    dbPath,
    release: () =>
      (released ??= (async () => {
        // Our identity goes first, while we still hold the lock: the next holder's cannot be removed by us.
        if (readLockHolder(dbPath)?.pid === process.pid) rmSync(lockInfoPath(dbPath), { force: true });
        await letGo(held);
      })()),
  };
}

export type LockState = { held: false } | { held: true; holder: LockHolder | null };

/**
 * Whether another connection holds the lock on `dbPath`, without taking it: one read of the lock file
 * under a SHARED lock, refused at once while a holder has its EXCLUSIVE lock. Creates nothing: no lock
 * file means no holder. Reports this process's own lock as held too.
 */
export async function inspectFileLock(dbPath: string): Promise<LockState> {
  if (!existsSync(lockPath(dbPath))) return { held: false };
  const client = openLockFile(dbPath);
  try {
    await client.executeMultiple('PRAGMA busy_timeout=0; SELECT count(*) FROM sqlite_master;');
    return { held: false };
  } catch (error) {
    if (isBusy(error)) return { held: true, holder: readLockHolder(dbPath) };
    throw error;
  } finally {
    client.close();
  }
}

/** The identity the current (or last) holder wrote, or null when there is none or it is unreadable. */
export function readLockHolder(dbPath: string): LockHolder | null {
  try {
    const value = JSON.parse(readFileSync(lockInfoPath(dbPath), 'utf8')) as LockHolder;
    if (!Number.isSafeInteger(value.pid) || typeof value.since !== 'string') return null;
    // Left by a holder killed with -9 (its lock went with it): not the one holding it now.
    return value.hostname === hostname() && !isAlive(value.pid) ? null : value;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/** "pid 123 on host-a (drizzle(), since 2026-...)": the holder as a person reads it. */
export function describeHolder(holder: LockHolder | null): string {
  if (!holder) return 'another process (it has not written its identity yet)';
  const host = holder.hostname === hostname() ? '' : ` on ${holder.hostname}`;
  const self = holder.pid === process.pid && !host ? 'this very process, ' : '';
  return `${self}pid ${holder.pid}${host} (${holder.holder}, since ${holder.since})`;
}

function lockedError(dbPath: string, holder: LockHolder | null, cause: unknown): SyncError {
  const what = `${dbPath} is in use by ${describeHolder(holder)}: only one process may open a database file, once.`;
  const fix =
    holder?.pid === process.pid
      ? 'A second drizzle() on the same file (a hot reload?) must wait for db.$sync.close() of the first.'
      : 'Stop that process, or run the CLI against a copy (--db COPY) or use the store-only commands (status, list, verify, restore --to FILE). ' +
        'If it is the running app, its own db.$sync.flush() or its shutdown (SIGTERM, close()) takes the final snapshot.';
  return new SyncError('LOCKED', `${what} ${fix}`, { cause });
}

function openLockFile(dbPath: string): Client {
  // One connection: the lock lives on it, and the pool must not open a second one.
  return createClient({ url: `file:${lockPath(dbPath)}`, concurrency: 1 });
}

/**
 * Drops the lock before closing: libsql's close() leaves the connection open until every prepared
 * statement it ever made is garbage-collected (the client's own open-time probe is one), so the lock
 * would outlive close() by an unknown time. Back to normal locking mode plus one read releases it now.
 */
async function letGo(client: Client): Promise<void> {
  try {
    // No busy wait: after a refused acquire, the read would wait for the other holder just to fail.
    await client.executeMultiple('PRAGMA busy_timeout=0; PRAGMA locking_mode=NORMAL; SELECT count(*) FROM sqlite_master;');
  } catch {
    // Nothing held (the acquire failed before locking), or the connection is unusable: close() below.
  } finally {
    client.close();
  }
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

function writeLockHolder(dbPath: string, info: LockHolder): void {
  const path = lockInfoPath(dbPath);
  writeFileSync(`${path}.tmp`, JSON.stringify(info) + '\n');
  renameSync(`${path}.tmp`, path);
}
