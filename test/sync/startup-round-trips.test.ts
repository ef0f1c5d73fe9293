/**
 * Start-up's round trips before the first chunk (issue 13, cold start): the probe and the first
 * manifest read go out together; an empty disk reads the latest snapshot's chunk index beside the
 * lease; a lease granted on the very manifest read (same ETag) needs no second read. And the safety
 * that second read exists for: a writer that published between our read and our lease is not missed.
 * Each on a real Azurite and on the directory store, through a pass-through store that logs each call
 * as it starts ('>') and as it settles ('<').
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { asc } from 'drizzle-orm';
import { azureBlobStore, directoryStore, type SmallObject, type SnapshotStore } from 'drizzle-libsql-blob';
import { headIsCurrent } from '../../src/sync/startup.ts';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { notes, open, readManifest } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const fixture = useAzuriteAndTempDir('startup-round-trips');

const CASES = [
  { name: 'directory store', make: (label: string): SnapshotStore => directoryStore({ dir: join(fixture.dir.path, label, 'store') }) },
  { name: 'Azurite', make: (label: string): SnapshotStore => azureBlobStore({ connectionString: fixture.azurite.connectionString, container: label, prefix: 'app', createContainer: true }) },
];

const QUIET = { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000, mode: 'incremental', chunkSize: 1 << 16 } } as const;

/**
 * Forwards every call to `inner`, logging `>name` when it starts and `<name` when it settles (manifest
 * reads are 'manifest', other small reads 'index'). `afterFirstManifestRead` runs before the first
 * manifest read's result is handed back: what another instance does between that read and our lease.
 */
function loggingStore(inner: SnapshotStore, afterFirstManifestRead?: () => Promise<void>): SnapshotStore & { log: string[] } {
  const log: string[] = [];
  let manifestReads = 0;
  const logged = async <T>(name: string, call: () => Promise<T>): Promise<T> => {
    log.push(`>${name}`);
    try {
      return await call();
    } finally {
      log.push(`<${name}`);
    }
  };
  return {
    log,
    location: inner.location,
    ...(inner.timeResolutionMs === undefined ? {} : { timeResolutionMs: inner.timeResolutionMs }),
    probe: () => logged('probe', () => inner.probe()),
    readSmall: (key) =>
      logged(key === MANIFEST_KEY ? 'manifest' : 'index', async (): Promise<SmallObject | null> => {
        const object = await inner.readSmall(key);
        if (key === MANIFEST_KEY && ++manifestReads === 1) await afterFirstManifestRead?.();
        return object;
      }),
    writeSmall: (key, body, condition) => inner.writeSmall(key, body, condition),
    uploadBuffer: (key, body) => inner.uploadBuffer(key, body),
    uploadFile: (key, path, metadata, options) => inner.uploadFile(key, path, metadata, options),
    download: (key) => inner.download(key),
    downloadToFile: (key, path) => inner.downloadToFile(key, path),
    delete: (key, condition) => inner.delete(key, condition),
    list: (prefix) => inner.list(prefix),
    acquireLease: (key, id, sec) => logged('lease', () => inner.acquireLease(key, id, sec)),
    renewLease: (key, id) => inner.renewLease(key, id),
    releaseLease: (key, id) => inner.releaseLease(key, id),
  };
}

const bodies = async (db: Awaited<ReturnType<typeof open>>) => (await db.select().from(notes).orderBy(asc(notes.id))).map((r) => r.body);

test('headIsCurrent: only a grant that reports the very ETag read makes the read current', () => {
  const head = { etag: '"e1"', manifest: {} as never };
  const table: Array<[Parameters<typeof headIsCurrent>[0], { etag?: string }, boolean]> = [
    [head, { etag: '"e1"' }, true],
    [head, { etag: '"e2"' }, false], // written between the read and the grant
    [head, {}, false], // a store that does not report it
    [null, { etag: '"e1"' }, false], // there was no manifest: the lease created one
    [undefined, { etag: '"e1"' }, false], // not read (restore: 'skip')
  ];
  for (const [h, grant, expected] of table) assert.equal(headIsCurrent(h, grant), expected, JSON.stringify({ h: h?.etag ?? h, grant }));
});

for (const c of CASES) {
  describe(`start-up round trips (${c.name})`, () => {
    const label = (what: string) => `${what}-${c.name.includes('Azur') ? 'az' : 'dir'}`;

    test('an empty disk: probe and manifest read together, the chunk index read before the lease is asked for, one manifest read', async () => {
      const store = c.make(label('fresh'));
      const a = await open(join(fixture.dir.path, label('fresh'), 'a.db'), store, QUIET);
      await a.insert(notes).values([{ body: 'one' }, { body: 'two' }]);
      assert.ok(await a.$sync.flush());
      await a.$sync.close();

      const logging = loggingStore(store);
      const b = await open(join(fixture.dir.path, label('fresh'), 'b.db'), logging, QUIET);
      try {
        assert.deepEqual(await bodies(b), ['one', 'two'], 'restored');
        assert.equal(b.$sync.status().role, 'writer');
        const at = (entry: string) => logging.log.indexOf(entry);
        assert.ok(at('>manifest') < at('<probe'), `the manifest read starts before the probe settles: ${logging.log.join(' ')}`);
        assert.ok(at('>index') !== -1 && at('>index') < at('>lease'), `the chunk index is read before the lease is asked for: ${logging.log.join(' ')}`);
        assert.equal(logging.log.filter((e) => e === '>manifest').length, 1, `one manifest read (the grant shows it is current): ${logging.log.join(' ')}`);
        assert.equal(logging.log.filter((e) => e === '>index').length, 1, 'the index read beside the lease is the one the restore used');
      } finally {
        await b.$sync.close();
      }
    });

    test('a writer that publishes and leaves between our manifest read and our lease: we restore its snapshot, not the one we read', async () => {
      const store = c.make(label('raced'));
      const dir = join(fixture.dir.path, label('raced'));
      const a = await open(join(dir, 'a.db'), store, QUIET);
      await a.insert(notes).values({ body: 'before' });
      assert.ok(await a.$sync.flush());
      const readSeq = (await readManifest(store)).seq;

      // Our first read returns the manifest of seq `readSeq`; meanwhile A commits, publishes and releases.
      const logging = loggingStore(store, async () => {
        await a.insert(notes).values({ body: 'published while we started' });
        assert.ok(await a.$sync.flush());
        await a.$sync.close();
      });
      const b = await open(join(dir, 'b.db'), logging, QUIET);
      try {
        assert.equal(b.$sync.status().role, 'writer', 'the lease was free once A left');
        assert.deepEqual(await bodies(b), ['before', 'published while we started'], "A's last commit is restored, not lost");
        const latest = (await readManifest(store)).seq;
        assert.ok(latest > readSeq, 'A published after our read');
        assert.equal(b.$sync.status().restoredFrom?.seq, latest, 'restored from the newest snapshot');
        assert.equal(logging.log.filter((e) => e === '>manifest').length, 2, `the grant showed another ETag, so the manifest was read again: ${logging.log.join(' ')}`);

        // And B goes on from there: its next snapshot keeps A's rows.
        await b.insert(notes).values({ body: 'by b' });
        assert.ok(await b.$sync.flush());
      } finally {
        await b.$sync.close();
      }
      const c2 = await open(join(dir, 'c.db'), store, QUIET);
      try {
        assert.deepEqual(await bodies(c2), ['before', 'published while we started', 'by b']);
      } finally {
        await c2.$sync.close();
      }
    });
  });
}
