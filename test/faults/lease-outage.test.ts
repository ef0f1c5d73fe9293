/**
 * Issue 11, bug 1: a network outage longer than the writer lease. Real Azurite behind the TCP proxy,
 * the shortest lease Azure allows (15 s); the proxy resets every connection until Azurite itself
 * reports the lease expired and the writer's renewal timer has failed once more (so the first publish
 * after healing comes before the timer's next renewal), while the app keeps writing locally.
 *
 *  (a) nobody else is around: after healing, flush() succeeds (the lapsed lease is re-taken with the
 *      same id), writes continue, and a wiped-disk restore holds every row.
 *  (b) another instance takes the lease during the outage and publishes: the old writer is fenced
 *      (LEASE_LOST on flush and on writes) and publishes nothing (the manifest is the other one's).
 *  (c) another instance takes the lease, publishes and releases it again: re-taking the free lease
 *      succeeds, but the publish's If-Match still fences the old writer (LEASE_LOST, nothing published).
 *
 * The three run concurrently (each on its own container and proxy), so the file takes one outage.
 */
import { once, EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { BlobServiceClient } from '@azure/storage-blob';
import { sql } from 'drizzle-orm';
import { azureBlobStore, drizzle, SyncError, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { isCode, notes, open, schema, tempDir } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const PREFIX = 'app';
const LEASE_SEC = 15;

const fixture = useAzuriteAndTempDir('lease-outage');
let serviceClient: BlobServiceClient | undefined;
const service = () => (serviceClient ??= BlobServiceClient.fromConnectionString(fixture.azurite.connectionString));
const viaProxy = (proxy: TcpProxy) => fixture.azurite.connectionString.replace(`:${fixture.azurite.port}/`, `:${proxy.port}/`);
/** The store as another instance sees it: straight to Azurite, no proxy. */
const direct = (container: string): SnapshotStore => azureBlobStore({ connectionString: fixture.azurite.connectionString, container, prefix: PREFIX });

async function newContainer(label: string): Promise<string> {
  const name = `${label}-${randomBytes(4).toString('hex')}`;
  await service().createContainer(name);
  return name;
}

/** The manifest exactly as Azurite holds it (bytes and ETag). */
async function manifestState(container: string): Promise<string> {
  const blob = service().getContainerClient(container).getBlobClient(`${PREFIX}/${MANIFEST_KEY}`);
  const props = await blob.getProperties();
  return `${props.etag} ${(await blob.downloadToBuffer()).toString('base64')}`;
}

/** Polls Azurite (not through the proxy) until the writer's lease on the manifest has expired. */
async function leaseExpired(container: string): Promise<void> {
  const blob = service().getContainerClient(container).getBlobClient(`${PREFIX}/${MANIFEST_KEY}`);
  const deadline = Date.now() + (LEASE_SEC + 10) * 1000;
  for (;;) {
    const state = (await blob.getProperties()).leaseState;
    if (state !== 'leased') return;
    assert.ok(Date.now() < deadline, `the lease did not expire within ${LEASE_SEC + 10} s`);
    await delay(250);
  }
}

/** Restores the latest snapshot into a fresh directory (a wiped disk), straight from Azurite, and returns the note bodies. */
async function restoredBodies(container: string): Promise<string[]> {
  const fresh = await tempDir('lease-outage-fresh');
  try {
    const db = await drizzle({
      connection: { url: `file:${join(fresh.path, 'app.db')}` },
      schema,
      store: direct(container),
      log: false,
      restore: 'required',
      role: 'replica',
      shutdown: { signals: false },
    });
    try {
      return (await db.select({ body: notes.body }).from(notes).orderBy(notes.id)).map((r) => r.body);
    } finally {
      await db.$sync.close();
    }
  } finally {
    await fresh.cleanup();
  }
}

const leaseLostCause = (error: unknown) => isCode('LEASE_LOST')(error instanceof SyncError ? error : (error as Error).cause);

/**
 * A writer through its own proxy: a baseline snapshot, then the proxy resets every connection while
 * the app keeps writing, until Azurite reports the lease expired; `during` runs then (another instance
 * may act), and the proxy heals.
 */
async function outage(label: string, during: (container: string) => Promise<void>) {
  const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: fixture.azurite.port });
  const container = await newContainer(label);
  const inner = azureBlobStore({ connectionString: viaProxy(proxy), container, prefix: PREFIX, requestTimeoutMs: 500 });
  const renewals = new EventEmitter();
  const store: SnapshotStore = {
    ...inner,
    renewLease: (key, id) => inner.renewLease(key, id).catch((error: unknown) => {
      renewals.emit('failed');
      throw error;
    }),
  };
  const db = await open(join(fixture.dir.path, label, 'app.db'), store, {
    lease: { durationSec: LEASE_SEC },
    snapshot: { debounceMs: 50, retryBaseMs: 200, retryMaxMs: 1_000 },
    retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 20 },
  });
  const written: string[] = [];
  const insert = async (body: string) => {
    await db.insert(notes).values({ body });
    written.push(body);
  };
  await insert('before');
  assert.ok(await db.$sync.flush(), 'baseline snapshot');

  proxy.setMode('reset');
  const expired = leaseExpired(container);
  let outageOver = false;
  void expired.finally(() => (outageOver = true)).catch(() => undefined);
  for (let i = 0; !outageOver; i++) {
    await insert(`during ${i}`); // commits never wait for the store
    await delay(200);
  }
  await expired;
  // Heal right after the renewal timer failed once more, so the next publish comes before its next tick.
  await once(renewals, 'failed');
  assert.equal(db.$sync.status().lease.state, 'held', 'an expired lease is not a lost one while nobody else took it');
  await during(container);
  proxy.setMode('pass');
  return {
    db,
    container,
    written,
    insert,
    async close() {
      await db.$sync.close().catch(() => undefined);
      await proxy.close();
    },
  };
}

