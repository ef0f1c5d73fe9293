/**
 * Where a database stands in drizzle's migration history (issue 15): drizzle-kit and drizzle's
 * `migrate()` keep one row per applied migration in `__drizzle_migrations` (`hash`, `created_at`, the
 * folder journal's `when`). Every restore point records it, read in the snapshot's own read
 * transaction, so a restore point can be named by the schema it holds.
 */
export interface SchemaPosition {
  /** Migrations applied. */
  migrations: number;
  /** The last applied one (by `created_at`): its hash and `created_at` (ms since epoch, the journal's `when`). */
  hash: string;
  createdAt: number;
}

/** drizzle's default migrations table (its `migrationsTable` option). */
export const MIGRATIONS_TABLE = '__drizzle_migrations';

type Execute = (sql: string, args?: Array<string | number>) => Promise<{ rows: ArrayLike<ArrayLike<unknown>> }>;

/** The position as `execute` (one read transaction) sees it; null when no migration table exists or it is empty. */
export async function readSchemaPosition(execute: Execute, table = MIGRATIONS_TABLE): Promise<SchemaPosition | null> {
  const exists = await execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]);
  if (exists.rows.length === 0) return null;
  const quoted = `"${table.replaceAll('"', '""')}"`;
  const count = Number((await execute(`SELECT count(*) FROM ${quoted}`)).rows[0]?.[0] ?? 0);
  if (count === 0) return null;
  const last = (await execute(`SELECT hash, created_at FROM ${quoted} ORDER BY created_at DESC, id DESC LIMIT 1`)).rows[0];
  if (!last) return null;
  return { migrations: count, hash: String(last[0]), createdAt: Number(last[1]) };
}

/** Whether a manifest's `schema` field has this shape. */
export function isSchemaPosition(value: unknown): value is SchemaPosition {
  const v = value as Partial<SchemaPosition> | null;
  return v !== null && typeof v === 'object' && Number.isSafeInteger(v.migrations) && typeof v.hash === 'string' && Number.isFinite(v.createdAt);
}

/** For `list`: "3 (…a1b2c3d4)", the count and the last migration's hash. */
export function describeSchemaPosition(position: SchemaPosition | undefined): string {
  return position ? `${position.migrations} (${position.hash.slice(0, 8)})` : '-';
}
