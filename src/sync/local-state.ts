import { randomUUID } from 'node:crypto';
import { renameSync, rmSync, statSync, writeFileSync, readFileSync, existsSync } from 'node:fs';

/**
 * A small sidecar file beside the database (`<db>.sync.json`) remembering which store snapshot the
 * local file came from and whether it holds commits the store has not seen. It is what lets a
 * restart keep a newer local file instead of overwriting it with an older remote snapshot.
 */
export interface FileFingerprint {
  dbBytes: number;
  dbMtimeMs: number;
  walBytes: number;
}

export interface LocalState {
  format: 1;
  store: string;
  generation: string;
  /** Store sequence the local file matches (0: never published). */
  seq: number;
  /** True from just before the first write after a snapshot until the next snapshot covers it. */
  dirty: boolean;
  /** Taken after a clean close; a mismatch at start means another process changed the file. */
  fingerprint: FileFingerprint | null;
  /** The writer lease id this file's writer used: a restart on the same disk re-takes its own lease at once. */
  leaseId?: string | undefined;
  /**
   * Written just before a manifest publish: if the process dies after the manifest landed but before
   * `seq` was updated here, the next start recognizes the store's latest snapshot as this file's own.
   */
  publishing?: { seq: number; key: string } | undefined;
}

export function statePath(dbPath: string): string {
  return `${dbPath}.sync.json`;
}

export function newGeneration(): string {
  return randomUUID().replaceAll('-', '').slice(0, 16);
}

export function readLocalState(dbPath: string): LocalState | null {
  const path = statePath(dbPath);
  if (!existsSync(path)) return null;
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as LocalState;
    if (value.format !== 1 || typeof value.generation !== 'string' || !Number.isSafeInteger(value.seq)) return null;
    return value;
  } catch {
    return null; // unreadable sidecar: treated like a file of unknown origin
  }
}

/** Written synchronously (tiny, and it must be on disk before the write it guards). */
export function writeLocalState(dbPath: string, state: LocalState): void {
  const path = statePath(dbPath);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(state) + '\n');
  renameSync(tmp, path);
}

export function removeLocalState(dbPath: string): void {
  rmSync(statePath(dbPath), { force: true });
}

export function fingerprint(dbPath: string): FileFingerprint | null {
  try {
    const db = statSync(dbPath);
    let walBytes = 0;
    try {
      walBytes = statSync(`${dbPath}-wal`).size;
    } catch {
      walBytes = 0;
    }
    return { dbBytes: db.size, dbMtimeMs: db.mtimeMs, walBytes };
  } catch {
    return null;
  }
}

export function sameFingerprint(a: FileFingerprint | null, b: FileFingerprint | null): boolean {
  return a !== null && b !== null && a.dbBytes === b.dbBytes && a.dbMtimeMs === b.dbMtimeMs && a.walBytes === b.walBytes;
}
