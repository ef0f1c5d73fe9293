/**
 * What a snapshot leaves on the app's thread stays in small pieces (issue 13: the longest write gap
 * during a 1M-row snapshot on Azurite was 180-250 ms):
 * - the store's chunks are listed in pages of at most LIST_PAGE_SIZE blobs: the SDK parses each page's
 *   XML in one synchronous step, and one page of 600-1000 chunks stalled writes for 200-250 ms;
 * - new chunks are read back from the spool into one buffer per upload lane, reused, never one fresh
 *   1 MiB Buffer per chunk (their external memory made the app's thread run 60-90 ms major GCs).
 *
 * Real Azurite behind a real HTTP forwarder that records each LIST request; a real directoryStore
 * behind a wrapper that records each chunk body handed to it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest, createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { BlobServiceClient } from '@azure/storage-blob';
import { azureBlobStore, directoryStore, drizzle, type SnapshotStore } from 'drizzle-libsql-blob';
import { LIST_PAGE_SIZE } from '../../src/store/azure-blob-store.ts';
import { notes, open, schema } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const fixture = useAzuriteAndTempDir('snapshot-main-thread');

/** Forwards every request to `target` (host:port) and records the URL of each blob LIST request. */
async function listRecordingForwarder(targetPort: number): Promise<{ port: number; lists: URL[]; close(): Promise<void> }> {
  const lists: URL[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.searchParams.get('comp') === 'list') lists.push(url);
    const upstream = httpRequest({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { port, lists, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

test('the store lists chunks/ in pages of at most LIST_PAGE_SIZE blobs, and still returns every one', async () => {
  const { azurite } = fixture;
  const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient('listing');
  await container.create();
  const count = LIST_PAGE_SIZE * 2 + 7;
  const names = Array.from({ length: count }, (_, i) => `app/chunks/${createHash('sha256').update(String(i)).digest('hex')}`);
  for (let i = 0; i < names.length; i += 25) await Promise.all(names.slice(i, i + 25).map((name) => container.getBlockBlobClient(name).upload('x', 1)));

  const forwarder = await listRecordingForwarder(azurite.port);
  try {
    const viaForwarder = azurite.connectionString.replace(`:${azurite.port}/`, `:${forwarder.port}/`);
    assert.notEqual(viaForwarder, azurite.connectionString, 'the connection string names the emulator port');
    const store = azureBlobStore({ connectionString: viaForwarder, container: 'listing', prefix: 'app' });
    const listed = await store.list('chunks/');

    assert.deepEqual(listed.map((o) => `app/${o.key}`), [...names].sort());
    assert.ok(forwarder.lists.length >= 3, `${count} blobs take at least 3 pages (got ${forwarder.lists.length} LIST requests)`);
    for (const url of forwarder.lists) {
      const pageSize = Number(url.searchParams.get('maxresults'));
      assert.ok(pageSize > 0 && pageSize <= LIST_PAGE_SIZE, `each LIST asks for at most ${LIST_PAGE_SIZE} blobs (asked ${url.searchParams.get('maxresults')})`);
    }
  } finally {
    await forwarder.close();
  }
});

test("a snapshot's chunk uploads reuse one buffer per upload lane, each body intact until its upload settled", async () => {
  const { dir } = fixture;
  const inner = directoryStore({ dir: join(dir.path, 'lanes-store') });
  const buffers = new Set<ArrayBufferLike>();
  const damaged: string[] = [];
  let uploads = 0;
  // The real store, with a wrapper that notes each body's memory and checks it is unchanged after the
  // upload has had a turn of the event loop (a lane reusing its buffer too early would change it).
  const recording: SnapshotStore = {
    ...inner,
    location: inner.location,
    async uploadBuffer(key, body) {
      if (!key.startsWith('chunks/')) return inner.uploadBuffer(key, body); // the chunk index
      uploads++;
      buffers.add(body.buffer);
      const before = createHash('sha256').update(body).digest('hex');
      await yieldToEventLoop();
      await inner.uploadBuffer(key, body);
      if (createHash('sha256').update(body).digest('hex') !== before) damaged.push(key);
    },
  };
  const dbPath = join(dir.path, 'lanes.db');
  const db = await open(dbPath, recording, { snapshot: { mode: 'incremental', chunkSize: 65_536, debounceMs: 1e9, maxCommits: 1e9, maxIntervalMs: 1e9 } });
  await db.run(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO notes (body) SELECT hex(randomblob(400)) FROM n`);
  const info = await db.$sync.flush();
  await db.$sync.close();

  assert.ok(info?.uploaded);
  assert.ok(uploads >= 20, `the database spans many chunks (${uploads} uploaded)`);
  assert.deepEqual(damaged, [], 'no chunk body changed while its upload ran');
  assert.ok(buffers.size <= 4, `chunk bodies live in at most one buffer per upload lane (4), not one per chunk: ${buffers.size} buffers for ${uploads} chunks`);

  // What was uploaded is what the snapshot hashed: a restore verifies every chunk against its address.
  const restored = await drizzle({ connection: { url: `file:${join(dir.path, 'lanes-restored.db')}` }, schema, store: inner, log: false, shutdown: { signals: false }, restore: 'required', role: 'replica' });
  try {
    const [row] = await restored.select({ n: notes.id }).from(notes).orderBy(notes.id).limit(1).offset(2999);
    assert.equal(row?.n, 3000);
  } finally {
    await restored.$sync.close();
  }
});
