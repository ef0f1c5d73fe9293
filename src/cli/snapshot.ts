/**
 * `snapshot`: opens the database file with the library itself as the writer (so a running writer's
 * lease makes this fail with LEASE_HELD), flushes whatever the store has not seen, and closes.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { drizzle } from '../drizzle.ts';
import { SyncError } from '../errors.ts';
import type { SnapshotInfo } from '../sync/snapshotter.ts';
import type { CliContext } from './context.ts';
import { formatBytes, formatDuration } from './format.ts';
import { progressStore } from './progress.ts';

export async function snapshot(ctx: CliContext): Promise<number> {
  const { out } = ctx;
  const dbPath = ctx.dbPath();
  if (!existsSync(dbPath)) throw new SyncError('CONFIG', `No database at ${dbPath}: pass --db FILE or set DATABASE_URL to the file to snapshot.`);

  const db = await drizzle({
    connection: { url: pathToFileURL(dbPath).href },
    store: progressStore(ctx, [], () => spoolBytes(dbPath)),
    role: 'writer',
    // One explicit flush below; no timer of its own should race it.
    snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 },
    shutdown: { signals: false },
    log: out.log,
  });
  let info: SnapshotInfo | null;
  try {
    info = await db.$sync.flush();
  } finally {
    await db.$sync.close();
  }
  const status = db.$sync.status();
  const replaced = status.restoredFrom;

  out.result({ path: dbPath, store: ctx.store.location, snapshot: info, replacedBy: replaced ? { seq: replaced.seq } : null, localSeq: status.localSeq });
  if (info?.uploaded) {
    out.line(`uploaded snapshot seq ${info.seq}: ${formatBytes(info.bytes)} (${formatBytes(info.compressedBytes)} compressed) as ${info.key} in ${formatDuration(info.durationMs)}`);
  } else if (info) {
    out.line(`database unchanged since snapshot seq ${info.seq}: nothing uploaded`);
  } else if (replaced) {
    out.line(`the local file held nothing the store lacked and was behind it: it was replaced by the store's seq ${replaced.seq}; nothing uploaded`);
  } else {
    out.line(`nothing to snapshot: the store already holds this database (seq ${status.localSeq})`);
  }
  return 0;
}

/**
 * The bytes an incremental snapshot is about to upload: its new chunks, which the snapshotter encodes
 * into a spool file beside the database (`<db>.snap-<random>.spool`, complete before the first chunk is
 * uploaded, removed after) — read here only to give the upload's progress a total. Not found (another
 * layout): undefined, and the upload prints no progress.
 */
function spoolBytes(dbPath: string): number | undefined {
  const prefix = `${basename(dbPath)}.snap-`;
  try {
    const sizes = readdirSync(dirname(dbPath))
      .filter((name) => name.startsWith(prefix) && name.endsWith('.spool'))
      .map((name) => statSync(join(dirname(dbPath), name)).size);
    return sizes.length === 1 ? sizes[0] : undefined;
  } catch {
    return undefined;
  }
}
