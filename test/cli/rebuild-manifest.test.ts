/**
 * `drizzle-libsql-blob rebuild-manifest` (issue 11, bug 3: a deleted manifest must not lead to deleting
 * the old data). Snapshot history is written by the library itself into a real Azurite (and a directory
 * store), `manifest.json` is deleted through the store, and the CLI runs as a real process. Every wait is
 * on a process exit or a promise, never a sleep.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { azureBlobStore, directoryStore, type SnapshotStore } from 'drizzle-libsql-blob';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';
import { isCode, notes, open, readManifest, tempDir, type TempDir } from '../helpers/fixtures.ts';
import { MANIFEST_KEY, type Manifest, type SnapshotEntry } from '../../src/sync/manifest.ts';
import { decodeChunkIndex } from '../../src/sync/chunks/chunk-index.ts';
import { publishRebuiltManifest, rebuildManifest } from '../../src/sync/manifest-rebuild.ts';
import { DEFAULT_RETRY } from '../../src/sync/retry.ts';
import { runCli as run, type CliRun as Run } from '../helpers/cli.ts';


function assertExit(result: Run, code: number, what: string): void {
  assert.equal(result.code, code, `${what} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

/** Every object under the store's prefix, with its size and last-modified time: any delete, write or overwrite changes it. */
async function listing(store: SnapshotStore): Promise<string[]> {
  return (await store.list('')).map((o) => `${o.key} ${o.size} ${o.lastModified.toISOString()}`);
}

async function rowsIn(store: SnapshotStore, dbPath: string): Promise<string[]> {
  const db = await open(dbPath, store, { snapshot: { debounceMs: 60_000, maxIntervalMs: 600_000 } });
  try {
    return (await db.select().from(notes).orderBy(notes.id)).map((r) => r.body);
  } finally {
    await db.$sync.close();
  }
}

interface Written {
  /** Oldest first. */
  snapshots: Array<{ seq: number; rows: string[] }>;
  manifest: Manifest;
}

/**
 * Snapshots written by the library: one session per mode in `modes` (in order), one flushed burst of
 * two rows each. Returns each snapshot's rows and the manifest as the library published it.
 */
async function writeHistory(store: SnapshotStore, dbPath: string, modes: Array<'full' | 'incremental'>, extra: Parameters<typeof open>[2] = {}): Promise<Written> {
  const rows: string[] = [];
  const snapshots: Written['snapshots'] = [];
  for (const [i, mode] of modes.entries()) {
    // Chunk sets, not page deltas (maxDeltas 0): a rebuild recovers chunk sets and full snapshots only (README).
    const db = await open(dbPath, store, { ...extra, snapshot: { debounceMs: 60_000, maxIntervalMs: 600_000, mode, maxDeltas: 0 } });
    for (const n of [1, 2]) {
      await db.insert(notes).values({ body: `${mode}-${i}-${n}` });
      rows.push(`${mode}-${i}-${n}`);
    }
    const info = await db.$sync.flush();
    assert.ok(info?.uploaded, `session ${i} (${mode}) uploaded a snapshot`);
    snapshots.push({ seq: info.seq, rows: [...rows] });
    await db.$sync.close();
  }
  return { snapshots, manifest: await readManifest(store) };
}

/**
 * What a rebuild can recover of an entry: everything but the creation time (it becomes the object's
 * last-modified time) and the schema position (recorded in the manifest only: a rebuilt entry has none).
 */
const recoverable = ({ createdAt: _createdAt, schema: _schema, ...rest }: SnapshotEntry) => rest;

