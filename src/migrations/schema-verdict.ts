/**
 * How a database's applied migrations compare with the app's migrations folder (pure). drizzle's
 * migrator applies every journal entry whose `when` is after the last applied `created_at`; a database
 * whose migrations go past the folder's last one was migrated by newer code (the classic roll-back
 * accident: old code on a newer schema).
 */
import type { JournalEntry } from './journal.ts';

/** One row of drizzle's migrations table. */
export interface AppliedMigration {
  hash: string;
  createdAt: number;
}

export type SchemaVerdict =
  | { kind: 'current' }
  /** Journal entries drizzle's migrator would apply, oldest first. */
  | { kind: 'pending'; pending: JournalEntry[] }
  /** Applied migrations newer than the folder's last entry, oldest first. */
  | { kind: 'ahead'; unknown: AppliedMigration[] };

export function schemaVerdict(applied: readonly AppliedMigration[], journal: readonly JournalEntry[]): SchemaVerdict {
  const lastWhen = journal.reduce((max, e) => Math.max(max, e.when), Number.NEGATIVE_INFINITY);
  const unknown = applied.filter((m) => m.createdAt > lastWhen).sort((a, b) => a.createdAt - b.createdAt);
  if (unknown.length > 0) return { kind: 'ahead', unknown };
  const lastApplied = applied.reduce((max, m) => Math.max(max, m.createdAt), Number.NEGATIVE_INFINITY);
  const pending = journal.filter((e) => e.when > lastApplied);
  return pending.length > 0 ? { kind: 'pending', pending } : { kind: 'current' };
}
