import type { ScanResult } from './changed-pages.ts';

/**
 * What a checkpoint with a page record tells the app's thread while it runs, through shared memory:
 * its state and numbers (an Int32Array, `SHARED_INTS` long) and a journal of what it read and folded
 * (a SharedArrayBuffer of entries, appended, never rewritten).
 *
 * Why a journal and not one reply at the end: a scan is in the journal before the fold that follows
 * it starts, so the record can take it in and a page delta can read the WAL past it while the fold and
 * its fsync run (a delta that waited for the whole checkpoint waited up to 313 ms beside a disk writer,
 * durable() p99 180 ms). The fold's outcome (every frame up to the scan's end folded, or not) follows as
 * its own entry: only a scan of the WAL's next generation depends on it (see ChangedPages.noteFolded).
 *
 * Both threads read the shared memory synchronously: an app writing in a tight loop of settled
 * promises starves the worker's reply message, not a load of shared memory.
 */

/** Indexes into the shared Int32Array. */
export const STATE = 0;
export const BUSY = 1;
export const WAL_FRAMES = 2;
export const CHECKPOINTED_FRAMES = 3;
/** Counts every change the worker makes (state or entry): the app's thread waits on it, so no wake-up is lost. */
export const CHANGES = 4;
/** Journal entries published. */
export const ENTRIES = 5;
/** The record's cursor the held second pass scans from, written by the app's thread before it says HELD. */
const CURSOR_FRAME = 6;
const CURSOR_SALT = 7; // and 8
const CURSOR_HAS_SALT = 9;
/** The WAL restart after a held pass (see claimRestart): 0 open, RESTARTING, or RELEASED. */
const RESTART = 10;
export const SHARED_INTS = 11;
const RESTARTING = 1;
const RELEASED = 2;

/** The checkpoint's states (STATE). */
export const RUNNING = 0;
export const DONE = 1;
export const FAILED = 2;
/** 'hold-writes': the first pass caught up; the worker waits for the app's writes to be held (HELD) or gives up (ABANDONED). */
export const READY = 3;
export const HELD = 4;
export const ABANDONED = 5;

export type JournalEntry = { scan: ScanResult } | { folded: boolean };

/** Room kept for the entries that may follow a scan (a fold's outcome, a second pass's scan cut short). */
const RESERVE_BYTES = 4096;

/**
 * Whether a page delta (or any reader of the WAL for the record) may go now beside this checkpoint
 * (pure): once its scan is in the record, while its fold runs; not while it is about to scan (before
 * its first scan, or between the hold being granted and the second pass's scan).
 */
export function walTurnFree(state: number, scansTaken: number): boolean {
  if (state === DONE || state === FAILED) return true;
  if (scansTaken === 0) return false;
  return !(state === HELD && scansTaken < 2);
}

// ---- the worker's side ----

/** Sets the state (if given) and wakes the app's thread, whatever it waits on. */
export function announce(shared: Int32Array, state?: number): void {
  if (state !== undefined) Atomics.store(shared, STATE, state);
  Atomics.add(shared, CHANGES, 1);
  Atomics.notify(shared, STATE);
  Atomics.notify(shared, CHANGES);
}

export class JournalWriter {
  #offset = 0;
  #count = 0;
  constructor(
    readonly shared: Int32Array,
    readonly buffer: SharedArrayBuffer,
  ) {}

  /** A scan, before anything folds past it. One too large to report breaks the record (safe: the next upload reads the whole file). */
  scan(scan: ScanResult): void {
    let json = Buffer.from(JSON.stringify({ scan } satisfies JournalEntry));
    if (this.#offset + 4 + json.length + RESERVE_BYTES > this.buffer.byteLength) {
      json = Buffer.from(JSON.stringify({ scan: { ...scan, pages: [], broken: `a checkpoint read more changed pages than it can report (${json.length} bytes)` } } satisfies JournalEntry));
    }
    this.#append(json);
  }

  /** The outcome of the fold that followed the last scan. */
  folded(folded: boolean): void {
    this.#append(Buffer.from(JSON.stringify({ folded } satisfies JournalEntry)));
  }

  #append(json: Buffer): void {
    const at = this.#offset;
    Buffer.from(this.buffer).writeInt32LE(json.length, at);
    new Uint8Array(this.buffer, at + 4, json.length).set(json);
    this.#offset = at + 4 + Math.ceil(json.length / 4) * 4;
    Atomics.store(this.shared, ENTRIES, ++this.#count); // after the bytes: whoever sees the count sees them
    announce(this.shared);
  }
}

/** The cursor the app's thread wrote for the second pass (salt '' when the record has read no WAL yet). */
export function readSecondPassCursor(shared: Int32Array): { salt: string; frame: number } {
  const salt = Buffer.alloc(8);
  salt.writeInt32LE(Atomics.load(shared, CURSOR_SALT), 0);
  salt.writeInt32LE(Atomics.load(shared, CURSOR_SALT + 1), 4);
  return { salt: Atomics.load(shared, CURSOR_HAS_SALT) === 1 ? salt.toString('hex') : '', frame: Atomics.load(shared, CURSOR_FRAME) };
}

/**
 * The worker may restart the WAL (wal-restart.ts) after its held pass folded every frame: true if the
 * app's writes are still held, and then they stay held until the checkpoint is DONE (or FAILED); false
 * if the app's thread already let them go (its cap ran out: see releaseHeldWrites).
 */
export function claimRestart(shared: Int32Array): boolean {
  return Atomics.compareExchange(shared, RESTART, 0, RESTARTING) === 0;
}

// ---- the app's thread's side ----

/**
 * The hold's cap ran out: 'free' to let the writes go (the worker will not restart the WAL now), or
 * 'restarting' if its restart is under way: the writes wait for it (a write beside it would meet
 * SQLite's write lock, and wait in SQLite's busy handler on the app's thread).
 */
export function releaseHeldWrites(shared: Int32Array): 'free' | 'restarting' {
  return Atomics.compareExchange(shared, RESTART, 0, RELEASED) === RESTARTING ? 'restarting' : 'free';
}

export function writeSecondPassCursor(shared: Int32Array, cursor: { salt: string; frame: number }): void {
  const salt = cursor.salt === '' ? Buffer.alloc(8) : Buffer.from(cursor.salt, 'hex');
  Atomics.store(shared, CURSOR_SALT, salt.readInt32LE(0));
  Atomics.store(shared, CURSOR_SALT + 1, salt.readInt32LE(4));
  Atomics.store(shared, CURSOR_HAS_SALT, cursor.salt === '' ? 0 : 1);
  Atomics.store(shared, CURSOR_FRAME, cursor.frame);
}

/** Where the app's thread is in a journal. */
export interface JournalPosition {
  offset: number;
  read: number;
}

/** The entries published since `position` (which it advances). */
export function readJournal(shared: Int32Array, buffer: SharedArrayBuffer, position: JournalPosition): JournalEntry[] {
  const published = Atomics.load(shared, ENTRIES);
  const entries: JournalEntry[] = [];
  if (position.read >= published) return entries; // most calls (one per commit while a checkpoint runs)
  const bytes = Buffer.from(buffer);
  for (; position.read < published; position.read++) {
    const length = bytes.readInt32LE(position.offset);
    entries.push(JSON.parse(bytes.toString('utf8', position.offset + 4, position.offset + 4 + length)) as JournalEntry);
    position.offset += 4 + Math.ceil(length / 4) * 4;
  }
  return entries;
}
