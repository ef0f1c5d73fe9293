import { pathToFileURL } from 'node:url';
import { readWalIndex } from './wal-scan.ts';

type Libsql = typeof import('@libsql/client/sqlite3');

/**
 * What a restart attempt did: the WAL started over here; a reader still held a mark in the old
 * generation, so the frame was appended instead (folded with the rest next time); or it failed
 * (the app's next commit then restarts the WAL, as it always did).
 */
export type WalRestart = 'restarted' | 'appended' | { failed: string };

/**
 * Starts the WAL over from the checkpoint's worker, instead of in the app's next commit.
 *
 * Once a checkpoint folded every frame, the next write transaction starts the WAL over (new salts,
 * frame 1), and SQLite syncs the new WAL header before it writes a frame, at synchronous NORMAL as at
 * FULL (a header lost in a power cut could let old frames replay over newer pages: SQLite's ticket
 * ff5be73dee). The app's connections run without automatic checkpoints, so that transaction was the
 * app's first commit after each checkpoint, and the fsync ran on the app's thread: the only one of
 * its commits (strace), 60-70 ms at a time in the durability bench's bursts on this machine's disk,
 * the event loop stopped for all of it.
 *
 * Called while the app's writes are held (see claimRestart): a transaction that sets user_version to
 * its own value, which rewrites page 1 as it is (SQLite writes back the page it marked dirty whether
 * the value changed or not; in the WAL that page is a frame like any commit's, and its change counter
 * moves as on any commit that writes page 1). The writer's own connection settings (`writerSetup`:
 * its journal_size_limit, so the WAL file is cut back here too), then busy_timeout 0: a write lock held
 * by anyone else means this restart is not ours.
 */
export async function restartWal(libsql: Libsql, dbPath: string, writerSetup: string): Promise<WalRestart> {
  const before = readWalIndex(dbPath);
  const client = libsql.createClient({ url: pathToFileURL(dbPath).href });
  try {
    await client.executeMultiple(`${writerSetup}; PRAGMA busy_timeout=0`);
    const tx = await client.transaction('write');
    try {
      const version = Number((await tx.execute('PRAGMA user_version')).rows[0]![0]);
      await tx.execute(`PRAGMA user_version = ${version}`);
      await tx.commit();
    } finally {
      tx.close();
    }
  } catch (error) {
    return { failed: (error as Error).message };
  } finally {
    client.close();
  }
  const after = readWalIndex(dbPath);
  const salt = (state: typeof before) => (state && state !== 'unstable' ? state.salt.toString('hex') : undefined);
  return salt(after) !== undefined && salt(after) !== salt(before) ? 'restarted' : 'appended';
}
