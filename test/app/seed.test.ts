import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { count, eq, sql } from 'drizzle-orm';
import { migrate } from 'drizzle-orm/libsql/migrator';
import { directoryStore, drizzle } from 'drizzle-libsql-blob';
import * as schema from '../../schema/index.ts';
import { DOCUMENT_TYPES, documents } from '../../schema/documents.ts';
import { DEFAULT_SEED_DIR, SeedValidationError, loadSeeds, runSeeds, type SeedDocument } from '../../seeds/runner.ts';
import { countingStore, tempDir } from '../helpers/fixtures.ts';

const migrationsFolder = fileURLToPath(new URL('../../drizzle', import.meta.url));
let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('seed')));
after(() => dir.cleanup());

/** A migrated, unseeded database on a counting store; no timer snapshots, so every upload is a flush we asked for. */
async function openMigrated(name: string) {
  const store = countingStore(directoryStore({ dir: join(dir.path, `${name}-store`) }));
  const db = await drizzle({
    connection: { url: `file:${join(dir.path, `${name}.db`)}` },
    schema,
    store,
    log: false,
    shutdown: { signals: false },
    snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 },
  });
  await migrate(db, { migrationsFolder });
  await db.$sync.flush();
  return { db, store };
}

type Db = Awaited<ReturnType<typeof openMigrated>>['db'];

async function countsByType(db: Db): Promise<Record<string, number>> {
  const rows = await db.select({ type: documents.type, n: count() }).from(documents).groupBy(documents.type);
  return Object.fromEntries(rows.map((r) => [r.type, r.n]));
}

function seedCounts(seeds: SeedDocument[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of seeds) out[s.type] = (out[s.type] ?? 0) + 1;
  return out;
}

async function copySeeds(label: string): Promise<string> {
  const copy = join(dir.path, `seeds-${label}`);
  await cp(DEFAULT_SEED_DIR, copy, { recursive: true });
  return copy;
}

test('the shipped seeds are plentiful, unique and reference real personas', async () => {
  const seeds = await loadSeeds();
  const counts = seedCounts(seeds);
  assert.ok((counts.persona ?? 0) >= 19, `personas: ${counts.persona}`);
  assert.ok((counts.template ?? 0) >= 2, `templates: ${counts.template}`);
  assert.ok((counts.mood ?? 0) >= 10, `moods: ${counts.mood}`);
  assert.ok((counts.scenario ?? 0) >= 1, `scenarios: ${counts.scenario}`);
  assert.equal(new Set(seeds.map((s) => s.id)).size, seeds.length);
  const ids = new Set(seeds.map((s) => s.id));
  for (const s of seeds.filter((d) => d.type === 'scenario')) {
    for (const p of s.content.participants as string[]) assert.ok(ids.has(p), `${s.id} names unknown participant ${p}`);
  }
  for (const s of seeds.filter((d) => d.type === 'template')) {
    const used = new Set([...(s.content.template as string).matchAll(/\{\{(\w+)\}\}/g)].map((m) => m[1]));
    assert.deepEqual([...used].sort(), [...(s.content.variables as string[])].sort(), `${s.id}: placeholders and variables differ`);
  }
});

