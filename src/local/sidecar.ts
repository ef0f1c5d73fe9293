import { randomUUID } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';

/**
 * The sidecar: a small file beside the database (`<db>.sync.json`) remembering which store position the
 * local file holds, whether it holds commits the store has not seen, and the writer lease id its writer
 * uses. It is what lets a restart keep a newer local file instead of overwriting it with an older remote
 * snapshot, and re-take its own lease at once after a crash.
 *
 * This module is the only one that writes it. Every change is a named transition below, written
 * synchronously (tiny, and it must be in the file before the step it guards), in place (see write()).
 */
export interface FileFingerprint {
  dbBytes: number;
  dbMtimeMs: number;
  walBytes: number;
}

export interface SidecarState {
  format: 1;
  /** The store's location (`Store.location`): a sidecar written for another store says nothing here. */
  store: string;
  generation: string;
  /** Store sequence the local file matches (0: never published). */
  seq: number;
  /** True from just before the first write after a snapshot until the next snapshot covers it. */
  dirty: boolean;
  /** Taken after a clean close; a mismatch at start means another process changed the file. */
  fingerprint: FileFingerprint | null;
  /**
   * The writer lease id this file's writer uses, recorded before the lease is requested: a restart on the
   * same disk (after a crash at any point, even before the database file exists) re-takes it at once.
   */
  leaseId?: string | undefined;
  /**
   * Written just before a manifest publish: if the process dies after the manifest landed but before
   * `seq` was updated here, the next start recognizes the store's latest snapshot as this file's own.
   */
  publishing?: { seq: number; key: string } | undefined;
  /**
   * Set when a downloaded file is moved into place before its fsync and quick_check finished (they run
   * beside the open database): until `started()` clears it, the file may be torn after a power loss or
   * fail the check, so the next start treats it as an interrupted restore and downloads again (keeping
   * only chunks that still verify), never as commits to upload.
   */
  restoring?: boolean | undefined;
}

/** A store position: what the local file holds. */
export interface Position {
  seq: number;
  generation: string;
}

export function sidecarPath(dbPath: string): string {
  return `${dbPath}.sync.json`;
}

export function newGeneration(): string {
  return randomUUID().replaceAll('-', '').slice(0, 16);
}

export function newLeaseId(): string {
  return randomUUID();
}

/** The sidecar as stored, or null when there is none or it cannot be read (a file of unknown origin). */
export function readSidecar(dbPath: string): SidecarState | null {
  const path = sidecarPath(dbPath);
  if (!existsSync(path)) return null;
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as SidecarState;
    if (value.format !== 1 || typeof value.generation !== 'string' || !Number.isSafeInteger(value.seq)) return null;
    return value;
  } catch {
    return null;
  }
}

/** The sidecar's file is padded (with spaces, which JSON allows) to whole blocks of this size. */
const SIDECAR_BLOCK_BYTES = 4096;

/**
 * Overwrites the file in place, padded to whole blocks so it never shrinks (nothing to cut off: a
 * write that completed is all there is). Not a temporary file renamed over it: a writer publishing
 * after every commit (durable()) writes this two or three times per upload on the app's thread, and
 * each rename cost 5-19 ms there (ext4 starts writing the new file's data back on a rename over an
 * existing one), against tens of µs for a write into the page the file already has. A process killed
 * at any point leaves the old or the new content (a write of one page either ran or did not); the
 * sidecar is not fsynced either way, and matters for restarts on the same disk.
 */
function write(dbPath: string, state: SidecarState): void {
  const json = Buffer.from(JSON.stringify(state) + '\n');
  const file = openSync(sidecarPath(dbPath), constants.O_RDWR | constants.O_CREAT, 0o644); // not truncated: overwritten below
  try {
    const size = Math.max(fstatSync(file).size, Math.ceil(json.length / SIDECAR_BLOCK_BYTES) * SIDECAR_BLOCK_BYTES);
    const padded = Buffer.alloc(size, 0x20);
    json.copy(padded);
    for (let done = 0; done < size; ) done += writeSync(file, padded, done, size - done, done);
  } finally {
    closeSync(file);
  }
}

