import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createClient } from '@libsql/client';
import { azureBlobStore, directoryStore, drizzle, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { compressFile } from '../../src/sync/codec.ts';
import { MANIFEST_KEY, encodeManifest, type SnapshotEntry } from '../../src/sync/manifest.ts';
import { isCode, notes, open, readManifest } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const fixture = useAzuriteAndTempDir('failures');

/** A store holding one good snapshot with `rows` notes; returns its manifest bytes. */
async function seedBackup(store: SnapshotStore, name: string, rows = 5): Promise<Buffer> {
  const db = await open(join(fixture.dir.path, name, 'seed', 'app.db'), store);
  for (let i = 0; i < rows; i++) await db.insert(notes).values({ body: `good ${i}` });
  await db.$sync.close();
  const manifest = await store.readSmall(MANIFEST_KEY);
  assert.ok(manifest, 'a manifest was published');
  return manifest.body;
}

async function assertStoreUnchanged(store: SnapshotStore, manifestBefore: Buffer) {
  const now = await store.readSmall(MANIFEST_KEY);
  assert.ok(now, 'manifest still there');
  assert.ok(now.body.equals(manifestBefore), 'manifest unchanged');
}

describe('store failures never start an empty database', () => {
  test('unreachable store: rejects STORE_UNREACHABLE, no local database created', async () => {
    const dbPath = join(fixture.dir.path, 'unreachable', 'app.db');
    const store = azureBlobStore({
      connectionString: fixture.azurite.connectionString.replace(`:${fixture.azurite.port}`, ':9'), // discard port: nothing listens
      container: 'unreachable',
      requestTimeoutMs: 2_000,
    });
    await assert.rejects(open(dbPath, store, { retry: { retries: 1, minTimeoutMs: 10 } }), isCode('STORE_UNREACHABLE'));
    assert.equal(existsSync(dbPath), false, 'no empty database was started');
  });

  test('wrong account key: rejects STORE_AUTH naming the fix; backup untouched', async () => {
    const good = azureBlobStore({ connectionString: fixture.azurite.connectionString, container: 'wrong-key', createContainer: true });
    const before = await seedBackup(good, 'wrong-key');
    const badKey = Buffer.alloc(64, 7).toString('base64');
    const bad = azureBlobStore({ connectionString: fixture.azurite.connectionString.replace(fixture.azurite.accountKey, badKey), container: 'wrong-key' });
    const dbPath = join(fixture.dir.path, 'wrong-key', 'app.db');
    await assert.rejects(open(dbPath, bad), (error: unknown) => {
      isCode('STORE_AUTH')(error);
      assert.match((error as Error).message, /key|credential|SAS/i);
      return true;
    });
    assert.equal(existsSync(dbPath), false);
    await assertStoreUnchanged(good, before);
  });

  test("restore: 'required' on an empty store rejects NO_BACKUP", async () => {
    const store = directoryStore({ dir: join(fixture.dir.path, 'required', 'store') });
    await assert.rejects(open(join(fixture.dir.path, 'required', 'app.db'), store, { restore: 'required' }), isCode('NO_BACKUP'));
  });
});

describe('corrupt snapshots are never opened: restore falls back to the newest one that verifies, loudly', () => {
  /** Two snapshots: `good 0..rows-1`, then the same plus `newer`. Returns the manifest. */
  async function twoSnapshots(store: SnapshotStore, name: string, rows: number) {
    const db = await open(join(fixture.dir.path, name, 'seed', 'app.db'), store, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } });
    for (let i = 0; i < rows; i++) await db.insert(notes).values({ body: `good ${i}` });
    await db.$sync.flush();
    await db.insert(notes).values({ body: 'newer' });
    await db.$sync.close();
    const manifest = await readManifest(store);
    assert.equal(manifest.snapshots.length, 2);
    return manifest;
  }

  /** Opens without writing anything (so the store stays as it is), capturing error logs. */
  async function openQuietly(dbPath: string, store: SnapshotStore, verify?: 'before-open') {
    const errors: string[] = [];
    const log = { info() {}, warn() {}, error: (_: object, msg: string) => void errors.push(msg), debug() {} };
    const db = await drizzle({ connection: { url: `file:${dbPath}` }, schema: { notes }, store, log, shutdown: { signals: false }, ...(verify ? { verify } : {}) });
    return { db, errors };
  }

  async function expectFallback(store: SnapshotStore, name: string, corrupt: (key: string) => Promise<void>) {
    const manifest = await twoSnapshots(store, name, 200);
    const [latest, older] = manifest.snapshots as [SnapshotEntry, SnapshotEntry];
    await corrupt(latest.key);
    const before = (await store.readSmall(MANIFEST_KEY))!.body;
    const dbPath = join(fixture.dir.path, name, 'app.db');
    const { db, errors } = await openQuietly(dbPath, store);
    const restored = db.$sync.status().restoredFrom!;
    assert.equal(restored.seq, older.seq, 'restored the older snapshot');
    assert.deepEqual(restored.skipped.map((s) => [s.seq, s.code]), [[latest.seq, 'SNAPSHOT_CORRUPT']]);
    const bodies = (await db.select().from(notes)).map((r) => r.body);
    assert.equal(bodies.length, 200, "the older snapshot's rows, not the corrupt one's");
    assert.ok(!bodies.includes('newer'), 'the newer rows are not there');
    assert.ok(errors.some((m) => /FAILED VERIFICATION/.test(m)), 'the skip is logged as an error');
    assert.ok(errors.some((m) => /RESTORED AN OLDER SNAPSHOT/.test(m)), 'the fallback is logged as an error');
    await db.$sync.close();
    await assertStoreUnchanged(store, before);

    // When no snapshot verifies, nothing is restored and nothing starts.
    await corrupt(older.key);
    const none = join(fixture.dir.path, name, 'none.db');
    await assert.rejects(openQuietly(none, store), (error: unknown) => {
      isCode('SNAPSHOT_CORRUPT')(error);
      assert.match((error as Error).message, new RegExp(`seq ${latest.seq}: SNAPSHOT_CORRUPT; seq ${older.seq}: SNAPSHOT_CORRUPT`));
      return true;
    });
    assert.equal(existsSync(none), false, 'no corrupt file was moved into place');
    await assertStoreUnchanged(store, before);
  }

  for (const [name, mutate] of [
    ['truncated', (b: Buffer) => b.subarray(0, Math.floor(b.length / 2))],
    ['bit-flipped', (b: Buffer) => {
      const copy = Buffer.from(b);
      copy[Math.floor(copy.length / 2)]! ^= 0x10;
      return copy;
    }],
  ] as const) {
    test(`${name} snapshot (directory store)`, async () => {
      const root = join(fixture.dir.path, name, 'store');
      await expectFallback(directoryStore({ dir: root }), name, async (key) => writeFile(join(root, key), mutate(await readFile(join(root, key)))));
    });
  }

  test('bit-flipped snapshot blob on Azurite', async () => {
    const store = azureBlobStore({ connectionString: fixture.azurite.connectionString, container: 'bitflip', createContainer: true });
    const tmp = join(fixture.dir.path, 'bitflip-azure', 'blob');
    await expectFallback(store, 'bitflip-azure', async (key) => {
      await store.downloadToFile(key, tmp);
      const bytes = await readFile(tmp);
      bytes[bytes.length - 100]! ^= 0x01;
      await writeFile(tmp, bytes);
      await store.uploadFile(key, tmp); // overwrite in place, same size: only the content check can catch it
    });
  });

  test('a snapshot blob missing from the store is skipped the same way', async () => {
    const root = join(fixture.dir.path, 'missing-blob', 'store');
    const store = directoryStore({ dir: root });
    const manifest = await twoSnapshots(store, 'missing-blob', 5);
    await rm(join(root, manifest.snapshots[0]!.key));
    const { db } = await openQuietly(join(fixture.dir.path, 'missing-blob', 'app.db'), store);
    assert.deepEqual(db.$sync.status().restoredFrom!.skipped.map((s) => s.code), ['NOT_FOUND']);
    assert.equal(db.$sync.status().restoredFrom!.seq, manifest.snapshots[1]!.seq);
    await db.$sync.close();
  });

  // verify: 'before-open' (the default 'background' opens it and refuses writes instead: test/sync/restore-check.test.ts).
  test("verify: 'before-open': a snapshot whose bytes match the manifest but whose database is damaged fails quick_check and is skipped", async () => {
    const root = join(fixture.dir.path, 'quickcheck', 'store');
    const store = directoryStore({ dir: root });
    await seedBackup(store, 'quickcheck', 2_000);
    // Build a damaged database file: a valid header but garbage in the table's pages.
    const rawPath = join(fixture.dir.path, 'quickcheck', 'damaged.db');
    const client = createClient({ url: `file:${rawPath}` });
    await client.execute('CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)');
    await client.execute("INSERT INTO notes (body) SELECT printf('row %d %s', value, hex(randomblob(40))) FROM generate_series(1, 3000)");
    client.close();
    const raw = await readFile(rawPath);
    for (let i = 4096 * 3; i < raw.length - 4096; i += 97) raw[i] = 0xff; // page 4 onwards: b-tree pages
    await writeFile(rawPath, raw);
    const out = join(root, 'snapshots', 'damaged.db.lz4');
    const packed = await compressFile(rawPath, out, 'lz4');
    const manifest = await readManifest(store);
    const { keyId: _keyId, ...latest } = manifest.snapshots[0]!;
    const entry = { ...latest, kind: 'full' as const, codec: 'lz4' as const, seq: manifest.seq + 1, key: 'snapshots/damaged.db.lz4', bytes: packed.rawBytes, compressedBytes: packed.compressedBytes, sha256: packed.sha256 };
    const current = (await store.readSmall(MANIFEST_KEY))!;
    await store.writeSmall(MANIFEST_KEY, encodeManifest({ ...manifest, seq: entry.seq, snapshots: [entry, ...manifest.snapshots] }), { ifMatch: current.etag });
    const dbPath = join(fixture.dir.path, 'quickcheck', 'app.db');
    const { db } = await openQuietly(dbPath, store, 'before-open');
    const [skipped] = db.$sync.status().restoredFrom!.skipped;
    assert.equal(skipped?.seq, entry.seq);
    assert.equal(skipped?.code, 'SNAPSHOT_CORRUPT');
    assert.match(skipped!.message, /quick_check|cannot be opened/);
    assert.equal((await db.select().from(notes)).length, 2_000, 'the good snapshot before it was restored');
    await db.$sync.close();
  });

  test('an unreadable manifest is an error, never "no backup"', async () => {
    const root = join(fixture.dir.path, 'bad-manifest', 'store');
    const store = directoryStore({ dir: root });
    await seedBackup(store, 'bad-manifest');
    await writeFile(join(root, MANIFEST_KEY), '{"format":1,"gen');
    const dbPath = join(fixture.dir.path, 'bad-manifest', 'app.db');
    await assert.rejects(open(dbPath, store), isCode('SNAPSHOT_CORRUPT'));
    assert.equal(existsSync(dbPath), false);
  });
});