test('seeding inserts every type (accepted by the CHECK), and a second run writes nothing and uploads nothing', async () => {
  const { db, store } = await openMigrated('idempotent');
  const seeds = await loadSeeds();

  const first = await runSeeds(db);
  assert.equal(first.changed, true);
  assert.equal(first.files, 4);
  assert.deepEqual(Object.keys(first.byType).sort(), [...DOCUMENT_TYPES].sort());
  const expected = seedCounts(seeds);
  for (const type of DOCUMENT_TYPES) assert.deepEqual(first.byType[type], { inserted: expected[type] ?? 0, updated: 0, unchanged: 0 });
  assert.deepEqual(await countsByType(db), expected);
  const ada = await db.query.documents.findFirst({ where: eq(documents.id, 'persona:ada-lovelace') });
  assert.equal(ada?.version, 1);
  assert.equal(ada?.createdAt.getTime(), ada?.updatedAt.getTime());
  assert.deepEqual(ada?.content, seeds.find((s) => s.id === 'persona:ada-lovelace')?.content);
  assert.ok((await db.$sync.flush())?.uploaded, 'the first seed is snapshotted');

  const commits = db.$sync.status().commits;
  const uploads = store.calls.uploadFile + store.calls.uploadBuffer;
  const manifestWrites = store.calls.writeSmall;
  const second = await runSeeds(db);
  assert.equal(second.changed, false);
  for (const type of DOCUMENT_TYPES) assert.deepEqual(second.byType[type], { inserted: 0, updated: 0, unchanged: expected[type] ?? 0 });
  assert.equal(db.$sync.status().commits, commits, 'no commit');
  assert.equal(db.$sync.status().pendingCommits, 0);
  assert.equal(await db.$sync.flush(), null, 'nothing to snapshot');
  assert.equal(store.calls.uploadFile + store.calls.uploadBuffer, uploads);
  assert.equal(store.calls.writeSmall, manifestWrites);
  await db.$sync.close();
  assert.equal(store.calls.uploadFile + store.calls.uploadBuffer, uploads, 'close() takes no snapshot either');
});

test('editing one seed updates exactly that row and bumps its version; reordering keys changes nothing', async () => {
  const { db } = await openMigrated('edit');
  await runSeeds(db);
  const before = new Map((await db.select().from(documents)).map((r) => [r.id, r]));

  const seedDir = await copySeeds('edit');
  const file = join(seedDir, 'moods.json');
  const moods = JSON.parse(await readFile(file, 'utf8')) as { id: string; content: Record<string, unknown> }[];
  const target = moods[3]!;
  target.content.tone = 'terse and structured, but allows one friendly sign-off';
  // Same content with its keys in another order: not a change.
  const reordered = moods[0]!;
  reordered.content = Object.fromEntries(Object.entries(reordered.content).reverse());
  await writeFile(file, JSON.stringify(moods, null, 2));

  const commits = db.$sync.status().commits;
  const report = await runSeeds(db, { dir: seedDir });
  assert.equal(report.changed, true);
  assert.deepEqual(report.byType.mood, { inserted: 0, updated: 1, unchanged: moods.length - 1 });
  for (const type of ['persona', 'template', 'scenario'] as const) assert.equal(report.byType[type].updated, 0);
  assert.equal(db.$sync.status().commits, commits + 1, 'one transaction');

  for (const row of await db.select().from(documents)) {
    const old = before.get(row.id)!;
    if (row.id === target.id) {
      assert.equal(row.version, old.version + 1);
      assert.equal(row.content.tone, target.content.tone);
      assert.equal(row.createdAt.getTime(), old.createdAt.getTime());
      assert.ok(row.updatedAt.getTime() >= old.updatedAt.getTime());
    } else {
      assert.deepEqual(row, old, `${row.id} untouched`);
    }
  }
  await db.$sync.close();
});

interface BadCase {
  label: string;
  file: string;
  body: string;
  field: string;
  index: number;
}

const badDoc = (doc: Record<string, unknown>) => JSON.stringify([{ id: 'mood:fine', type: 'mood', name: 'Fine', content: { description: 'ok', intensity: 1, tone: 'ok' } }, doc]);
const BAD_CASES: BadCase[] = [
  { label: 'wrong type value', file: 'zz-bad.json', body: badDoc({ id: 'mood:sulky', type: 'feeling', name: 'Sulky', content: {} }), field: 'type', index: 1 },
  { label: 'missing name', file: 'zz-bad.json', body: badDoc({ id: 'mood:nameless', type: 'mood', content: {} }), field: 'name', index: 1 },
  { label: 'content not an object', file: 'zz-bad.json', body: badDoc({ id: 'mood:listy', type: 'mood', name: 'Listy', content: ['a', 'b'] }), field: 'content', index: 1 },
  { label: 'unknown field', file: 'zz-bad.json', body: badDoc({ id: 'mood:tagged', type: 'mood', name: 'Tagged', content: {}, tags: ['x'] }), field: 'tags', index: 1 },
  { label: 'duplicate id across files', file: 'zz-dup.json', body: badDoc({ id: 'persona:ada-lovelace', type: 'persona', name: 'Another Ada', content: {} }), field: 'id', index: 1 },
  { label: 'duplicate type and name across files', file: 'zz-dup.json', body: badDoc({ id: 'persona:ada-2', type: 'persona', name: 'Ada Lovelace', content: {} }), field: 'name', index: 1 },
  { label: 'invalid JSON', file: 'zz-broken.json', body: '[{ "id": "mood:x", "type": "mood", ', field: '(file)', index: -1 },
  { label: 'not an array', file: 'zz-object.json', body: '{ "id": "mood:x" }', field: '(file)', index: -1 },
  { label: 'a non-JSON file', file: 'zz-notes.yaml', body: '- id: mood:x\n', field: '(file)', index: -1 },
];