export function removeSidecar(dbPath: string): void {
  rmSync(sidecarPath(dbPath), { force: true });
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

/** True when the file was changed by someone else since the last clean close (e.g. `drizzle-kit migrate`). */
export function changedOutside(state: SidecarState, dbPath: string): boolean {
  return !state.dirty && state.fingerprint !== null && !sameFingerprint(state.fingerprint, fingerprint(dbPath));
}

/**
 * The live sidecar of one open database: the current state in memory, each transition written through.
 */
export class Sidecar {
  readonly dbPath: string;
  #state: SidecarState;
  /** The file as it was before this opener (null: none), put back by `abandon()`. */
  readonly #original: string | null;

  private constructor(dbPath: string, state: SidecarState, original: string | null) {
    this.dbPath = dbPath;
    this.#state = state;
    this.#original = original;
  }

  /**
   * Start-up: picks the lease id this opener will request (the one already in the sidecar if it names
   * this store, so a restart re-takes its own lease at once; else a new one) and keeps what the sidecar
   * says for the start-up decision (`previous`: only when the database file exists). Writes nothing yet.
   */
  static open(dbPath: string, location: string, options: { writer: boolean }): { sidecar: Sidecar; previous: SidecarState | null } {
    const original = existsSync(sidecarPath(dbPath)) ? readFileSync(sidecarPath(dbPath), 'utf8') : null;
    const stored = readSidecar(dbPath);
    const ours = stored?.store === location ? stored : null;
    const previous = ours && existsSync(dbPath) ? ours : null;
    const leaseId = options.writer ? ours?.leaseId || newLeaseId() : undefined;
    const state: SidecarState = previous
      ? { ...previous, leaseId }
      : { format: 1, store: location, generation: '', seq: 0, dirty: false, fingerprint: null, leaseId };
    return { sidecar: new Sidecar(dbPath, state, original), previous };
  }

  /**
   * Just before the writer lease is requested: the lease id goes on disk first, so a start killed at
   * any later point (even before the database file exists) leaves a restart able to re-take it.
   */
  leaseRequested(): void {
    write(this.dbPath, this.#state);
  }

  /** A start that failed and holds no lease: the sidecar goes back to what it was (nothing left behind). */
  abandon(): void {
    if (this.#original === null) removeSidecar(this.dbPath);
    else writeFileSync(sidecarPath(this.dbPath), this.#original);
  }

  get state(): Readonly<SidecarState> {
    return this.#state;
  }

  get leaseId(): string | undefined {
    return this.#state.leaseId;
  }

  position(): Position {
    return { seq: this.#state.seq, generation: this.#state.generation };
  }

  #set(next: SidecarState): void {
    this.#state = next;
    write(this.dbPath, next);
  }

  /** Start-up decided where the local file stands (downloaded and checked, kept, fresh): records it once. */
  started(position: Position, dirty: boolean): void {
    this.#set({ ...this.#state, ...position, dirty, fingerprint: null, publishing: undefined, restoring: undefined });
  }

  /**
   * Just before a downloaded file whose fsync and quick_check are still to come replaces the database
   * (see SidecarState.restoring); `started()` follows once both passed.
   */
  restoring(position: Position): void {
    this.#set({ ...this.#state, ...position, dirty: false, fingerprint: null, publishing: undefined, restoring: true });
  }

  /** Before the first write after a snapshot: a crash after it must not look like a clean file. */
  writeBegan(): void {
    if (this.#state.dirty) return;
    this.#set({ ...this.#state, dirty: true, fingerprint: null });
  }

  /** Just before a manifest write (see SidecarState.publishing). */
  publishing(entry: { seq: number; key: string }): void {
    this.#set({ ...this.#state, publishing: { seq: entry.seq, key: entry.key } });
  }

  /** A snapshot is durable in the store; commits made since keep the file dirty. */
  published(position: Position, stillDirty: boolean): void {
    this.#set({ ...this.#state, ...position, dirty: stillDirty, fingerprint: null, publishing: undefined });
  }

  /** A replica reopened on a newer snapshot from the store. */
  followed(position: Position): void {
    this.#set({ ...this.#state, ...position, dirty: false, fingerprint: null });
  }

  /** Closed: the fingerprint lets the next start see an outside change; dirty stays while commits are unsaved. */
  closed(stillDirty: boolean): void {
    this.#set({ ...this.#state, dirty: this.#state.dirty && stillDirty, fingerprint: fingerprint(this.dbPath) });
  }

  /** The CLI restored the store's latest snapshot into the database file: the library starts on it as is. */
  static restoredLatest(dbPath: string, location: string, position: Position): void {
    write(dbPath, { format: 1, store: location, ...position, dirty: false, fingerprint: fingerprint(dbPath) });
  }
}
