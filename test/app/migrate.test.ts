import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrate } from 'drizzle-orm/libsql/migrator';
import { directoryStore, drizzle } from 'drizzle-libsql-blob';
import { notes, schema, tempDir } from '../helpers/fixtures.ts';

const migrationsFolder = fileURLToPath(new URL('../fixtures/migrations', import.meta.url));
let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('migrate')));
after(() => dir.cleanup());

test("drizzle's migrate() works on the returned db, its commit is counted and snapshotted", async () => {
  const store = directoryStore({ dir: join(dir.path, 'store') });
  const options = { schema, store, log: false as const, shutdown: { signals: false }, snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } };
  const db = await drizzle({ connection: { url: `file:${join(dir.path, 'a.db')}` }, ...options });
  assert.equal(db.$sync.status().commits, 0);
  await migrate(db, { migrationsFolder });
  const afterMigrate = db.$sync.status().commits;
  assert.ok(afterMigrate >= 1, 'the migration batch is counted');
  await db.insert(notes).values({ body: 'after migrate' });
  await db.$sync.close();

  const restored = await drizzle({ connection: { url: `file:${join(dir.path, 'b.db')}` }, ...options });
  assert.deepEqual((await restored.query.notes.findMany()).map((r) => r.body), ['after migrate']);
  // Already applied: a second migrate() runs no migration statement.
  const before = restored.$sync.status().commits;
  await migrate(restored, { migrationsFolder });
  const indexes = await restored.$client.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'notes_body_idx'");
  assert.equal(indexes.rows.length, 1);
  assert.ok(restored.$sync.status().commits - before <= 1, 'only the bookkeeping CREATE TABLE IF NOT EXISTS');
  await restored.$sync.close();
});