describe('rebuild-manifest against Azurite', () => {
  const ctx = useAzuriteAndTempDir('rebuild');
  const container = 'rebuild';
  let store: SnapshotStore;
  let env: Record<string, string>;
  let written: Written;
  let wiped = 0;
  /** A database path in a fresh, empty directory: start-up has nothing local to go on. */
  const wipedDb = () => join(ctx.dir.path, `wiped-${++wiped}`, 'app.db');

  before(async () => {
    store = azureBlobStore({ connectionString: ctx.azurite.connectionString, container, prefix: 'app', createContainer: true });
    await store.probe();
    // seq 1 full, seq 2 and 3 incremental (chunked).
    written = await writeHistory(store, join(ctx.dir.path, 'writer', 'app.db'), ['full', 'incremental', 'incremental']);
    assert.deepEqual(written.manifest.snapshots.map((s) => s.kind ?? 'full'), ['chunks', 'chunks', 'full']);
    env = { AZURE_STORAGE_CONNECTION_STRING: ctx.azurite.connectionString, AZURE_STORAGE_CONTAINER: container, AZURE_STORAGE_PREFIX: 'app' };
    await store.delete(MANIFEST_KEY);
  });

  test('start-up on a wiped local dir refuses with MANIFEST_MISSING and changes nothing in the store', async () => {
    const before = await listing(store);
    assert.ok(before.length > 3 && !before.some((l) => l.startsWith(MANIFEST_KEY)), 'snapshots and chunks, no manifest');
    await assert.rejects(open(wipedDb(), store), isCode('MANIFEST_MISSING'));
    assert.deepEqual(await listing(store), before, 'no object under the prefix was created, deleted or changed');
  });

  test('--dry-run reports every snapshot as verified and writes nothing', async () => {
    const before = await listing(store);
    const dry = await run(['rebuild-manifest', '--dry-run'], env);
    assertExit(dry, 0, 'rebuild-manifest --dry-run');
    const latest = written.snapshots.at(-1)!.seq;
    assert.match(dry.stdout, /^found 3 snapshot object\(s\) and \d+ chunk\(s\)/m);
    for (const { seq } of written.snapshots) assert.match(dry.stdout, new RegExp(`^\\s*${seq}\\s+\\w+\\s+.*\\bok\\s+snapshots/`, 'm'), `seq ${seq} verified`);
    assert.match(dry.stdout, new RegExp(`^rebuilt manifest\\.json: latest seq ${latest} .* 3 snapshot\\(s\\) listed, 0 skipped`, 'm'));
    assert.match(dry.stdout, /^dry run: nothing was written$/m);
    assert.deepEqual(await listing(store), before, 'the dry run wrote, deleted and changed nothing');

    const json = JSON.parse((await run(['rebuild-manifest', '--dry-run', '--json'], env)).stdout);
    assert.equal(json.dryRun, true);
    assert.equal(json.published, false);
    assert.deepEqual(json.manifest.snapshots.map(recoverable), written.manifest.snapshots.map(recoverable), 'the dry run would list exactly what the library had published');
    assert.deepEqual(await listing(store), before);
  });

  test('rebuild-manifest publishes the manifest the library had (bar creation times); start-up then restores the newest snapshot', async () => {
    const before = await listing(store);
    const result = await run(['rebuild-manifest', '--json'], env);
    assertExit(result, 0, 'rebuild-manifest');
    const json = JSON.parse(result.stdout);
    assert.equal(json.published, true);
    assert.deepEqual(json.snapshots.map((s: { seq: number; outcome: string }) => [s.seq, s.outcome]), written.snapshots.map((s) => [s.seq, 'verified']).reverse());

    const rebuilt = await readManifest(store);
    assert.equal(rebuilt.seq, written.manifest.seq);
    assert.equal(rebuilt.generation, written.manifest.generation);
    assert.deepEqual(rebuilt.snapshots.map(recoverable), written.manifest.snapshots.map(recoverable));
    const after = await listing(store);
    assert.deepEqual(after.filter((l) => !l.startsWith(`${MANIFEST_KEY} `)), before, 'only the manifest was written; nothing deleted or changed');

    assert.deepEqual(await rowsIn(store, wipedDb()), written.snapshots.at(-1)!.rows, 'every row of the newest snapshot');

    // A manifest exists now: the command refuses and changes nothing.
    const again = await listing(store);
    const refused = await run(['rebuild-manifest'], env);
    assertExit(refused, 1, 'rebuild-manifest over an existing manifest');
    assert.match(refused.stderr, /^error \[CONFLICT\]: .*already holds a manifest\.json .*Nothing was changed\./m);
    assert.deepEqual(await listing(store), again);
  });

  test("the newest snapshot missing a chunk is skipped and named; the previous one becomes the latest", async () => {
    await store.delete(MANIFEST_KEY);
    const [newest, previous] = written.manifest.snapshots;
    const indexOf = async (entry: SnapshotEntry) => decodeChunkIndex((await store.readSmall(entry.key))!.body, entry.key);
    const older = new Set((await indexOf(previous!)).chunks);
    const own = (await indexOf(newest!)).chunks.find((c) => !older.has(c));
    assert.ok(own, 'the newest snapshot has a chunk of its own');
    await store.delete(`chunks/${own}`);
    const before = await listing(store);

    const result = await run(['rebuild-manifest'], env);
    assertExit(result, 0, 'rebuild-manifest');
    assert.match(result.stdout, new RegExp(`^\\s*${newest!.seq}\\s+chunks\\s+SKIPPED\\s+${newest!.key.replaceAll('.', '\\.')}\\s+NOT_FOUND: Chunk ${own!.slice(0, 16)}`, 'm'));
    assert.match(result.stdout, new RegExp(`^rebuilt manifest\\.json: latest seq ${previous!.seq} .* 2 snapshot\\(s\\) listed, 1 skipped`, 'm'));
    assert.match(result.stdout, /^note: skipped snapshot objects are not listed/m);
    assert.match(result.stderr, new RegExp(`seq ${newest!.seq}: SKIPPED \\[NOT_FOUND\\]`));

    const rebuilt = await readManifest(store);
    assert.equal(rebuilt.seq, previous!.seq);
    assert.deepEqual(rebuilt.snapshots.map(recoverable), written.manifest.snapshots.slice(1).map(recoverable));
    assert.deepEqual((await listing(store)).filter((l) => !l.startsWith(`${MANIFEST_KEY} `)), before, 'the skipped snapshot was left in place');
    assert.deepEqual(await rowsIn(store, wipedDb()), written.snapshots.at(-2)!.rows, 'start-up restores the previous snapshot');
  });
});

