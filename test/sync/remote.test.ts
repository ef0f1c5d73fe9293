/**
 * The scale-out path (src/remote.ts): a libSQL server / Turso URL goes straight to drizzle-orm/libsql.
 * A real @libsql/client HTTP client talks to a tiny libSQL endpoint on 127.0.0.1 that speaks just enough
 * Hrana-over-HTTP (the client probes `GET /v3-protobuf`, gets a 404 and falls back to JSON
 * `POST /v2/pipeline`) to answer `SELECT 1`; every request it receives is recorded.
 * A second test runs a create/insert/select round trip against a real server when LIBSQL_REMOTE_URL is set.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { directoryStore, drizzle, SyncError } from 'drizzle-libsql-blob';
import { CountingClient } from '../../src/client/counting-client.ts';
import { countingStore, tempDir } from '../helpers/fixtures.ts';

interface Received {
  method: string;
  path: string;
  body: unknown;
}

interface HranaRequest {
  type: string;
  stmt?: { sql?: string };
}

/** A libSQL HTTP endpoint that answers `SELECT 1` and nothing else, recording every request. */
async function selectOneServer(): Promise<{ url: string; received: Received[]; server: Server }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const body: unknown = text === '' ? undefined : JSON.parse(text);
      received.push({ method: req.method ?? '', path: req.url ?? '', body });
      if (req.method !== 'POST' || req.url !== '/v2/pipeline') {
        res.writeHead(404).end(); // `GET /v3-protobuf`: the client falls back to Hrana 2 over JSON
        return;
      }
      const requests = (body as { requests: HranaRequest[] }).requests;
      const results = requests.map((request) => {
        if (request.type === 'close') return { type: 'ok', response: { type: 'close' } };
        if (request.type === 'execute' && /^\s*select 1\s*;?\s*$/i.test(request.stmt?.sql ?? '')) {
          const result = { cols: [{ name: '1', decltype: null }], rows: [[{ type: 'integer', value: '1' }]], affected_row_count: 0, last_insert_rowid: null };
          return { type: 'ok', response: { type: 'execute', result } };
        }
        return { type: 'error', error: { message: `this test endpoint answers SELECT 1 only, not ${JSON.stringify(request)}`, code: 'UNSUPPORTED' } };
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ baton: null, base_url: null, results }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received, server };
}

test('a remote URL: drizzle-orm/libsql gets the plain client, the store is never touched, status says remote', async () => {
  const dir = await tempDir('remote');
  const endpoint = await selectOneServer();
  // storeFromEnv() throws CONFIG with a prefix but no account: had drizzle() built the default store, it would reject.
  const savedPrefix = process.env.AZURE_STORAGE_PREFIX;
  process.env.AZURE_STORAGE_PREFIX = 'would-throw';
  try {
    const store = countingStore(directoryStore({ dir: join(dir.path, 'store') }));
    const db = await drizzle({
      connection: { url: endpoint.url },
      store,
      log: false,
      snapshot: { debounceMs: 50 }, // an app that only switched its URL keeps its options: ignored
      shutdown: { signals: false },
    });
    const noStore = await drizzle({ connection: endpoint.url, log: false }); // no store: the default is not built either

    assert.ok(!(db.$client instanceof CountingClient), 'db.$client is the plain libsql client, not our wrapper');
    assert.equal(db.$client.protocol, 'http');
    assert.equal((db as unknown as { session: { client: unknown } }).session.client, db.$client, 'drizzle queries through that same client');

    const rows = await db.all<Record<string, unknown>>(sql`SELECT 1`);
    assert.deepEqual(rows, [{ 1: 1 }]);
    await noStore.all(sql`SELECT 1`);

    const executed = endpoint.received
      .filter((r) => r.method === 'POST' && r.path === '/v2/pipeline')
      .flatMap((r) => (r.body as { requests: HranaRequest[] }).requests)
      .filter((r) => r.type === 'execute')
      .map((r) => r.stmt?.sql);
    assert.deepEqual(executed, ['SELECT 1', 'SELECT 1'], 'the server received both queries');

    assert.deepEqual(Object.values(store.calls), Object.values(store.calls).map(() => 0), `store requests: ${JSON.stringify(store.calls)}`);
    assert.deepEqual(readdirSync(dir.path), [], 'no store folder, database file, sidecar or lock was created');

    const status = db.$sync.status();
    assert.equal(status.role, 'remote');
    assert.equal(status.state, 'idle');
    assert.deepEqual(status.lease, { state: 'none', renewedAt: null });
    assert.equal(await db.$sync.flush(), null);
    assert.equal(await db.$sync.verify(), null);
    await db.$sync.durable(); // the server acknowledged each commit durably
    await assert.rejects(db.$sync.durable({ timeoutMs: -1 }), (e: unknown) => e instanceof SyncError && e.code === 'CONFIG');

    await db.$sync.close();
    await noStore.$sync.close();
    assert.equal(db.$client.closed, true, 'close() closed the client');
    assert.equal(db.$sync.status().state, 'closed');
    await assert.rejects(db.$sync.flush(), (e: unknown) => e instanceof SyncError && e.code === 'CLOSED');
    await assert.rejects(db.$sync.durable(), (e: unknown) => e instanceof SyncError && e.code === 'CLOSED');
    await db.$sync.close(); // twice is fine
  } finally {
    if (savedPrefix === undefined) delete process.env.AZURE_STORAGE_PREFIX;
    else process.env.AZURE_STORAGE_PREFIX = savedPrefix;
    endpoint.server.close();
    await dir.cleanup();
  }
});

test('round trip against a real libSQL server (LIBSQL_REMOTE_URL)', async (t) => {
  const url = process.env.LIBSQL_REMOTE_URL;
  if (!url) {
    t.skip('LIBSQL_REMOTE_URL not set: give a libSQL server or Turso URL (and LIBSQL_REMOTE_AUTH_TOKEN if it needs one) to run the round trip');
    return;
  }
  const authToken = process.env.LIBSQL_REMOTE_AUTH_TOKEN;
  const db = await drizzle({ connection: { url, ...(authToken ? { authToken } : {}) }, log: false });
  const table = `dlb_remote_${process.pid}_${Date.now()}`;
  try {
    assert.equal(db.$sync.status().role, 'remote');
    await db.run(sql.raw(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`));
    await db.run(sql.raw(`INSERT INTO ${table} (body) VALUES ('one'), ('two')`));
    const rows = await db.all<{ id: number; body: string }>(sql.raw(`SELECT id, body FROM ${table} ORDER BY id`));
    assert.deepEqual(rows.map((r) => r.body), ['one', 'two']);
  } finally {
    await db.run(sql.raw(`DROP TABLE IF EXISTS ${table}`)).catch(() => undefined);
    await db.$sync.close();
  }
});
