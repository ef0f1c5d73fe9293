/**
 * `npm run db:restore | db:seed | db:snapshot` (and `db:setup`, which runs restore, `drizzle-kit
 * migrate`, seed and snapshot in turn). Each step opens the library on DATABASE_URL with the store
 * from the environment and closes it again; only a step that changed something uploads a snapshot.
 * The migrate step runs in drizzle-kit's own process: the library notices the file changed outside
 * it (the sidecar's fingerprint) and the following seed/snapshot step uploads the migration.
 */
import { SyncError, drizzle, findSyncError, storeFromEnv, type BlobDatabase, type RestoreMode, type SnapshotInfo, type SyncLogger } from 'drizzle-libsql-blob';
import * as schema from '../schema/index.ts';
import { DOCUMENT_TYPES } from '../schema/documents.ts';
import { SeedValidationError, runSeeds, type SeedReport } from '../seeds/runner.ts';

type Command = 'restore' | 'seed' | 'snapshot';
const COMMANDS: readonly Command[] = ['restore', 'seed', 'snapshot'];

/** Same default as drizzle.config.ts, so drizzle-kit migrates the file these steps open. */
const DATABASE_URL = process.env.DATABASE_URL ?? 'file:./data/app.db';

/** Sync logs as short lines; remembers how the database was opened for the restore summary. */
function cliLogger(): SyncLogger & { openAction?: string } {
  const line = (fields: object, message?: string) => {
    const details = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? Math.round(v) : typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
      .join(' ');
    return `  ${message ?? ''}${details ? ` (${details})` : ''}`;
  };
  const logger: SyncLogger & { openAction?: string } = {
    info(fields, message) {
      const action = (fields as { action?: unknown }).action;
      if (typeof action === 'string') logger.openAction = action;
      console.log(line(fields, message));
    },
    warn: (fields, message) => console.warn(line(fields, message)),
    error: (fields, message) => console.error(line(fields, message)),
  };
  return logger;
}

/** RESTORE_MODE=required makes a deploy fail instead of starting empty; SKIP_RESTORE=true still wins inside the library. */
function restoreMode(): RestoreMode {
  const mode = process.env.RESTORE_MODE || 'if-exists';
  if (mode !== 'required' && mode !== 'if-exists' && mode !== 'skip') {
    throw new SyncError('CONFIG', `RESTORE_MODE must be required, if-exists or skip; got ${JSON.stringify(mode)}.`);
  }
  return mode;
}

async function open(log: SyncLogger): Promise<BlobDatabase<typeof schema>> {
  const store = storeFromEnv();
  console.log(`database ${DATABASE_URL}, store ${store.location}`);
  return drizzle({
    connection: { url: DATABASE_URL },
    schema,
    store,
    restore: restoreMode(),
    // A CLI step is short-lived: its close() takes the one snapshot, so no background timer should
    // race it (a second upload of the same step would only add a manifest entry).
    snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 },
    shutdown: { signals: false },
    log,
  });
}

function describeSnapshot(info: SnapshotInfo): string {
  return info.uploaded ? `uploaded snapshot seq ${info.seq} (${info.bytes} bytes, ${info.compressedBytes} compressed) as ${info.key}` : `database unchanged since snapshot seq ${info.seq}: nothing uploaded`;
}

/** Closes the database and says whether its final snapshot uploaded anything. */
async function closeAndReport(db: BlobDatabase<typeof schema>): Promise<void> {
  let final: SnapshotInfo | undefined;
  db.$sync.on('snapshot', (info) => (final = info));
  await db.$sync.close();
  console.log(final ? describeSnapshot(final) : 'closed: nothing to upload');
}

function printSeedReport(report: SeedReport): void {
  const rows = DOCUMENT_TYPES.map((type) => [type, report.byType[type].inserted, report.byType[type].updated, report.byType[type].unchanged] as const);
  const header = ['type', 'inserted', 'updated', 'unchanged'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const format = (cells: readonly (string | number)[]) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join('  ');
  console.log(format(header));
  for (const row of rows) console.log(format(row));
  const total = rows.reduce((n, r) => n + r[1] + r[2] + r[3], 0);
  console.log(`${total} seed documents from ${report.files} file(s) in ${Math.round(report.durationMs)} ms: ${report.changed ? 'changes written' : 'nothing changed, nothing written'}`);
}

async function restore(): Promise<void> {
  const log = cliLogger();
  const db = await open(log);
  const from = db.$sync.status().restoredFrom;
  if (from) console.log(`restored snapshot seq ${from.seq} (${from.bytes} bytes) in ${Math.round(from.durationMs)} ms`);
  else if (restoreMode() === 'skip' || /^(1|true|yes)$/i.test(process.env.SKIP_RESTORE ?? '')) console.log('restore skipped (SKIP_RESTORE or RESTORE_MODE=skip): using the local database as it is');
  else if (log.openAction === 'start-empty') console.log('the store holds no snapshot yet: starting from an empty database');
  else if (db.$sync.status().pendingCommits > 0) console.log('kept the local database: it holds changes not in the store yet (the next seed/snapshot step uploads them)');
  else console.log('kept the local database: the store holds nothing newer, nothing to download');
  // Nothing was written, so close() has nothing to snapshot unless the local file was already pending.
  await closeAndReport(db);
}

async function seed(): Promise<void> {
  const db = await open(cliLogger());
  try {
    printSeedReport(await runSeeds(db));
  } finally {
    // Also on failure: commits already pending (e.g. the migration) still deserve their snapshot.
    await closeAndReport(db);
  }
}

async function snapshot(): Promise<void> {
  const db = await open(cliLogger());
  try {
    const info = await db.$sync.flush();
    console.log(info ? describeSnapshot(info) : 'nothing to upload: the store already has this database');
  } finally {
    await db.$sync.close();
  }
}

async function main(): Promise<void> {
  const command = process.argv[2] as Command | undefined;
  if (!command || !COMMANDS.includes(command)) {
    console.error(`usage: scripts/db.ts <${COMMANDS.join('|')}>  (env: DATABASE_URL, BACKUP_DIR or AZURE_STORAGE_*, RESTORE_MODE, SKIP_RESTORE)`);
    process.exitCode = 2;
    return;
  }
  try {
    await { restore, seed, snapshot }[command]();
  } catch (error) {
    const code = findSyncError(error)?.code ?? (error instanceof SeedValidationError ? error.code : 'ERROR');
    console.error(`db ${command} failed [${code}]: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}

await main();