describe('rebuild-manifest against a directory store', () => {
  const ctx: { dir: TempDir } = { dir: undefined as unknown as TempDir };
  before(async () => (ctx.dir = await tempDir('rebuild-dir')));
  after(() => ctx.dir?.cleanup());

  test('nothing verifies: SNAPSHOT_CORRUPT naming what was found, exit 1, no manifest written, nothing changed', async () => {
    const storeDir = join(ctx.dir.path, 'store');
    const store = directoryStore({ dir: storeDir });
    const written = await writeHistory(store, join(ctx.dir.path, 'writer', 'app.db'), ['incremental', 'full']);
    const [full, chunked] = written.manifest.snapshots;
    await store.delete(MANIFEST_KEY);
    // The full snapshot: one byte flipped (same size). The chunked one: its chunk index damaged.
    for (const key of [full!.key, chunked!.key]) {
      const path = join(storeDir, key);
      const bytes = await readFile(path);
      const at = Math.floor(bytes.length / 2);
      bytes[at] = bytes[at]! ^ 0xff;
      await writeFile(path, bytes);
    }
    const before = await listing(store);

    const result = await run(['rebuild-manifest', '--backup-dir', storeDir]);
    assertExit(result, 1, 'rebuild-manifest with nothing that verifies');
    assert.match(
      result.stderr,
      new RegExp(`^error \\[SNAPSHOT_CORRUPT\\]: No snapshot in \\S+ verifies: found 2 snapshot object\\(s\\) \\(seq ${chunked!.seq}\\.\\.${full!.seq}\\) and \\d+ chunk\\(s\\); seq ${full!.seq}: SNAPSHOT_CORRUPT; seq ${chunked!.seq}: SNAPSHOT_CORRUPT\\. No manifest was written`, 'm'),
    );
    assert.equal(await store.readSmall(MANIFEST_KEY), null, 'no manifest written');
    assert.deepEqual(await listing(store), before, 'nothing deleted or changed');

    const json = await run(['rebuild-manifest', '--backup-dir', storeDir, '--json']);
    assertExit(json, 1, 'rebuild-manifest --json');
    assert.equal(JSON.parse(json.stdout).error.code, 'SNAPSHOT_CORRUPT');
  });

  test('encrypted snapshots: a missing or wrong SNAPSHOT_ENCRYPTION_KEY is CONFIG (not corrupt, nothing written); the right key rebuilds', async () => {
    const storeDir = join(ctx.dir.path, 'encrypted');
    const store = directoryStore({ dir: storeDir });
    const key = Buffer.alloc(32, 7).toString('base64');
    const written = await writeHistory(store, join(ctx.dir.path, 'encrypted-writer', 'app.db'), ['incremental', 'incremental'], { encryption: { key } });
    assert.ok(written.manifest.snapshots.every((s) => s.keyId), 'the snapshots are encrypted');
    await store.delete(MANIFEST_KEY);
    const before = await listing(store);

    const missing = await run(['rebuild-manifest', '--backup-dir', storeDir]);
    assertExit(missing, 1, 'rebuild-manifest without the key');
    assert.match(missing.stderr, /^error \[CONFIG\]: Snapshot seq \d+ in \S+ is encrypted; configure its key/m);
    const wrong = await run(['rebuild-manifest', '--backup-dir', storeDir], { SNAPSHOT_ENCRYPTION_KEY: Buffer.alloc(32, 8).toString('base64') });
    assertExit(wrong, 1, 'rebuild-manifest with the wrong key');
    assert.match(wrong.stderr, /^error \[CONFIG\]: Wrong encryption key/m);
    assert.deepEqual(await listing(store), before, 'nothing written on a key error');

    assertExit(await run(['rebuild-manifest', '--backup-dir', storeDir], { SNAPSHOT_ENCRYPTION_KEY: key }), 0, 'rebuild-manifest with the key');
    assert.deepEqual((await readManifest(store)).snapshots.map(recoverable), written.manifest.snapshots.map(recoverable));
  });

  test('a manifest that appears while rebuilding is never replaced: CONFLICT, the new one stays', async () => {
    const storeDir = join(ctx.dir.path, 'raced');
    const store = directoryStore({ dir: storeDir });
    const written = await writeHistory(store, join(ctx.dir.path, 'raced-writer', 'app.db'), ['incremental', 'incremental']);
    const appeared = (await store.readSmall(MANIFEST_KEY))!.body;
    await store.delete(MANIFEST_KEY);
    const silent = { info() {}, warn() {}, error() {} };
    const { manifest } = await rebuildManifest(store, { retry: DEFAULT_RETRY, log: silent });
    assert.equal(manifest.seq, written.manifest.seq);
    // Meanwhile someone puts a manifest back (here: the old one with an extra field, so it differs from the rebuilt one).
    const theirs = Buffer.from(JSON.stringify({ ...JSON.parse(appeared.toString()), garbage: [] }));
    await store.writeSmall(MANIFEST_KEY, theirs, { ifNoneMatch: '*' });
    await assert.rejects(publishRebuiltManifest(store, manifest), (error: unknown) => {
      isCode('CONFLICT')(error);
      assert.match((error as Error).message, new RegExp(`A manifest\\.json appeared in \\S+ while the manifest was being rebuilt \\(one at seq ${written.manifest.seq}\\).* It was not replaced\\.`));
      return true;
    });
    assert.deepEqual((await store.readSmall(MANIFEST_KEY))!.body, theirs, 'the manifest that appeared is untouched');
  });
});
