/**
 * Issue 15's acceptance: drizzle()'s `migrations` option (compare, apply with a safety point, refuse
 * old code on a newer schema), restore points named by migration, restore --before-migration, the
 * drizzle-kit CLI path, and a migration that fails halfway. Real libSQL files, drizzle's own migrator,
 * the real drizzle-kit CLI, the real directory store and the CLI in a child process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createClient } from '@libsql/client';
import { sql } from 'drizzle-orm';
import { directoryStore, drizzle, isSyncError, type SnapshotStore } from 'drizzle-libsql-blob';
import { readManifest, tempDir } from '../helpers/fixtures.ts';
import { REPO, runCli, runCliOk } from '../helpers/cli.ts';

const MANUAL = { debounceMs: 600_000, maxIntervalMs: 600_000, maxCommits: 1_000_000, chunkSize: 64 * 1024 };
const WHEN = 1_790_000_000_000;

/** drizzle-kit's layout: meta/_journal.json plus one .sql per entry (statements split by its breakpoint marker). */
const MIGRATIONS = [
  { tag: '0000_init', sql: 'CREATE TABLE `notes` (`id` integer PRIMARY KEY NOT NULL, `body` text NOT NULL);' },
  { tag: '0001_tags', sql: 'ALTER TABLE `notes` ADD `tags` text;' },
  { tag: '0002_pinned', sql: 'ALTER TABLE `notes` ADD `pinned` integer DEFAULT 0 NOT NULL;--> statement-breakpoint\nCREATE INDEX `notes_pinned_idx` ON `notes` (`pinned`);' },
];

async function writeFolder(folder: string, migrations: ReadonlyArray<{ tag: string; sql: string }>): Promise<void> {
  await rm(folder, { recursive: true, force: true });
  await mkdir(join(folder, 'meta'), { recursive: true });
  for (const m of migrations) await writeFile(join(folder, `${m.tag}.sql`), m.sql);
  const entries = migrations.map((m, idx) => ({ idx, version: '6', when: WHEN + idx * 1000, tag: m.tag, breakpoints: true }));
  await writeFile(join(folder, 'meta', '_journal.json'), JSON.stringify({ version: '7', dialect: 'sqlite', entries }));
}

const hashOf = (text: string) => createHash('sha256').update(text).digest('hex');

function open(dbPath: string, store: SnapshotStore, migrations?: { folder: string; apply?: boolean; ifAhead?: 'reject' | 'start' }, restore?: { beforeMigration: string }) {
  return drizzle({ connection: { url: `file:${dbPath}` }, store, log: false, shutdown: { signals: false }, snapshot: MANUAL, ...(migrations ? { migrations } : {}), ...(restore ? { restore } : {}) });
}

async function query(dbPath: string, text: string): Promise<unknown[][]> {
  const client = createClient({ url: `file:${dbPath}` });
  try {
    return (await client.execute(text)).rows.map((r) => Array.from(r));
  } finally {
    client.close();
  }
}

const columnsOf = async (dbPath: string) => (await query(dbPath, 'PRAGMA table_info(notes)')).map((r) => String(r[1]));
const fileHash = async (path: string) => hashOf((await readFile(path)).toString('binary'));

/** A database at migration 2 with rows, every commit in the store: the state before the deploy. */
async function atMigrationTwo(root: string) {
  const store = directoryStore({ dir: join(root, 'store') });
  const folder2 = join(root, 'drizzle-2');
  await writeFolder(folder2, MIGRATIONS.slice(0, 2));
  const dbPath = join(root, 'app.db');
  const db = await open(dbPath, store, { folder: folder2, apply: true });
  for (let i = 0; i < 20; i++) await db.run(sql`INSERT INTO notes (body, tags) VALUES (${`note ${i}`}, ${'a,b'})`);
  await db.$sync.close();
  return { store, folder2, dbPath };
}

