/**
 * Opens the app's database the programmatic way: hydrate from the store, apply migrations (the
 * library's `migrations` option: a restore point with the old schema first, SCHEMA_AHEAD if this code
 * is older than the database), upsert the seeds. Migrations and seeds go through the library's db, so
 * whatever they change is counted and snapshotted like any other write (and a no-op rerun writes nothing).
 */
import { fileURLToPath } from 'node:url';
import { drizzle, storeFromEnv, type BlobDatabase, type DrizzleBlobConfig, type RestoreMode, type Role, type SnapshotOptions, type Leaser, type SnapshotStore, type SyncLogger } from 'drizzle-libsql-blob';
import { documents } from '../schema/documents.ts';
import { runSeeds, type SeedReport } from '../seeds/runner.ts';

export const appSchema = { documents };
export type AppDatabase = BlobDatabase<typeof appSchema>;

/** The repo's ./drizzle, wherever the process was started from. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../drizzle', import.meta.url));

export interface OpenOptions {
  databaseUrl: string;
  snapshot?: SnapshotOptions;
  shutdownTimeoutMs?: number;
  /** Default: `storeFromEnv()`. */
  store?: SnapshotStore;
  restore?: RestoreMode;
  /** Default 'auto': the writer if free, else a read replica that takes over later. */
  role?: Role;
  /** Retries of one store operation; the library's default when omitted. */
  retry?: DrizzleBlobConfig['retry'];
  /** Seed directory; default the runner's own (seeds/data). */
  seedDir?: string;
  /** drizzle-kit's migrations folder; default the repo's ./drizzle. */
  migrationsFolder?: string;
  /** Sync logs and the seed report; console by default, `false` for silence. */
  log?: SyncLogger | false;
}

/** `seeds` is null on a read replica: the writer migrates and seeds the store, a replica follows it. */
export async function openDatabase(options: OpenOptions): Promise<{ db: AppDatabase; seeds: SeedReport | null }> {
  const db = await drizzle({
    connection: { url: options.databaseUrl },
    schema: appSchema,
    store: options.store ?? storeFromEnv(),
    snapshot: options.snapshot,
    restore: options.restore,
    role: options.role,
    retry: options.retry,
    // The server owns SIGTERM/SIGINT: it must stop HTTP before the final snapshot, then exit 0.
    shutdown: { signals: false, timeoutMs: options.shutdownTimeoutMs },
    log: options.log,
    // restore -> migrate -> (seed, below) from one start: the library applies the folder's pending migrations.
    migrations: { folder: options.migrationsFolder ?? MIGRATIONS_DIR, apply: true },
  });
  if (db.$sync.status().role === 'replica') {
    const message = 'started as a read replica (another instance holds the writer lease): no migrations or seeds here; writes answer 503 until this instance takes over';
    if (options.log) options.log.info({}, message);
    else if (options.log !== false) console.info(message);
    return { db, seeds: null };
  }
  try {
    const seeds = await runSeeds(db, options.seedDir === undefined ? {} : { dir: options.seedDir });
    if (options.log !== false) {
      const line = describeSeeds(seeds);
      if (options.log) options.log.info({ files: seeds.files, changed: seeds.changed, byType: seeds.byType }, line);
      else console.info(line);
    }
    return { db, seeds };
  } catch (error) {
    // Snapshot whatever the seeds committed rather than leave it only on this disk.
    await db.$sync.close().catch(() => undefined);
    throw error;
  }
}

/** One line per start-up: what the seeds changed, by type. */
export function describeSeeds(report: SeedReport): string {
  const parts = Object.entries(report.byType).map(([type, n]) => `${type} +${n.inserted} ~${n.updated} =${n.unchanged}`);
  return `seeds ${report.changed ? 'applied' : 'unchanged'} from ${report.files} file(s) in ${Math.round(report.durationMs)} ms: ${parts.join(', ')}`;
}