describe('bad configuration gets CONFIG errors naming the option', () => {
  const store = () => directoryStore({ dir: join(fixture.dir.path, 'config', 'store') });
  const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
    ['not a file url (a libSQL server url goes to test/sync/remote.test.ts)', () => drizzle({ connection: { url: 'postgres://db.example.com' }, store: store(), log: false }), /connection\.url/],
    ['memory url', () => drizzle({ connection: ':memory:', store: store(), log: false }), /connection\.url/],
    ['negative debounce', () => drizzle({ connection: 'file:/tmp/x.db', store: store(), snapshot: { debounceMs: -1 }, log: false }), /snapshot\.debounceMs/],
    ['ceiling below debounce', () => drizzle({ connection: 'file:/tmp/x.db', store: store(), snapshot: { debounceMs: 10, maxIntervalMs: 5 }, log: false }), /maxIntervalMs/],
    ['bad restore mode', () => drizzle({ connection: 'file:/tmp/x.db', store: store(), restore: 'always' as never, log: false }), /restore/],
    ['bad codec', () => drizzle({ connection: 'file:/tmp/x.db', store: store(), snapshot: { codec: 'zip' as never }, log: false }), /snapshot\.codec/],
    ['azure without container', async () => azureBlobStore({ connectionString: fixture.azurite.connectionString } as never), /container/],
    ['directory without dir', async () => directoryStore({} as never), /dir/],
  ];
  for (const [name, run, pattern] of cases) {
    test(name, async () => {
      await assert.rejects(run(), (error: unknown) => {
        isCode('CONFIG')(error);
        assert.match((error as Error).message, pattern);
        return true;
      });
    });
  }
  after(() => rm('/tmp/x.db', { force: true }));
});