describe('a network outage longer than the writer lease', { concurrency: 3 }, () => {
  test('(a) nobody else took over: flush() succeeds after healing, writes continue, every row is in the store', async () => {
    const w = await outage('alone', async () => {});
    try {
      await w.db.$sync.flush(); // at once: before the renewal timer's next tick
      for (let i = 0; i < 5; i++) await w.insert(`after ${i}`);
      assert.ok(await w.db.$sync.flush());
      const status = w.db.$sync.status();
      assert.notEqual(status.state, 'stopped');
      assert.equal(status.lease.state, 'held');
      assert.equal(status.pendingCommits, 0);
      assert.ok(w.written.length > 40, `${w.written.length} rows written`);
      assert.deepEqual(await restoredBodies(w.container), w.written, 'a wiped-disk restore holds every row');
    } finally {
      await w.close();
    }
  });

  test('(b) another instance took the lease and published during the outage: the old writer is fenced and publishes nothing', async () => {
    let theirs = '';
    const w = await outage('taken', async (container) => {
      const other = direct(container);
      const leaseId = randomUUID();
      await other.acquireLease(MANIFEST_KEY, leaseId, 60);
      const current = (await other.readSmall(MANIFEST_KEY))!;
      await other.writeSmall(MANIFEST_KEY, current.body, { ifMatch: current.etag, leaseId });
      theirs = await manifestState(container);
    });
    try {
      await assert.rejects(w.db.$sync.flush(), isCode('LEASE_LOST'));
      await assert.rejects(w.db.insert(notes).values({ body: 'after' }), leaseLostCause);
      assert.equal(w.db.$sync.status().state, 'stopped');
      assert.equal(w.db.$sync.status().lease.state, 'lost');
      assert.equal(await manifestState(w.container), theirs, 'the fenced writer published nothing');
    } finally {
      await w.close();
    }
  });

  test('(c) another instance published during the outage and released the lease: re-taking it succeeds, but If-Match still fences the old writer', async () => {
    let theirs = '';
    const w = await outage('released', async (container) => {
      const other = direct(container);
      const leaseId = randomUUID();
      await other.acquireLease(MANIFEST_KEY, leaseId, 60);
      const current = (await other.readSmall(MANIFEST_KEY))!;
      await other.writeSmall(MANIFEST_KEY, current.body, { ifMatch: current.etag, leaseId });
      await other.releaseLease(MANIFEST_KEY, leaseId);
      theirs = await manifestState(container);
    });
    try {
      await assert.rejects(w.db.$sync.flush(), isCode('LEASE_LOST'));
      await assert.rejects(w.db.insert(notes).values({ body: 'after' }), leaseLostCause);
      assert.equal(w.db.$sync.status().state, 'stopped');
      assert.equal(await manifestState(w.container), theirs, 'the fenced writer published nothing');
    } finally {
      await w.close();
    }
  });
});
