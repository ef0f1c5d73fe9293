/**
 * Where a database stands in drizzle's migration history (issue 15): drizzle-kit and drizzle's
 * `migrate()` keep one row per applied migration in `__drizzle_migrations` (`hash`, `created_at`, the
 * folder journal's `when`). Every restore point records it, read in the snapshot's own read
 * transaction, so a restore point can be named by the schema it holds.
 */
export interface SchemaPosition {
  /** Migrations applied (0: none, or no migrations table). */
  migrations: number;
  /** The last applied one (by `created_at`): its hash and `created_at` (ms since epoch, the journal's `when`); '' and 0 when none. */
  hash: string;
  createdAt: number;
  /** Its tag in the migrations journal (`0003_add_tags`), when the writer knew the folder (`migrations.folder`). */
  tag?: string;
}

/** No migration applied: recorded as such, so a restore point without a position is one written before positions were (unknown). */
export const NO_MIGRATIONS: SchemaPosition = { migrations: 0, hash: '', createdAt: 0 };

/** drizzle's default migrations table (its `migrationsTable` option). */
export const MIGRATIONS_TABLE = '__drizzle_migrations';

type Execute = (sql: string, args?: Array<string | number>) => Promise<{ rows: ArrayLike<ArrayLike<unknown>> }>;

/** The position as `execute` (one read transaction) sees it: NO_MIGRATIONS when the table is missing or empty. */
export async function readSchemaPosition(execute: Execute, table = MIGRATIONS_TABLE): Promise<SchemaPosition> {
  const exists = await execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]);
  if (exists.rows.length === 0) return NO_MIGRATIONS;
  // One statement: the count, and the last row by created_at (drizzle's own order), id breaking ties.
  const quoted = `"${table.replaceAll('"', '""')}"`;
  const row = (await execute(`SELECT (SELECT count(*) FROM ${quoted}), hash, created_at FROM ${quoted} ORDER BY created_at DESC, id DESC LIMIT 1`)).rows[0];
  if (!row) return NO_MIGRATIONS;
  return { migrations: Number(row[0]), hash: String(row[1]), createdAt: Number(row[2]) };
}

/** Whether a manifest's `schema` field has this shape. */
export function isSchemaPosition(value: unknown): value is SchemaPosition {
  const v = value as Partial<SchemaPosition> | null;
  return (
    v !== null &&
    typeof v === 'object' &&
    Number.isSafeInteger(v.migrations) &&
    (v.migrations ?? -1) >= 0 &&
    typeof v.hash === 'string' &&
    Number.isFinite(v.createdAt) &&
    (v.tag === undefined || typeof v.tag === 'string')
  );
}

/** For `list`: "3 0003_add_tags", or "3 (a1b2c3d4)" without a tag; "0" with none applied; "-" when not recorded. */
export function describeSchemaPosition(position: SchemaPosition | undefined): string {
  if (!position) return '-';
  if (position.migrations === 0) return '0';
  return position.tag ? `${position.migrations} ${position.tag}` : `${position.migrations} (${position.hash.slice(0, 8)})`;
}

/** For messages: "migration 3 (0003_add_tags, applied 2026-11-30T10:00:00.000Z)", or "no migration applied". */
export function describePositionLong(position: SchemaPosition): string {
  if (position.migrations === 0) return 'no migration applied';
  const name = position.tag ?? `hash ${position.hash.slice(0, 12)}`;
  return `migration ${position.migrations} (${name}, created_at ${new Date(position.createdAt).toISOString()})`;
}
