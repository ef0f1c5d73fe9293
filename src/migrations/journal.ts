/**
 * The app's migrations folder as drizzle-kit writes it (`meta/_journal.json` plus one `<tag>.sql` per
 * migration), read with drizzle's own `readMigrationFiles`, so each migration's `when` and hash are
 * exactly what drizzle's migrator writes into `__drizzle_migrations` (`created_at`, `hash`).
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { SyncError, errorMessage } from '../errors.ts';
import type { SchemaPosition } from '../sync/schema-position.ts';

export interface JournalEntry {
  /** drizzle-kit's name for it, e.g. `0003_add_tags`. */
  tag: string;
  /** The journal's `when`: what drizzle's migrator records as `created_at`. */
  when: number;
  /** sha256 of the .sql file: what it records as `hash`. */
  hash: string;
}

export class MigrationsJournal {
  private constructor(
    readonly folder: string,
    /** In journal order (oldest first). */
    readonly entries: readonly JournalEntry[],
  ) {}

  /** Reads `folder`; a missing or malformed folder is a CONFIG error naming it. */
  static read(folder: string): MigrationsJournal {
    const path = resolve(folder);
    const journalPath = join(path, 'meta', '_journal.json');
    let tags: Array<{ tag: string; when: number }>;
    let files: Array<{ folderMillis: number; hash: string }>;
    try {
      tags = (JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: Array<{ tag: string; when: number }> }).entries;
      files = readMigrationFiles({ migrationsFolder: path });
    } catch (error) {
      throw new SyncError(
        'CONFIG',
        `migrations.folder ${path} is not a drizzle-kit migrations folder (${errorMessage(error)}): it must hold meta/_journal.json and the .sql file of each journal entry, as \`drizzle-kit generate\` writes them.`,
        { cause: error },
      );
    }
    if (!Array.isArray(tags) || tags.length !== files.length) throw new SyncError('CONFIG', `migrations.folder ${path}: meta/_journal.json has no valid "entries" list.`);
    return new MigrationsJournal(
      path,
      tags.map((t, i) => ({ tag: t.tag, when: files[i]!.folderMillis, hash: files[i]!.hash })),
    );
  }

  get last(): JournalEntry | undefined {
    return this.entries.at(-1);
  }

  /** A migration by its tag, its hash, or a hash prefix of 8 or more characters (as `list` prints it). */
  find(name: string): JournalEntry | undefined {
    return this.entries.find((e) => e.tag === name || e.hash === name || (name.length >= 8 && e.hash.startsWith(name)));
  }

  /** The position with its journal tag, when the folder holds the migration it ends at. */
  label(position: SchemaPosition): SchemaPosition {
    if (position.migrations === 0) return position;
    const entry = this.entries.find((e) => e.when === position.createdAt && e.hash === position.hash) ?? this.entries.find((e) => e.when === position.createdAt);
    return entry ? { ...position, tag: entry.tag } : position;
  }
}
