/**
 * Every restore point records its place in drizzle's migration history (issue 15, first part): the
 * migrations applied and the last one's hash and created_at, read in the snapshot's own read
 * transaction; `list` shows it. Real libSQL files, drizzle's own migrate(), the real directory store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { migrate } from 'drizzle-orm/libsql/migrator';
import { directoryStore } from 'drizzle-libsql-blob';
import { readManifest, tempDir } from '../helpers/fixtures.ts';
import { runCliOk } from '../helpers/cli.ts';
import { drizzle } from 'drizzle-libsql-blob';
import { MIGRATIONS_DIR } from '../../bench/dataset.ts';
import { createClient } from '@libsql/client';
import { downloadSnapshot } from '../../src/sync/restore.ts';

const MANUAL = { debounceMs: 600_000, maxIntervalMs: 600_000, maxCommits: 1_000_000 };

test('every restore point records the migrations applied (count, last hash and created_at), through deltas and chunk sets; list and status() show it', async () => {
  const dir = await tempDir('schema-position');
  try {
    // The reference app's migrations folder, plus a second migration.
    const folder = join(dir.path, 'drizzle');
    await cp(MIGRATIONS_DIR, folder, { recursive: true });
    const second = 'ALTER TABLE `documents` ADD `note` text;';
    const journal = JSON.parse(await readFile(join(folder, 'meta', '_journal.json'), 'utf8')) as { entries: Array<{ idx: number; version: string; when: number; tag: string; breakpoints: boolean }> };
    const firstEntry = journal.entries[0]!;
    const firstHash = createHash('sha256').update(await readFile(join(folder, `${firstEntry.tag}.sql`), 'utf8')).digest('hex');
    const storeDir = join(dir.path, 'store');
    const store = directoryStore({ dir: storeDir });
    const db = await drizzle({ connection: { url: `file:${join(dir.path, 'app.db')}` }, store, log: false, shutdown: { signals: false }, snapshot: { ...MANUAL, chunkSize: 64 * 1024 } });
    try {
      await db.run(sql`CREATE TABLE plain (id INTEGER PRIMARY KEY)`);
      await db.$sync.flush();
      assert.deepEqual((await readManifest(store)).snapshots[0]!.schema, { migrations: 0, hash: '', createdAt: 0 }, 'no migration table: none applied, recorded as such');
      assert.deepEqual(db.$sync.status().lastSnapshot?.schema, { migrations: 0, hash: '', createdAt: 0 });

      await migrate(db, { migrationsFolder: folder });
      const one = (await db.$sync.flush())!;
      assert.equal(one.kind, 'delta');
      assert.deepEqual((await readManifest(store)).snapshots[0]!.schema, { migrations: 1, hash: firstHash, createdAt: firstEntry.when });
      assert.deepEqual(db.$sync.status().lastSnapshot?.schema, { migrations: 1, hash: firstHash, createdAt: firstEntry.when }, 'status() shows it');

      await mkdir(join(folder, 'meta'), { recursive: true });
      await writeFile(join(folder, '0001_note.sql'), second);
      journal.entries.push({ ...firstEntry, idx: 1, when: firstEntry.when + 1000, tag: '0001_note' });
      await writeFile(join(folder, 'meta', '_journal.json'), JSON.stringify(journal));
      await migrate(db, { migrationsFolder: folder });
      await db.$sync.flush();
      const manifest = await readManifest(store);
      const secondHash = createHash('sha256').update(second).digest('hex');
      assert.deepEqual(manifest.snapshots[0]!.schema, { migrations: 2, hash: secondHash, createdAt: firstEntry.when + 1000 });
      assert.deepEqual(manifest.snapshots[1]!.schema?.migrations, 1, 'the restore point before the migration keeps its position');
    } finally {
      await db.$sync.close();
    }

    // A chunk set records it too (a restart's first upload reads the whole file).
    const again = await drizzle({ connection: { url: `file:${join(dir.path, 'again.db')}` }, store: directoryStore({ dir: join(dir.path, 'store2') }), log: false, shutdown: { signals: false }, snapshot: { ...MANUAL, maxDeltas: 0 } });
    try {
      await migrate(again, { migrationsFolder: folder });
      assert.equal((await again.$sync.flush())!.kind, 'chunks');
      assert.equal((await readManifest(directoryStore({ dir: join(dir.path, 'store2') }))).snapshots[0]!.schema?.migrations, 2);
    } finally {
      await again.$sync.close();
    }

    const listed = await runCliOk(['list', '--backup-dir', storeDir]);
    const lines = listed.stdout.split('\n');
    assert.match(lines[0]!, /\bmigrations\b/);
    assert.ok(lines.some((l) => l.includes(`2 (${createHash('sha256').update(second).digest('hex').slice(0, 8)})`)), listed.stdout);
    assert.ok(lines.some((l) => l.includes(`1 (${firstHash.slice(0, 8)})`)), listed.stdout);
  } finally {
    await dir.cleanup();
  }
});

test("drizzle's migrate() on the app's db first makes every commit durable: the store holds a restore point with the schema before the migration and every row written before it", async () => {
  const dir = await tempDir('safety-point');
  try {
    const folder = join(dir.path, 'drizzle');
    await cp(MIGRATIONS_DIR, folder, { recursive: true });
    const store = directoryStore({ dir: join(dir.path, 'store') });
    const db = await drizzle({ connection: { url: `file:${join(dir.path, 'app.db')}` }, store, log: false, shutdown: { signals: false }, snapshot: { ...MANUAL, chunkSize: 64 * 1024 } });
    try {
      await migrate(db, { migrationsFolder: folder });
      await db.$sync.flush();
      // Rows written after the last upload: only in the local file.
      await db.run(sql`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)`);
      for (let i = 0; i < 5; i++) await db.run(sql`INSERT INTO notes (body) VALUES (${`before ${i}`})`);
      assert.equal(db.$sync.status().pendingCommits, 6);
      const seqBefore = (await readManifest(store)).seq;

      const journal = JSON.parse(await readFile(join(folder, 'meta', '_journal.json'), 'utf8')) as { entries: Array<{ when: number; tag: string }> };
      await writeFile(join(folder, '0001_note.sql'), 'ALTER TABLE `documents` ADD `note` text;');
      journal.entries.push({ ...journal.entries[0]!, when: journal.entries[0]!.when + 1000, tag: '0001_note' } as never);
      await writeFile(join(folder, 'meta', '_journal.json'), JSON.stringify(journal));
      await migrate(db, { migrationsFolder: folder });

      // No flush: the safety point was uploaded by migrate() itself, before the migration ran.
      const manifest = await readManifest(store);
      const safety = manifest.snapshots[0]!;
      assert.ok(safety.seq > seqBefore, 'a restore point was published by the migration');
      assert.equal(safety.schema?.migrations, 1, 'labelled with the schema before the migration');
      assert.equal(db.$sync.status().pendingCommits, 1, 'only the migration is pending');
      const restored = join(dir.path, 'safety.db');
      await downloadSnapshot(store, safety, restored, { snapshots: manifest.snapshots });
      const check = createClient({ url: `file:${restored}` });
      try {
        assert.equal(Number((await check.execute('SELECT count(*) FROM notes')).rows[0]![0]), 5, 'every row written before the migration');
        const columns = (await check.execute('PRAGMA table_info(documents)')).rows.map((r) => String(r[1]));
        assert.ok(!columns.includes('note'), 'the migration had not run');
      } finally {
        check.close();
      }
      await db.$sync.flush();
      assert.equal((await readManifest(store)).snapshots[0]!.schema?.migrations, 2, 'the next restore point has the new schema');
    } finally {
      await db.$sync.close();
    }
  } finally {
    await dir.cleanup();
  }
});