test('deploy: migrations { folder, apply: true } on a database at migration 2 with a folder holding 3: a restore point labelled 2 before the DDL, then one labelled 3; list shows both; SCHEMA_AHEAD for the folder ending at 2, nothing written', async () => {
  const dir = await tempDir('migrations-deploy');
  try {
    const { store, folder2, dbPath } = await atMigrationTwo(dir.path);
    const beforeDeploy = await readManifest(store);
    assert.deepEqual(beforeDeploy.snapshots[0]!.schema, { migrations: 2, hash: hashOf(MIGRATIONS[1]!.sql), createdAt: WHEN + 1000, tag: '0001_tags' }, 'labelled with the journal tag');

    // The deploy: the same database, new rows not uploaded yet, then the app started with migration 3.
    const writer = await open(dbPath, store);
    for (let i = 0; i < 5; i++) await writer.run(sql`INSERT INTO notes (body) VALUES (${`late ${i}`})`);
    await writer.$sync.close(); // uploads them: the store's latest is every row before the deploy
    const rowsBefore = Number((await query(dbPath, 'SELECT count(*) FROM notes'))[0]![0]);
    assert.equal(rowsBefore, 25);
    // A commit only in the local file (a crash before its upload): the safety point must carry it.
    const local = createClient({ url: `file:${dbPath}` });
    await local.execute("INSERT INTO notes (body) VALUES ('only local')");
    local.close();

    const folder3 = join(dir.path, 'drizzle-3');
    await writeFolder(folder3, MIGRATIONS);
    const seqBefore = (await readManifest(store)).seq;
    const deployed = await open(dbPath, store, { folder: folder3, apply: true });
    try {
      assert.ok((await columnsOf(dbPath)).includes('pinned'), 'migration 3 applied at start');
      const manifest = await readManifest(store);
      const after = manifest.snapshots.filter((s) => s.seq > seqBefore).reverse(); // oldest first
      const labels = after.map((s) => s.schema?.tag);
      assert.equal(labels.at(-1), '0002_pinned', `the latest restore point is labelled with migration 3: ${labels.join(', ')}`);
      const safety = after.find((s) => s.schema?.tag === '0001_tags');
      assert.ok(safety, `a restore point labelled with migration 2 was published at the deploy: ${labels.join(', ')}`);
      assert.ok(safety.seq < manifest.snapshots[0]!.seq);
      assert.deepEqual(deployed.$sync.status().lastSnapshot?.schema?.tag, '0002_pinned', 'status() shows the current position');

      const listed = await runCliOk(['list', '--backup-dir', join(dir.path, 'store')]);
      assert.ok(listed.stdout.includes('3 0002_pinned'), listed.stdout);
      assert.ok(listed.stdout.includes('2 0001_tags'), listed.stdout);
    } finally {
      await deployed.$sync.close();
    }

    // restore --before-migration <tag of 3> on a wiped disk: the migration-2 schema with every row written before the deploy.
    const wiped = join(dir.path, 'wiped', 'app.db');
    await runCliOk(['restore', '--backup-dir', join(dir.path, 'store'), '--db', wiped, '--before-migration', '0002_pinned']);
    assert.ok(!(await columnsOf(wiped)).includes('pinned'), 'the schema before migration 3');
    assert.ok((await columnsOf(wiped)).includes('tags'));
    assert.equal(Number((await query(wiped, 'SELECT count(*) FROM notes'))[0]![0]), 26, 'every row, the one only in the local file included');
    // By hash too (as list prints it), and a name nothing knows is a clear error.
    const byHash = join(dir.path, 'by-hash', 'app.db');
    await runCliOk(['restore', '--backup-dir', join(dir.path, 'store'), '--db', byHash, '--before-migration', hashOf(MIGRATIONS[2]!.sql).slice(0, 8), '--migrations', folder3]);
    assert.ok(!(await columnsOf(byHash)).includes('pinned'));
    const unknown = await runCli(['restore', '--backup-dir', join(dir.path, 'store'), '--db', join(dir.path, 'x', 'app.db'), '--before-migration', '0009_nope']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No migration named "0009_nope" is known/);

    // Rollback: old code (the folder ending at 2) on the migrated database: SCHEMA_AHEAD naming both, nothing written.
    const manifestBefore = await readFile(join(dir.path, 'store', 'manifest.json'));
    const fileBefore = await fileHash(dbPath);
    await assert.rejects(open(dbPath, store, { folder: folder2, apply: true }), (error: unknown) => {
      assert.ok(isSyncError(error, 'SCHEMA_AHEAD'), String(error));
      assert.match(error.message, /migration 3 \(0002_pinned/, 'names the database position');
      assert.match(error.message, /folder ends at migration 2 \(0001_tags\)/, 'names the folder position');
      assert.match(error.message, /restore: \{ seq: \d+ \}/, 'names the restore point to roll back to');
      assert.match(error.message, /beforeMigration: "0002_pinned"/);
      assert.match(error.message, /ifAhead: 'start'/);
      return true;
    });
    assert.equal(await fileHash(dbPath), fileBefore, 'the local file is untouched');
    assert.deepEqual(await readFile(join(dir.path, 'store', 'manifest.json')), manifestBefore, 'nothing written to the store');
    // The lease was released: the newer code starts at once.
    const newer = await open(dbPath, store, { folder: folder3 });
    await newer.$sync.close();

    // The library's own roll-back by migration, on a wiped disk, with the old folder: starts at migration 2.
    const rolled = join(dir.path, 'rolled', 'app.db');
    const old = await open(rolled, store, { folder: folder2, apply: true }, { beforeMigration: '0002_pinned' });
    try {
      assert.ok(!(await columnsOf(rolled)).includes('pinned'));
      assert.equal(Number((await query(rolled, 'SELECT count(*) FROM notes'))[0]![0]), 26);
      await old.$sync.flush();
      const latest = (await readManifest(store)).snapshots[0]!;
      assert.equal(latest.rolledBackTo?.target, 'before-migration:0002_pinned', 'the roll-back is recorded (once)');
      assert.equal(latest.schema?.tag, '0001_tags');
    } finally {
      await old.$sync.close();
    }
  } finally {
    await dir.cleanup();
  }
});

test('a migration that fails halfway: the database is unchanged, nothing is uploaded, drizzle() fails with the SQL error; a restart with the folder fixed migrates', async () => {
  const dir = await tempDir('migrations-fail');
  try {
    const { store, dbPath } = await atMigrationTwo(dir.path);
    const folder = join(dir.path, 'drizzle-bad');
    // Its first statement works, its second fails: drizzle runs all pending migrations in one transaction.
    await writeFolder(folder, [...MIGRATIONS.slice(0, 2), { tag: '0002_pinned', sql: 'ALTER TABLE `notes` ADD `pinned` integer DEFAULT 0 NOT NULL;--> statement-breakpoint\nINSERT INTO `no_such_table` VALUES (1);' }]);
    const manifestBefore = await readFile(join(dir.path, 'store', 'manifest.json'));
    const rowsBefore = await query(dbPath, 'SELECT id, body, tags FROM notes ORDER BY id');
    await assert.rejects(open(dbPath, store, { folder, apply: true }), (error: unknown) => {
      assert.ok(isSyncError(error, 'MIGRATION_FAILED'), String(error));
      assert.match(error.message, /no such table: no_such_table/);
      return true;
    });
    assert.ok(!(await columnsOf(dbPath)).includes('pinned'), 'the first statement was rolled back with the rest');
    assert.deepEqual(await query(dbPath, 'SELECT id, body, tags FROM notes ORDER BY id'), rowsBefore, 'every row as before');
    assert.deepEqual(await readFile(join(dir.path, 'store', 'manifest.json')), manifestBefore, 'nothing uploaded');
    assert.equal((await readManifest(store)).snapshots[0]!.schema?.tag, '0001_tags', 'the latest restore point still names the good state');

    await writeFolder(folder, MIGRATIONS);
    const fixed = await open(dbPath, store, { folder, apply: true });
    try {
      assert.ok((await columnsOf(dbPath)).includes('pinned'));
      assert.equal((await readManifest(store)).snapshots[0]!.schema?.tag, '0002_pinned');
    } finally {
      await fixed.$sync.close();
    }
  } finally {
    await dir.cleanup();
  }
});

test('the drizzle-kit CLI path (restore --if-exists, drizzle-kit migrate, start): the store keeps the pre-migration restore point, and the next one is labelled with the new migration', async () => {
  const dir = await tempDir('migrations-kit');
  try {
    const { folder2 } = await atMigrationTwo(dir.path);
    const storeDir = join(dir.path, 'store');
    const store = directoryStore({ dir: storeDir });
    const folder3 = join(dir.path, 'drizzle-3');
    await writeFolder(folder3, MIGRATIONS);
    const deployed = join(dir.path, 'container', 'app.db');
    await runCliOk(['restore', '--if-exists', '--backup-dir', storeDir, '--db', deployed]);
    const config = join(dir.path, 'drizzle.config.mjs');
    await writeFile(config, `export default { dialect: 'turso', out: ${JSON.stringify(folder3)}, dbCredentials: { url: ${JSON.stringify(`file:${deployed}`)} } };\n`);
    const kit = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [join(REPO, 'node_modules', 'drizzle-kit', 'bin.cjs'), 'migrate', '--config', config], { cwd: dir.path, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c));
      child.stderr.on('data', (c: Buffer) => (out += c));
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, out }));
    });
    assert.equal(kit.code, 0, kit.out);
    assert.ok((await columnsOf(deployed)).includes('pinned'), 'drizzle-kit applied migration 3');
    const seqBefore = (await readManifest(store)).seq;
    assert.equal((await readManifest(store)).snapshots[0]!.schema?.migrations, 2, 'the store latest is the pre-migration state');

    const app = await open(deployed, store, { folder: folder3, apply: true });
    try {
      await app.$sync.flush();
      const manifest = await readManifest(store);
      const latest = manifest.snapshots[0]!;
      assert.ok(latest.seq > seqBefore, 'the migrated file was uploaded at start');
      assert.deepEqual(latest.schema, { migrations: 3, hash: hashOf(MIGRATIONS[2]!.sql), createdAt: WHEN + 2000, tag: '0002_pinned' });
      assert.equal(manifest.snapshots.find((s) => s.seq === seqBefore)?.schema?.migrations, 2);
    } finally {
      await app.$sync.close();
    }
    assert.ok(existsSync(folder2));
  } finally {
    await dir.cleanup();
  }
});
