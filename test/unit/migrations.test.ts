/**
 * Issue 15's decisions as table tests: how applied migrations compare with a folder (schemaVerdict),
 * a journal's names and labels, the restore point a `beforeMigration` target names (and why none),
 * and the options and flags that ask for them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { schemaVerdict, type AppliedMigration } from '../../src/migrations/schema-verdict.ts';
import { MigrationsJournal, type JournalEntry } from '../../src/migrations/journal.ts';
import { noMatch, selectSnapshot, type Manifest, type SnapshotEntry } from '../../src/sync/manifest.ts';
import { resolveSyncConfig, type SyncOptions } from '../../src/config.ts';
import { isSyncError } from '../../src/errors.ts';
import { parseCommandLine } from '../../src/cli/args.ts';
import { tempDir } from '../helpers/fixtures.ts';

const J: JournalEntry[] = [
  { tag: '0000_init', when: 100, hash: 'h0' },
  { tag: '0001_tags', when: 200, hash: 'h1' },
  { tag: '0002_pinned', when: 300, hash: 'h2' },
];
const applied = (...whens: number[]): AppliedMigration[] => whens.map((w) => ({ hash: `h${w / 100 - 1}`, createdAt: w }));

test('schemaVerdict: current, pending (what drizzle would apply), or ahead (migrations newer than the folder)', () => {
  const rows: Array<[string, AppliedMigration[], JournalEntry[], string]> = [
    ['a new database: everything pending', [], J, 'pending 0000_init,0001_tags,0002_pinned'],
    ['at the folder end', applied(100, 200, 300), J, 'current'],
    ['one behind', applied(100, 200), J, 'pending 0002_pinned'],
    ['one ahead: old code on a newer schema', applied(100, 200, 300), J.slice(0, 2), 'ahead 300'],
    ['two ahead', applied(100, 200, 300), J.slice(0, 1), 'ahead 200,300'],
    ['an empty folder on a migrated database', applied(100), [], 'ahead 100'],
    ['an empty folder on a new database', [], [], 'current'],
    ['rows out of order in the table', [{ hash: 'h1', createdAt: 200 }, { hash: 'h0', createdAt: 100 }], J, 'pending 0002_pinned'],
  ];
  for (const [name, rowsApplied, journal, expected] of rows) {
    const v = schemaVerdict(rowsApplied, journal);
    const text = v.kind === 'pending' ? `pending ${v.pending.map((e) => e.tag).join(',')}` : v.kind === 'ahead' ? `ahead ${v.unknown.map((m) => m.createdAt).join(',')}` : v.kind;
    assert.equal(text, expected, name);
  }
});

test('MigrationsJournal: read with drizzle\'s own hashes; find by tag, hash or 8+ hash prefix; label a position; a bad folder is CONFIG naming it', async () => {
  const dir = await tempDir('journal');
  try {
    const folder = join(dir.path, 'drizzle');
    await mkdir(join(folder, 'meta'), { recursive: true });
    await writeFile(join(folder, '0000_init.sql'), 'CREATE TABLE t (x);');
    await writeFile(join(folder, 'meta', '_journal.json'), JSON.stringify({ entries: [{ idx: 0, when: 1234, tag: '0000_init', breakpoints: true }] }));
    const journal = MigrationsJournal.read(folder);
    const hash = '4f4e9b0b5d1e1d0d8d3f8a5f0c52b2d2e1f3d8a0b6c7e9f1a2b3c4d5e6f70819'; // not it: drizzle's is computed below
    assert.equal(journal.entries.length, 1);
    const entry = journal.entries[0]!;
    assert.equal(entry.when, 1234);
    assert.match(entry.hash, /^[0-9a-f]{64}$/);
    assert.notEqual(entry.hash, hash);
    assert.equal(journal.find('0000_init'), entry);
    assert.equal(journal.find(entry.hash), entry);
    assert.equal(journal.find(entry.hash.slice(0, 8)), entry);
    assert.equal(journal.find(entry.hash.slice(0, 7)), undefined, 'a prefix shorter than list prints is too ambiguous');
    assert.deepEqual(journal.label({ migrations: 1, hash: entry.hash, createdAt: 1234 }), { migrations: 1, hash: entry.hash, createdAt: 1234, tag: '0000_init' });
    assert.deepEqual(journal.label({ migrations: 2, hash: 'x', createdAt: 9999 }), { migrations: 2, hash: 'x', createdAt: 9999 }, 'a migration the folder does not hold: no tag');
    assert.throws(() => MigrationsJournal.read(join(dir.path, 'nowhere')), (e: unknown) => isSyncError(e, 'CONFIG') && /migrations\.folder .*nowhere is not a drizzle-kit migrations folder/.test((e as Error).message));
    await writeFile(join(folder, 'meta', '_journal.json'), JSON.stringify({ entries: [{ idx: 0, when: 1, tag: '0001_missing' }] }));
    assert.throws(() => MigrationsJournal.read(folder), (e: unknown) => isSyncError(e, 'CONFIG') && /0001_missing/.test((e as Error).message));
  } finally {
    await dir.cleanup();
  }
});

const at = (minutes: number) => new Date(Date.UTC(2026, 0, 1, 0, minutes)).toISOString();
const entry = (seq: number, schema: SnapshotEntry['schema'], minutes = seq): SnapshotEntry => ({ seq, generation: 'g', key: `k${seq}`, kind: 'chunks', codec: 'lz4', bytes: 1, sha256: 'a', compressedBytes: 1, createdAt: at(minutes), ...(schema ? { schema } : {}) });
const pos = (migrations: number, createdAt: number, hash: string, tag?: string) => ({ migrations, createdAt, hash, ...(tag ? { tag } : {}) });

test('selectSnapshot { beforeMigration }: the newest restore point whose position precedes the migration; by journal, by label tag or hash; noMatch says why', () => {
  // Newest first: 6 at 3, 5 at 3, 4 at 2 (tagged), 3 at 2, 2 at 1, 1 recorded nothing (an older version).
  const snapshots = [entry(6, pos(3, 300, 'h2', '0002_pinned')), entry(5, pos(3, 300, 'h2')), entry(4, pos(2, 200, 'h1', '0001_tags')), entry(3, pos(2, 200, 'h1')), entry(2, pos(1, 100, 'h0')), entry(1, undefined)];
  const manifest: Manifest = { format: 1, generation: 'g', seq: 6, snapshots };
  const journal = { find: (name: string) => J.find((e) => e.tag === name || e.hash === name) };
  const seq = (target: string, j?: typeof journal) => selectSnapshot(manifest, { beforeMigration: target }, j)?.seq;
  assert.equal(seq('0002_pinned'), 4, 'by the tag a label carries');
  assert.equal(seq('h2'), 4, 'by hash');
  assert.equal(seq('0001_tags', journal), 2, 'by the journal');
  assert.equal(seq('0001_tags'), 2, 'by a label too');
  assert.equal(seq('0000_init', journal), undefined, 'nothing retained precedes the first migration (seq 1 recorded no position)');
  assert.match(noMatch(manifest, { beforeMigration: '0000_init' }, 'here', journal), /No retained restore point precedes migration 0000_init: .*1 of them recorded no schema position/);
  assert.equal(seq('0009_nope', journal), undefined);
  assert.match(noMatch(manifest, { beforeMigration: '0009_nope' }, 'here', journal), /No migration named "0009_nope" is known/);
  // By time among those that precede, not list order (a compaction's chunk set is listed after deltas).
  const shuffled: Manifest = { ...manifest, snapshots: [entry(6, pos(3, 300, 'h2', '0002_pinned'), 60), entry(5, pos(2, 200, 'h1'), 50), entry(4, pos(2, 200, 'h1'), 55)] };
  assert.equal(selectSnapshot(shuffled, { beforeMigration: '0002_pinned' })?.seq, 4);
});

test('options: migrations { folder, apply, table, ifAhead } and restore { beforeMigration } are checked; the CLI takes --before-migration and --migrations', () => {
  const base = { connection: { url: 'file:./migrations-options-never-created/app.db' } };
  const ok = resolveSyncConfig({ ...base, migrations: { folder: './drizzle' } } as SyncOptions);
  assert.deepEqual({ ...ok.migrations, folder: ok.migrations!.folder.endsWith('/drizzle') }, { folder: true, apply: false, table: '__drizzle_migrations', ifAhead: 'reject' });
  assert.equal(resolveSyncConfig({ ...base, migrations: { folder: 'd', table: 'mine' } } as SyncOptions).migrationsTable, 'mine');
  assert.equal(resolveSyncConfig(base as SyncOptions).migrationsTable, '__drizzle_migrations');
  assert.deepEqual(resolveSyncConfig({ ...base, restore: { beforeMigration: ' 0003_x ' } } as SyncOptions).restoreTarget, { beforeMigration: '0003_x' });
  const refused: Array<[unknown, RegExp]> = [
    [{ migrations: { folder: '' } }, /migrations\.folder must be the path/],
    [{ migrations: { apply: true } }, /migrations\.folder must be the path/],
    [{ migrations: { folder: 'd', apply: 'yes' } }, /migrations\.apply must be true or false/],
    [{ migrations: { folder: 'd', ifAhead: 'ignore' } }, /migrations\.ifAhead must be 'reject' or 'start'/],
    [{ migrations: { folder: 'd', tabel: 'x' } }, /unknown option 'migrations\.tabel' — did you mean 'migrations\.table'\?/],
    [{ restore: { beforeMigration: '' } }, /restore\.beforeMigration must name a migration/],
    [{ restore: { beforeMigration: 'x', seq: 3 } }, /restore takes one of \{ at \}, \{ seq \} or \{ beforeMigration \}/],
  ];
  for (const [extra, message] of refused) {
    assert.throws(() => resolveSyncConfig({ ...base, ...(extra as object) } as SyncOptions), (e: unknown) => isSyncError(e, 'CONFIG') && message.test((e as Error).message), JSON.stringify(extra));
  }
  const parsed = parseCommandLine(['restore', '--before-migration', '0003_x', '--migrations', './drizzle']);
  assert.ok(parsed.command === 'restore');
  assert.deepEqual([parsed.select, parsed.migrations], [{ beforeMigration: '0003_x' }, './drizzle']);
  assert.throws(() => parseCommandLine(['restore', '--before-migration', 'x', '--seq', '3']), /restore takes one of --seq, --at and --before-migration; got --seq and --before-migration/);
  assert.throws(() => parseCommandLine(['verify', '--before-migration', 'x']), /--before-migration does not apply to verify/);
});
