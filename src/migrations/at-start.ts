/**
 * drizzle()'s `migrations` option at start-up, after the database is hydrated: compare its applied
 * migrations with the app's folder (SCHEMA_AHEAD before any write when the database is newer), and
 * apply the pending ones through the library's own client, so the counting client's safety point runs
 * first (a restore point with the old schema is durable before the first DDL).
 */
import type { Client } from '@libsql/client';
import type { LibSQLDatabase } from 'drizzle-orm/libsql';
import { SyncError, errorMessage, findSyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import { selectSnapshot, type Manifest } from '../sync/manifest.ts';
import { describePositionLong, readSchemaPosition, type SchemaPosition } from '../sync/schema-position.ts';
import type { MigrationsJournal } from './journal.ts';
import { schemaVerdict, type AppliedMigration, type SchemaVerdict } from './schema-verdict.ts';

/** Every row of drizzle's migrations table (none when it does not exist). Reads only. */
export async function readApplied(client: Client, table: string): Promise<AppliedMigration[]> {
  const exists = await client.execute({ sql: "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", args: [table] });
  if (exists.rows.length === 0) return [];
  const quoted = `"${table.replaceAll('"', '""')}"`;
  const rows = (await client.execute(`SELECT hash, created_at FROM ${quoted} ORDER BY created_at`)).rows;
  return rows.map((r) => ({ hash: String(r[0]), createdAt: Number(r[1]) }));
}

export interface SchemaCheck {
  verdict: SchemaVerdict;
  /** The database's position, labelled with the journal's tag where it has one. */
  position: SchemaPosition;
}

/**
 * The verdict for the hydrated file at `dbPath` (read through `client`, before anything writes).
 * SCHEMA_AHEAD unless `ifAhead` is 'start'; the message names both positions and the ways out,
 * with the restore point to roll back to when the store has one (`manifest`).
 */
export async function checkSchema(
  client: Client,
  journal: MigrationsJournal,
  o: { dbPath: string; table: string; ifAhead: 'reject' | 'start'; log: SyncLogger; manifest: Manifest | undefined },
): Promise<SchemaCheck> {
  const applied = await readApplied(client, o.table);
  const read = journal.label(await readSchemaPosition((sql, args) => client.execute({ sql, args: args ?? [] }), o.table));
  // A migration this folder does not know may still have its tag in the store's labels (the newer code knew it).
  const storeTag = read.tag ?? o.manifest?.snapshots.find((s) => s.schema?.tag && s.schema.createdAt === read.createdAt && s.schema.hash === read.hash)?.schema?.tag;
  const position = storeTag ? { ...read, tag: storeTag } : read;
  const verdict = schemaVerdict(applied, journal.entries);
  const folderEnd = journal.last ? `migration ${journal.entries.length} (${journal.last.tag})` : 'no migration';
  if (verdict.kind === 'ahead') {
    const first = verdict.unknown[0]!;
    // The restore point to come back to: the newest whose schema this folder knows, named by migration if the store's labels name it.
    const labelled = o.manifest?.snapshots.find((s) => s.schema && s.schema.createdAt === first.createdAt && s.schema.hash === first.hash && s.schema.tag);
    const name = labelled?.schema?.tag ?? first.hash;
    const back = o.manifest && journal.last ? selectSnapshot(o.manifest, { beforeMigration: name }, { find: (n) => (n === name ? { when: first.createdAt } : undefined) }) : undefined;
    const message =
      `The database ${o.dbPath} has ${verdict.unknown.length} migration(s) the app's migrations folder ${journal.folder} does not know: it is at ${describePositionLong(position)}, ` +
      `the folder ends at ${folderEnd}. This is older code on a newer schema. Nothing was written. Either deploy the code whose migrations folder includes them, ` +
      (back
        ? `or roll the database back to the restore point before them: restore: { seq: ${back.seq} } (or { beforeMigration: ${JSON.stringify(name)} }; CLI: drizzle-libsql-blob restore --before-migration ${name}) — writes made since are then not in the restored database. `
        : `or roll the database back to a restore point from before migration ${name} (\`npx drizzle-libsql-blob list\` shows each one's migrations). `) +
      `To start anyway at your own risk, set migrations.ifAhead: 'start'.`;
    if (o.ifAhead === 'reject') throw new SyncError('SCHEMA_AHEAD', message);
    o.log.warn({ dbPath: o.dbPath, unknown: verdict.unknown.length }, `starting anyway (migrations.ifAhead: 'start'): ${message}`);
  } else if (verdict.kind === 'pending') {
    o.log.info({ dbPath: o.dbPath, pending: verdict.pending.map((m) => m.tag) }, `${verdict.pending.length} migration(s) of ${journal.folder} not applied yet (the database is at ${describePositionLong(position)})`);
  }
  return { verdict, position };
}

/**
 * drizzle's own migrator on the library's database (one transaction for all pending migrations; the
 * counting client makes the commits so far durable before it). A failure leaves the database as it
 * was: MIGRATION_FAILED with the SQL error.
 */
export async function applyMigrations(db: LibSQLDatabase<Record<string, unknown>>, journal: MigrationsJournal, table: string): Promise<void> {
  const { migrate } = await import('drizzle-orm/libsql/migrator');
  try {
    await migrate(db, { migrationsFolder: journal.folder, migrationsTable: table });
  } catch (error) {
    const refused = findSyncError(error);
    if (refused) throw refused; // the safety point could not be made (NOT_DURABLE, LEASE_LOST...): nothing ran
    const sqlError = (error as { cause?: unknown }).cause ?? error;
    throw new SyncError(
      'MIGRATION_FAILED',
      `A migration of ${journal.folder} failed: ${errorMessage(sqlError)}. drizzle applies the pending migrations in one transaction, so the database is as it was before them, and nothing of them was uploaded; fix the migration and start again.`,
      { cause: error },
    );
  }
}