test('bad seed files are refused with the file and field named, and nothing is written', async () => {
  const { db, store } = await openMigrated('bad');
  const commits = db.$sync.status().commits;
  const calls = store.total();
  for (const [i, c] of BAD_CASES.entries()) {
    const seedDir = await copySeeds(`bad-${i}`);
    // Sorts after every good file: a runner that wrote file by file would already have inserted them.
    await writeFile(join(seedDir, c.file), c.body);
    await assert.rejects(runSeeds(db, { dir: seedDir }), (error: unknown) => {
      assert.ok(error instanceof SeedValidationError, `${c.label}: ${String(error)}`);
      assert.equal(error.code, 'SEED_INVALID');
      assert.equal(error.file, c.file, c.label);
      assert.equal(error.field, c.field, c.label);
      assert.equal(error.index, c.index, c.label);
      assert.match(error.message, new RegExp(c.file.replace('.', '\\.')), c.label);
      if (c.index >= 0) assert.match(error.message, new RegExp(`document \\[${c.index}\\], field "${c.field.replace(/[()]/g, '\\$&')}"`), c.label);
      return true;
    });
    const [{ n }] = (await db.select({ n: count() }).from(documents)) as [{ n: number }];
    assert.equal(n, 0, `${c.label}: no row written`);
    assert.equal(db.$sync.status().commits, commits, `${c.label}: no commit`);
  }

  // A bad document deep inside a good file is caught too, with its index.
  const seedDir = await copySeeds('bad-inner');
  const personas = JSON.parse(await readFile(join(seedDir, 'personas.json'), 'utf8')) as Record<string, unknown>[];
  personas[7]!.content = 'a string';
  await writeFile(join(seedDir, 'personas.json'), JSON.stringify(personas));
  await assert.rejects(runSeeds(db, { dir: seedDir }), { name: 'SeedValidationError', file: 'personas.json', field: 'content', index: 7 });

  await assert.rejects(runSeeds(db, { dir: join(dir.path, 'no-such-dir') }), { code: 'SEED_INVALID', field: '(file)' });
  const empty = join(dir.path, 'seeds-empty');
  await mkdir(empty);
  await assert.rejects(runSeeds(db, { dir: empty }), (error: unknown) => error instanceof SeedValidationError && /no \*\.json seed file/.test(error.message));

  assert.equal(db.$sync.status().commits, commits);
  assert.equal(store.total(), calls, 'no store request');
  await db.$sync.close();
});

test('a seed whose name belongs to another document already in the database is refused before writing', async () => {
  const { db } = await openMigrated('clash');
  const now = new Date();
  await db.insert(documents).values({ id: 'mood:user-made-calm', type: 'mood', name: 'Calm', content: { description: 'made by a user' }, createdAt: now, updatedAt: now });
  const commits = db.$sync.status().commits;
  await assert.rejects(runSeeds(db), { name: 'SeedValidationError', file: 'moods.json', field: 'name', index: 0 });
  assert.equal(db.$sync.status().commits, commits);
  const [{ n }] = (await db.select({ n: sql<number>`count(*)` }).from(documents)) as [{ n: number }];
  assert.equal(n, 1);
  await db.$sync.close();
});
