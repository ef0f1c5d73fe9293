import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { azureBlobStore, directoryStore, drizzle, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { isCode, nextEvent, notes, open, readManifest, schema } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const fixture = useAzuriteAndTempDir('lease');

interface StoreCase {
  name: string;
  make(label: string): SnapshotStore;
  /** Takes the lease away from its holder, as an expiry (directory) or a break (Azure) does. */
  stealLease(label: string): Promise<void>;
}

const CASES: StoreCase[] = [
  {
    name: 'directory store',
    make: (label) => directoryStore({ dir: join(fixture.dir.path, label, 'store') }),
    stealLease: (label) => rm(join(fixture.dir.path, label, 'store', `${MANIFEST_KEY}.lease`)),
  },
  {
    name: 'Azurite',
    make: (label) => azureBlobStore({ connectionString: fixture.azurite.connectionString, container: label, prefix: 'app', createContainer: true }),
    stealLease: async (label) => {
      const blob = BlobServiceClient.fromConnectionString(fixture.azurite.connectionString).getContainerClient(label).getBlobClient(`app/${MANIFEST_KEY}`);
      await blob.getBlobLeaseClient().breakLease(0);
    },
  },
];

/** Opens an instance that writes nothing at start (unlike `open`, which creates the table). */
function instance(dbPath: string, store: SnapshotStore, options: Record<string, unknown> = {}) {
  return drizzle({ connection: { url: `file:${dbPath}` }, schema, store, log: false, shutdown: { signals: false }, replica: { pollMs: 50 }, ...options });
}

for (const c of CASES) {
  describe(`single writer by lease (${c.name})`, () => {
    test('deploy overlap: the second instance serves reads as a replica, follows the writer, and takes over when it releases the lease', async () => {
      const label = `overlap-${c.name.includes('Azur') ? 'az' : 'dir'}`;
      const store = c.make(label);
      const seqs: number[] = [];
      const a = await open(join(fixture.dir.path, label, 'a.db'), store, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } });
      await a.insert(notes).values({ body: 'a1' });
      await a.$sync.flush();
      seqs.push((await readManifest(store)).seq);
      assert.equal(a.$sync.status().role, 'writer');
      assert.equal(a.$sync.status().lease.state, 'held');

      const b = await instance(join(fixture.dir.path, label, 'b.db'), store);
      assert.equal(b.$sync.status().role, 'replica');
      assert.equal(b.$sync.status().lease.state, 'none');
      assert.deepEqual((await b.select().from(notes)).map((r) => r.body), ['a1'], 'the replica was hydrated');
      await assert.rejects(b.insert(notes).values({ body: 'b?' }), (e: unknown) => isCode('READ_ONLY')((e as Error).cause ?? e));
      await assert.rejects(
        b.transaction(async (tx) => {
          await tx.select().from(notes);
          await tx.insert(notes).values({ body: 'b? in tx' });
        }),
        (e: unknown) => isCode('READ_ONLY')((e as Error).cause ?? e),
      );
      // Read transactions still work on a replica.
      assert.equal((await b.transaction(async (tx) => tx.select().from(notes))).length, 1);

      // The writer commits; the replica reopens on the new snapshot by itself.
      await a.insert(notes).values({ body: 'a2' });
      const updated = nextEvent(b.$sync, 'replica-update');
      const published = await a.$sync.flush();
      seqs.push((await readManifest(store)).seq);
      assert.equal((await updated).seq, published!.seq);
      assert.deepEqual((await b.select().from(notes)).map((r) => r.body), ['a1', 'a2']);

      // The writer shuts down cleanly: it releases the lease and the replica takes over at once.
      const promoted = nextEvent(b.$sync, 'promoted');
      const closedAt = Date.now();
      await a.$sync.close();
      await promoted;
      assert.ok(Date.now() - closedAt < 15_000, 'took over well before the lease could have expired');
      assert.equal(b.$sync.status().role, 'writer');
      assert.equal(b.$sync.status().lease.state, 'held');
      await b.insert(notes).values({ body: 'b1' });
      await b.$sync.flush();
      seqs.push((await readManifest(store)).seq);
      await b.$sync.close();
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'the manifest never went backwards');
      assert.equal(new Set(seqs).size, seqs.length);

      const fresh = await instance(join(fixture.dir.path, label, 'fresh.db'), store, { restore: 'required' });
      assert.deepEqual((await fresh.select().from(notes)).map((r) => r.body), ['a1', 'a2', 'b1'], 'no acknowledged commit lost');
      await fresh.$sync.close();
    });

    test("role 'writer' fails fast with LEASE_HELD while another instance writes; nothing is created or changed", async () => {
      const label = `writer-${c.name.includes('Azur') ? 'az' : 'dir'}`;
      const store = c.make(label);
      const a = await open(join(fixture.dir.path, label, 'a.db'), store);
      await a.insert(notes).values({ body: 'a1' });
      await a.$sync.flush();
      const before = (await store.readSmall(MANIFEST_KEY))!;
      const dbPath = join(fixture.dir.path, label, 'b.db');
      await assert.rejects(instance(dbPath, store, { role: 'writer' }), (error: unknown) => {
        isCode('LEASE_HELD')(error);
        assert.match((error as Error).message, /role: 'auto'/);
        return true;
      });
      assert.equal(existsSync(dbPath), false, 'no local database was created');
      const after = (await store.readSmall(MANIFEST_KEY))!;
      assert.ok(after.body.equals(before.body) && after.etag === before.etag, 'manifest untouched');
      await a.$sync.close();
      assert.equal((await store.readSmall(MANIFEST_KEY))!.leased, false, 'the writer released the lease');
    });

    test("role 'replica' never takes the lease, even once it is free", async () => {
      const label = `replica-${c.name.includes('Azur') ? 'az' : 'dir'}`;
      const inner = c.make(label);
      const a = await open(join(fixture.dir.path, label, 'a.db'), inner);
      await a.insert(notes).values({ body: 'a1' });
      await a.$sync.flush();

      // The replica's manifest reads (one per poll), observable so the test waits on polls, not on time.
      let manifestReads = 0;
      let waiter: { target: number; resolve: () => void } | undefined;
      const store: SnapshotStore = {
        ...inner,
        readSmall: async (key) => {
          const object = await inner.readSmall(key);
          if (key === MANIFEST_KEY) {
            manifestReads++;
            if (waiter && manifestReads >= waiter.target) waiter.resolve();
          }
          return object;
        },
      };
      const polls = (n: number) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`the replica made ${manifestReads} manifest reads, waited for ${n}`)), 10_000);
          waiter = { target: manifestReads + n, resolve: () => (clearTimeout(timer), resolve()) };
        });

      const r = await instance(join(fixture.dir.path, label, 'r.db'), store, { role: 'replica' });
      let promoted = 0;
      r.$sync.on('promoted', () => {
        promoted++;
        waiter?.resolve(); // a promoted instance stops polling: report the promotion, not a timeout
      });
      await a.$sync.close();
      assert.equal((await inner.readSmall(MANIFEST_KEY))!.leased, false, 'the writer released the lease');

      await polls(6); // six polls (pollMs 50) after the lease became free: an 'auto' replica takes it on the first
      assert.equal(promoted, 0, "a role 'replica' instance was promoted");
      assert.equal(r.$sync.status().role, 'replica');
      assert.equal(r.$sync.status().lease.state, 'none');
      assert.equal((await inner.readSmall(MANIFEST_KEY))!.leased, false, 'the manifest blob is leased: the replica took the lease');
      await assert.rejects(r.insert(notes).values({ body: 'r?' }), (e: unknown) => isCode('READ_ONLY')((e as Error).cause ?? e));
      await r.$sync.close();
      assert.equal(r.$sync.status().role, 'closed');
    });

    test('fencing: a writer whose lease was taken is refused by the store, stops, reports it and refuses writes', async () => {
      const label = `fence-${c.name.includes('Azur') ? 'az' : 'dir'}`;
      const store = c.make(label);
      const manual = { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } };
      const a = await open(join(fixture.dir.path, label, 'a.db'), store, manual);
      await a.insert(notes).values({ body: 'a1' });
      await a.$sync.flush();

      // A's lease lapses (or is broken) and a new writer takes over and publishes.
      await c.stealLease(label);
      const b = await instance(join(fixture.dir.path, label, 'b.db'), store, { role: 'writer', ...manual });
      await b.insert(notes).values({ body: 'b1' });
      await b.$sync.flush();
      const manifestByB = (await store.readSmall(MANIFEST_KEY))!.body;
      const blobsByB = (await store.list('snapshots/')).map((o) => o.key).sort();

      // A still believes it writes; its next publish is refused by the store itself.
      await a.insert(notes).values({ body: 'a2 (never acknowledged)' });
      const lost = nextEvent(a.$sync, 'lease-lost');
      await assert.rejects(a.$sync.flush(), isCode('LEASE_LOST'));
      assert.equal((await lost).code, 'LEASE_LOST');
      const status = a.$sync.status();
      assert.equal(status.state, 'stopped');
      assert.equal(status.lease.state, 'lost');
      assert.equal(status.lastError?.code, 'LEASE_LOST');
      await assert.rejects(a.insert(notes).values({ body: 'a3' }), (e: unknown) => isCode('LEASE_LOST')((e as Error).cause ?? e));
      assert.ok((await store.readSmall(MANIFEST_KEY))!.body.equals(manifestByB), "B's manifest untouched");
      assert.deepEqual((await store.list('snapshots/')).map((o) => o.key).sort(), blobsByB, "A's refused blob was removed");
      await assert.rejects(a.$sync.close(), isCode('LEASE_LOST'));
      await b.$sync.close();

      const fresh = await instance(join(fixture.dir.path, label, 'fresh.db'), store, { restore: 'required' });
      assert.deepEqual((await fresh.select().from(notes)).map((r) => r.body), ['a1', 'b1']);
      await fresh.$sync.close();
    });
  });
}

test('a writer notices a lost lease on its own renewal, before any publish', async () => {
  const label = 'renewal';
  const store = directoryStore({ dir: join(fixture.dir.path, label, 'store') });
  const a = await open(join(fixture.dir.path, label, 'a.db'), store, { lease: { durationSec: 15 } });
  await a.$sync.flush();
  const lost = nextEvent(a.$sync, 'lease-lost', () => true, 20_000);
  await rm(join(fixture.dir.path, label, 'store', `${MANIFEST_KEY}.lease`));
  const b = await instance(join(fixture.dir.path, label, 'b.db'), store, { role: 'writer' });
  const error = await lost; // renewals run every durationSec / 3 = 5 s
  assert.equal(error.code, 'LEASE_LOST');
  assert.equal(a.$sync.status().state, 'stopped');
  await assert.rejects(a.insert(notes).values({ body: 'x' }), (e: unknown) => isCode('LEASE_LOST')((e as Error).cause ?? e));
  await a.$sync.close().catch(() => undefined);
  await b.$sync.close();
});
