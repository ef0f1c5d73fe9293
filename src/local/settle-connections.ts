/**
 * Makes a closed libSQL client really closed. `@libsql/client`'s local `close()` leaves the native
 * SQLite connection open until every prepared statement it made is garbage-collected (every `execute()`
 * makes one), so after our close() the connection keeps its descriptors, its POSIX locks (the file
 * stays SHARED-locked: `PRAGMA journal_mode=DELETE` from anyone fails with SQLITE_BUSY) and its WAL for
 * an unknown time, then closes whenever V8 collects. If it is the last connection on its inode then, it
 * checkpoints and deletes `<db>-wal` and `<db>-shm` **by path**. SQLite's pager skips that when it sees
 * the path now names another inode (SQLITE_FCNTL_HAS_MOVED, checked by stat() just before), but not
 * when the replacement lands between that stat and the unlinks, which a connection closing in a worker
 * thread can race with this thread's `installFile`, nor when the pager had seen an empty database.
 * So nothing closes "later": after our own close() the connections are collected now.
 *
 * How: a major collection, then a macrotask for the native finalizers (Node defers them to
 * setImmediate), then on Linux a look at /proc/self/fd for any descriptor of this process (any thread)
 * still on the database file or its `-wal`, by path or as "<path> (deleted)" for a replaced inode. A
 * bounded number of rounds with growing waits covers a worker thread's connection, which that worker's
 * own idle collection closes a few ms after its job. `-shm` is not looked at: SQLite's descriptor on it
 * goes with the last connection on the database inode (so the database's own descriptors say it), and
 * the checkpointer holds a raw one of its own until after the client closed (see Checkpointer.closeFiles).
 * Without /proc, the rounds run unconfirmed.
 */
import { readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { setImmediate as macrotask, setTimeout as sleep } from 'node:timers/promises';
import { SyncError } from '../errors.ts';
import { collectGarbage } from '../sync/collect-garbage.ts';

/** Rounds run where /proc cannot confirm anything: the two collections, no waiting. */
const UNCONFIRMED_ROUNDS = 2;

export interface SettleResult {
  /** True when /proc showed no descriptor left; false when some remained or /proc is not there. */
  confirmed: boolean;
  /** Descriptor targets still open after the last round (empty when confirmed or unknown). */
  open: string[];
  rounds: number;
  durationMs: number;
}

/**
 * Waits after each unconfirmed round, ms: ~1 s in all, far beyond a worker thread's idle collection of
 * its own connections (a few ms after its job).
 */
export const SETTLE_WAITS_MS: readonly number[] = [0, 0, 2, 5, 10, 20, 50, 100, 200, 600];

/**
 * Round 0 is a plain major collection: enough for 42 of 45 closes measured across three test files.
 * Round 1 collects all available garbage (see collectAllAvailableGarbage): in the other 3, and in every
 * run for the second instance a fresh process closes, the connections stayed reachable through ten
 * plain major collections over a second and were freed by that one (30-70 ms).
 */
function collectFor(round: number): Promise<void> | void {
  return round === 1 ? collectAllAvailableGarbage() : collectGarbage('major');
}

/** The paths a connection on `dbPath` holds descriptors on, as /proc/self/fd spells them (absolute, real folder). */
export function connectionPaths(dbPath: string): string[] {
  let folder: string;
  try {
    folder = realpathSync(dirname(resolve(dbPath)));
  } catch {
    folder = dirname(resolve(dbPath));
  }
  const db = join(folder, basename(dbPath));
  return [db, `${db}-wal`];
}

const DELETED = ' (deleted)';

/** The descriptor targets that belong to a connection on one of `paths`: the file itself or a replaced inode that had its name ("<path> (deleted)"). */
export function openOn(targets: readonly string[], paths: readonly string[]): string[] {
  const watched = new Set(paths.flatMap((p) => [p, `${p}${DELETED}`]));
  return targets.filter((t) => watched.has(t));
}

/**
 * Whether the descriptors left open forbid replacing the file: only those on the inode now at the path.
 * One on a replaced inode ("(deleted)") cannot delete anything of a newer file: SQLite sees, by stat(),
 * that its file has moved and skips the close-time checkpoint and unlinks.
 */
export function blocksReplacing(open: readonly string[]): boolean {
  return open.some((t) => !t.endsWith(DELETED));
}

/** Every descriptor target of this process, or null where /proc/self/fd is not available. */
function descriptorTargets(): string[] | null {
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fd');
  } catch {
    return null;
  }
  const targets: string[] = [];
  for (const fd of fds) {
    try {
      targets.push(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // Closed since the listing (readdir's own descriptor, among others).
    }
  }
  return targets;
}

/**
 * V8's "collect all available garbage" (what a low-memory notification runs: concurrent optimization
 * jobs aborted, the compilation cache cleared, up to 7 major collections), reached through an in-process
 * inspector session (no port is opened). A plain major collection where the inspector is not built in.
 */
async function collectAllAvailableGarbage(): Promise<void> {
  let session: import('node:inspector').Session | undefined;
  try {
    const { Session } = await import('node:inspector');
    session = new Session();
    session.connect();
    const connected = session;
    await new Promise<void>((done, fail) => connected.post('HeapProfiler.collectGarbage', (error) => (error ? fail(error) : done())));
  } catch {
    collectGarbage('major');
  } finally {
    session?.disconnect();
  }
}

/**
 * After our own close() of every client on `dbPath`: collects until no connection of this process is
 * left on it, or the bound. Never throws; the result says whether it is confirmed. `look` lists the
 * process's descriptor targets (null: cannot tell); tests pass their own.
 */
export async function settleClosedConnections(dbPath: string, look: () => string[] | null = descriptorTargets): Promise<SettleResult> {
  const started = performance.now();
  const paths = connectionPaths(dbPath);
  let open: string[] = [];
  for (let round = 0; round < SETTLE_WAITS_MS.length; round++) {
    await collectFor(round);
    await macrotask(); // native finalizers (the statements, then the connection) run here
    const targets = look();
    if (targets === null) {
      if (round + 1 < UNCONFIRMED_ROUNDS) continue;
      return { confirmed: false, open: [], rounds: round + 1, durationMs: performance.now() - started };
    }
    open = openOn(targets, paths);
    if (open.length === 0) return { confirmed: true, open, rounds: round + 1, durationMs: performance.now() - started };
    if (SETTLE_WAITS_MS[round]! > 0) await sleep(SETTLE_WAITS_MS[round]!);
  }
  return { confirmed: false, open, rounds: SETTLE_WAITS_MS.length, durationMs: performance.now() - started };
}

/**
 * Before this process replaces the file at `dbPath` (a download installed over it): every connection
 * it had on the file must be closed for real, so none can close later and delete the new file's WAL.
 * Refuses with LOCKED while one stays open on the file now at that path (a reference kept to a closed
 * client's statements, or a client never closed): nothing is replaced, the local file and the store
 * are untouched.
 */
export async function settleBeforeReplacing(dbPath: string, look?: () => string[] | null): Promise<void> {
  const settled = await settleClosedConnections(dbPath, look);
  if (!blocksReplacing(settled.open)) return;
  throw new SyncError(
    'LOCKED',
    `${dbPath} is still open in this process (${settled.open.length} descriptor(s): ${[...new Set(settled.open)].join(', ')}) ` +
      `${Math.round(settled.durationMs)} ms after its connections were closed, so it is not replaced: a connection closing later ` +
      "could delete the new file's WAL. Close every client on that file (db.$sync.close(), client.close()) and drop references to it, or restart the process.",
  );
}
