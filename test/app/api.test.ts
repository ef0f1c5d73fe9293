/**
 * The reference API in-process (`buildApp` + `app.inject`) over a real library db: a temp libSQL file,
 * a temp directoryStore, the repo's migrations and seeds. Health rules are driven by real store
 * failures (a directoryStore whose uploads can be switched off) and a real second writer (conflict);
 * only the clock is injected, to jump past the ceiling without waiting minutes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { createClient } from '@libsql/client';
import { count, eq } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import { directoryStore, SyncError, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { openDatabase, type AppDatabase } from '../../app/database.ts';
import { listQuery } from '../../app/documents-query.ts';
import { buildApp } from '../../app/server.ts';
import { DOCUMENT_TYPES, documents, type Document } from '../../schema/documents.ts';
import { nextEvent, tempDir } from '../helpers/fixtures.ts';

type Dir = Awaited<ReturnType<typeof tempDir>>;
type Json = Record<string, any>;

let dir: Dir;
before(async () => (dir = await tempDir('api')));
after(() => dir.cleanup());

/** No automatic snapshots unless a test asks: commit counts and timings stay under the test's control. */
const MANUAL = { debounceMs: 600_000, maxIntervalMs: 600_000 };

async function openApp(name: string, store: SnapshotStore, snapshot: object = MANUAL) {
  // No store retries: an injected outage fails at once instead of after seconds of backoff.
  const { db, seeds } = await openDatabase({ databaseUrl: `file:${join(dir.path, name, 'app.db')}`, store, snapshot, log: false, retry: { retries: 0 } });
  return { db, seeds };
}

async function rowCount(db: AppDatabase): Promise<number> {
  const [row] = await db.select({ n: count() }).from(documents);
  return row!.n;
}

function post(app: FastifyInstance, payload: unknown) {
  return app.inject({ method: 'POST', url: '/api/documents', payload: payload as Json });
}

/** Walks every page; returns the items in the order served. */
async function listAll(app: FastifyInstance, query: string, limit: number): Promise<Document[]> {
  const items: Document[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const url: string = `/api/documents?limit=${limit}${query ? `&${query}` : ''}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const res = await app.inject(url);
    assert.equal(res.statusCode, 200, res.body);
    const body: { items: Document[]; nextCursor: string | null } = res.json();
    assert.ok(body.items.length <= limit);
    items.push(...body.items);
    cursor = body.nextCursor;
    if (cursor === null) return items;
    assert.equal(body.items.length, limit, 'only the last page may be short');
  }
  throw new Error('pagination did not end');
}

/** Resolves once at least `n` snapshots have failed (counting any that failed before the call). */
async function failures(db: AppDatabase, n: number): Promise<void> {
  if (db.$sync.status().snapshotsFailed >= n) return;
  await nextEvent(db.$sync, 'snapshot-error', () => db.$sync.status().snapshotsFailed >= n);
}

function assertNewestFirst(items: Document[]): void {
  for (let i = 1; i < items.length; i++) {
    const [a, b] = [items[i - 1]!, items[i]!];
    const [ta, tb] = [Date.parse(String(a.updatedAt)), Date.parse(String(b.updatedAt))];
    assert.ok(ta > tb || (ta === tb && a.id > b.id), `order broken between ${a.id} and ${b.id}`);
  }
}

describe('documents API', () => {
  let db: AppDatabase;
  let app: FastifyInstance;

  before(async () => {
    const opened = await openApp('crud', directoryStore({ dir: join(dir.path, 'crud-store') }));
    db = opened.db;
    assert.ok(opened.seeds?.changed, 'a fresh database is seeded');
    app = buildApp(db);
    await app.ready();
  });
  after(async () => {
    await app?.close();
    await db?.$sync.close();
  });

  /** Runs `fn` and asserts it committed nothing and changed no row count. */
  async function assertNoWrite(fn: () => Promise<void>): Promise<void> {
    const commits = db.$sync.status().commits;
    const rows = await rowCount(db);
    await fn();
    assert.equal(db.$sync.status().commits, commits, 'no commit was counted');
    assert.equal(await rowCount(db), rows, 'row count unchanged');
  }

  test('every seeded document is listed once across pages, newest first', async () => {
    const total = await rowCount(db);
    assert.ok(total >= 30, `seeds loaded (${total})`);
    const first = await app.inject('/api/documents');
    assert.equal(first.json().items.length, Math.min(50, total), 'default limit is 50');
    for (const limit of [1, 7, 200]) {
      const items = await listAll(app, '', limit);
      assert.equal(items.length, total, `limit ${limit}: every row`);
      assert.equal(new Set(items.map((d) => d.id)).size, total, `limit ${limit}: no duplicates`);
      assertNewestFirst(items);
    }
  });

  test('filters: type, namePrefix (case-sensitive range, beyond the BMP), updatedAfter/updatedBefore', async () => {
    const personas = await listAll(app, 'type=persona', 5);
    const [expected] = await db.select({ n: count() }).from(documents).where(eq(documents.type, 'persona'));
    assert.equal(personas.length, expected!.n);
    assert.ok(personas.length >= 19 && personas.every((d) => d.type === 'persona'));

    const names = ['Pfx Alpha', 'Pfx beta', 'Pfx\u{1F600} grin', 'Pfx\uFFFF max', 'Pfy after', 'pfx lower', 'Pf short'];
    for (const name of names) assert.equal((await post(app, { type: 'mood', name, content: {} })).statusCode, 201, name);
    const byPrefix = await listAll(app, `namePrefix=${encodeURIComponent('Pfx')}`, 2);
    assert.deepEqual(byPrefix.map((d) => d.name).sort(), names.filter((n) => n.startsWith('Pfx')).sort());
    // Name-prefix pages come in SQLite's BINARY (UTF-8 byte) order, so the name index serves the order too.
    const utf8Order = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
    assert.deepEqual(byPrefix.map((d) => d.name), byPrefix.map((d) => d.name).sort(utf8Order));
    // A cursor from a name-ordered page is refused for a newest-first query (and the reverse).
    const page = (await app.inject(`/api/documents?namePrefix=Pfx&limit=1`)).json();
    const misfit = await app.inject(`/api/documents?cursor=${page.nextCursor}`);
    assert.equal(misfit.statusCode, 400);
    assert.equal(misfit.json().problems[0].field, 'cursor');
    const emoji = await listAll(app, `namePrefix=${encodeURIComponent('Pfx\u{1F600}')}`, 10);
    assert.deepEqual(emoji.map((d) => d.name), ['Pfx\u{1F600} grin']);
    const typed = await listAll(app, `type=persona&namePrefix=Pfx`, 10);
    assert.equal(typed.length, 0, 'prefix and type combine');

    const a = (await post(app, { type: 'scenario', name: 'time A', content: {} })).json();
    await delay(5);
    const b = (await post(app, { type: 'scenario', name: 'time B', content: {} })).json();
    const afterA = await listAll(app, `updatedAfter=${a.updatedAt}`, 10);
    assert.deepEqual(afterA.map((d) => d.id), [b.id], 'updatedAfter is exclusive');
    const beforeB = await listAll(app, `type=scenario&updatedBefore=${b.updatedAt}`, 10);
    assert.ok(beforeB.some((d) => d.id === a.id) && !beforeB.some((d) => d.id === b.id), 'updatedBefore is exclusive');
    const window = await listAll(app, `updatedAfter=${new Date(Date.parse(a.updatedAt) - 1).toISOString()}&updatedBefore=${b.updatedAt}`, 10);
    assert.deepEqual(window.map((d) => d.id), [a.id]);
  });

  test('list filters are served by index ranges, not table scans', async () => {
    // A plain client of its own: @libsql/client leaves an EXPLAIN statement active until GC, which
    // would make the library's closing checkpoint fail with SQLITE_LOCKED (see the report on close()).
    const plain = createClient({ url: `file:${join(dir.path, 'crud', 'app.db')}` });
    try {
      for (const filters of [{ namePrefix: 'Ada' }, { type: 'persona' as const, namePrefix: 'Ada' }, { type: 'persona' as const }, { cursor: { updatedAt: Date.now(), id: 'x' } }]) {
        const query = listQuery(db, { limit: 50, ...filters }).toSQL();
        const plan = await plain.execute({ sql: `EXPLAIN QUERY PLAN ${query.sql}`, args: query.params as never });
        const detail = plan.rows.map((r) => String(r.detail)).join(' | ');
        assert.match(detail, /SEARCH documents USING INDEX/, `${JSON.stringify(filters)}: ${detail}`);
        if ('namePrefix' in filters) assert.doesNotMatch(detail, /USE TEMP B-TREE FOR ORDER BY/, `name-prefix pages need no full sort (ties on name are sorted by id): ${detail}`);
      }
    } finally {
      plain.close();
    }
  });

  test('create, get, update, delete round trip', async () => {
    const created = await post(app, { type: 'persona', name: 'Round Trip Ñame', content: { role: 'tester', n: 1 } });
    assert.equal(created.statusCode, 201, created.body);
    const doc = created.json();
    assert.match(doc.id, /^persona:round-trip-name-[0-9a-f]{8}$/);
    assert.equal(doc.version, 1);
    assert.equal(doc.createdAt, doc.updatedAt);
    assert.equal(created.headers.location, `/api/documents/${encodeURIComponent(doc.id)}`);
    assert.equal(created.headers.etag, '"1"');

    const got = await app.inject(`/api/documents/${doc.id}`);
    assert.equal(got.statusCode, 200);
    assert.deepEqual(got.json(), doc);

    const withId = await post(app, { id: 'persona:explicit-id', type: 'persona', name: 'Explicit', content: {} });
    assert.equal(withId.statusCode, 201);
    assert.equal(withId.json().id, 'persona:explicit-id');

    await delay(2);
    const put = await app.inject({ method: 'PUT', url: `/api/documents/${doc.id}`, payload: { type: 'mood', name: 'Renamed', content: { replaced: true } } });
    assert.equal(put.statusCode, 200, put.body);
    const updated = put.json();
    assert.deepEqual({ ...updated, updatedAt: undefined }, { ...doc, type: 'mood', name: 'Renamed', content: { replaced: true }, version: 2, updatedAt: undefined });
    assert.ok(Date.parse(updated.updatedAt) > Date.parse(doc.updatedAt));
    assert.equal(put.headers.etag, '"2"');
    assert.deepEqual((await app.inject(`/api/documents/${doc.id}`)).json(), updated, 'full replace persisted');

    const withMatch = await app.inject({ method: 'PUT', url: `/api/documents/${doc.id}`, headers: { 'if-match': '"2"' }, payload: { id: doc.id, type: 'mood', name: 'Renamed', content: { v: 3 } } });
    assert.equal(withMatch.statusCode, 200, withMatch.body);
    assert.equal(withMatch.json().version, 3);

    const del = await app.inject({ method: 'DELETE', url: `/api/documents/${doc.id}` });
    assert.equal(del.statusCode, 204);
    assert.equal(del.body, '');
    assert.equal((await app.inject(`/api/documents/${doc.id}`)).statusCode, 404);
  });

  test('every document type can be created', async () => {
    for (const type of DOCUMENT_TYPES) {
      const res = await post(app, { type, name: `every type ${type}`, content: { type } });
      assert.equal(res.statusCode, 201, `${type}: ${res.body}`);
      assert.equal(res.json().type, type);
      assert.ok(res.json().id.startsWith(`${type}:`));
    }
  });

  test('400 with problems naming the field, and nothing written', async () => {
    const existing = (await post(app, { type: 'template', name: 'target of bad puts', content: {} })).json();
    const cases: { name: string; method?: 'POST' | 'PUT'; payload?: unknown; headers?: Record<string, string>; field: string }[] = [
      { name: 'unknown type', payload: { type: 'villain', name: 'x', content: {} }, field: 'type' },
      { name: 'missing name', payload: { type: 'mood', content: {} }, field: 'name' },
      { name: 'name of the wrong JSON type (not coerced)', payload: { type: 'mood', name: 42, content: {} }, field: 'name' },
      { name: 'blank name', payload: { type: 'mood', name: '   ', content: {} }, field: 'name' },
      { name: 'name too long', payload: { type: 'mood', name: 'x'.repeat(201), content: {} }, field: 'name' },
      { name: 'content array', payload: { type: 'mood', name: 'x', content: [1, 2] }, field: 'content' },
      { name: 'content too large', payload: { type: 'mood', name: 'x', content: { big: 'x'.repeat(70_000) } }, field: 'content' },
      { name: 'unknown field (not stripped)', payload: { type: 'mood', name: 'x', content: {}, colour: 'red' }, field: 'colour' },
      { name: 'bad id', payload: { id: 'Not Valid!', type: 'mood', name: 'x', content: {} }, field: 'id' },
      { name: 'body not an object', payload: [], field: '(body)' },
      { name: 'PUT unknown type', method: 'PUT', payload: { type: 'villain', name: 'x', content: {} }, field: 'type' },
      { name: 'PUT changing the id', method: 'PUT', payload: { id: 'mood:other', type: 'mood', name: 'x', content: {} }, field: 'id' },
      { name: 'PUT bad If-Match', method: 'PUT', headers: { 'if-match': 'yesterday' }, payload: { type: 'mood', name: 'x', content: {} }, field: 'If-Match' },
    ];
    for (const c of cases) {
      await assertNoWrite(async () => {
        const url = c.method === 'PUT' ? `/api/documents/${existing.id}` : '/api/documents';
        const res = await app.inject({ method: c.method ?? 'POST', url, payload: c.payload as Json, headers: c.headers });
        assert.equal(res.statusCode, 400, `${c.name}: ${res.body}`);
        const body = res.json();
        assert.equal(body.error, 'VALIDATION', c.name);
        assert.equal(typeof body.message, 'string');
        assert.ok(body.problems.some((p: Json) => p.field === c.field), `${c.name}: problems ${JSON.stringify(body.problems)} name ${c.field}`);
      });
    }
    await assertNoWrite(async () => {
      const res = await app.inject({ method: 'POST', url: '/api/documents', headers: { 'content-type': 'application/json' }, payload: '{"type":' });
      assert.equal(res.statusCode, 400);
      assert.equal(res.json().error, 'VALIDATION');
    });
    assert.deepEqual((await app.inject(`/api/documents/${existing.id}`)).json(), existing, 'bad PUTs left the document alone');

    for (const [query, field] of [['limit=0', 'limit'], ['limit=201', 'limit'], ['limit=ten', 'limit'], ['limit=1.5', 'limit'], ['type=villain', 'type'], ['updatedAfter=yesterday', 'updatedAfter'], ['cursor=bogus', 'cursor'], ['typo=persona', 'typo']] as const) {
      const res = await app.inject(`/api/documents?${query}`);
      assert.equal(res.statusCode, 400, `${query}: ${res.body}`);
      assert.equal(res.json().error, 'VALIDATION');
      assert.ok(res.json().problems.some((p: Json) => p.field === field), `${query}: ${res.body}`);
    }
  });

  test('409 on a duplicate (type, name) or id; the same name in another type is fine', async () => {
    const first = await post(app, { type: 'scenario', name: 'Unique Scenario', content: {} });
    assert.equal(first.statusCode, 201);
    await assertNoWrite(async () => {
      const dup = await post(app, { type: 'scenario', name: 'Unique Scenario', content: { other: true } });
      assert.equal(dup.statusCode, 409, dup.body);
      assert.equal(dup.json().error, 'CONFLICT');
      const dupId = await post(app, { id: first.json().id, type: 'mood', name: 'another name', content: {} });
      assert.equal(dupId.statusCode, 409, dupId.body);
      assert.equal(dupId.json().error, 'CONFLICT');
    });
    const other = await post(app, { type: 'mood', name: 'Unique Scenario', content: {} });
    assert.equal(other.statusCode, 201);
    await assertNoWrite(async () => {
      const rename = await app.inject({ method: 'PUT', url: `/api/documents/${other.json().id}`, payload: { type: 'scenario', name: 'Unique Scenario', content: {} } });
      assert.equal(rename.statusCode, 409, rename.body);
      assert.equal(rename.json().error, 'CONFLICT');
    });
  });

  test('404 for a missing id, without writing', async () => {
    await assertNoWrite(async () => {
      for (const method of ['GET', 'PUT', 'DELETE'] as const) {
        const res = await app.inject({ method, url: '/api/documents/mood:does-not-exist', payload: method === 'PUT' ? { type: 'mood', name: 'x', content: {} } : undefined });
        assert.equal(res.statusCode, 404, `${method}: ${res.body}`);
        assert.equal(res.json().error, 'NOT_FOUND');
      }
      assert.equal((await app.inject('/api/nothing-here')).statusCode, 404);
    });
  });

  test('412 on a stale If-Match (PUT and DELETE), without writing', async () => {
    const doc = (await post(app, { type: 'template', name: 'Versioned', content: { v: 1 } })).json();
    const v2 = await app.inject({ method: 'PUT', url: `/api/documents/${doc.id}`, headers: { 'if-match': '"1"' }, payload: { type: 'template', name: 'Versioned', content: { v: 2 } } });
    assert.equal(v2.statusCode, 200);
    await assertNoWrite(async () => {
      const stale = await app.inject({ method: 'PUT', url: `/api/documents/${doc.id}`, headers: { 'if-match': '"1"' }, payload: { type: 'template', name: 'Versioned', content: { v: 'lost update' } } });
      assert.equal(stale.statusCode, 412, stale.body);
      assert.equal(stale.json().error, 'PRECONDITION_FAILED');
      const staleDelete = await app.inject({ method: 'DELETE', url: `/api/documents/${doc.id}`, headers: { 'if-match': '"1"' } });
      assert.equal(staleDelete.statusCode, 412);
    });
    assert.deepEqual((await app.inject(`/api/documents/${doc.id}`)).json().content, { v: 2 });
    const del = await app.inject({ method: 'DELETE', url: `/api/documents/${doc.id}`, headers: { 'if-match': '"2"' } });
    assert.equal(del.statusCode, 204);
  });

  test('health is ok, counts documents, and polling it writes nothing', async () => {
    await db.$sync.flush();
    await assertNoWrite(async () => {
      const res = await app.inject('/health');
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json();
      assert.equal(body.status, 'ok');
      assert.deepEqual(body.database, { ok: true, documents: await rowCount(db) });
      assert.equal(body.sync.pendingCommits, 0);
      assert.equal(body.sync.state, 'idle');
      assert.equal(body.sync.lastError, null);
      assert.ok(body.sync.snapshotsOk >= 1);
      assert.equal(typeof body.sync.lastSnapshotAt, 'string');
      assert.ok(body.sync.lastSnapshotAgeMs >= 0);
      assert.equal(body.sync.schema?.migrations, 1, 'the repo migrations folder holds one migration, applied at start-up');
      assert.equal(body.sync.restoredFrom, null);
    });
  });
});

/** A real directoryStore whose uploads can be switched off, as a storage outage would. */
function switchableStore(inner: SnapshotStore): SnapshotStore & { failing: boolean } {
  const store = {
    ...inner,
    failing: false,
    async uploadFile(key: string, filePath: string, metadata?: Record<string, string>) {
      if (store.failing) throw new SyncError('STORE_UNREACHABLE', 'injected outage: uploads refused', { transient: true });
      return inner.uploadFile(key, filePath, metadata);
    },
    async uploadBuffer(key: string, body: Buffer) {
      if (store.failing) throw new SyncError('STORE_UNREACHABLE', 'injected outage: uploads refused', { transient: true });
      return inner.uploadBuffer(key, body);
    },
  };
  return store;
}

describe('health rules', () => {
  const MAX_INTERVAL_MS = 60_000;

  test('degraded while snapshots fail, unhealthy past twice the ceiling (with and without a snapshot this run), ok after recovery', async () => {
    const store = switchableStore(directoryStore({ dir: join(dir.path, 'outage-store') }));
    store.failing = true;
    // Snapshots fire 10 ms after a commit; retries back off for a minute so each failure is one event.
    const { db } = await openApp('outage', store, { debounceMs: 10, maxIntervalMs: MAX_INTERVAL_MS, retryBaseMs: 60_000 });
    let skew = 0;
    const now = () => Date.now() + skew;
    const app = buildApp(db, { maxIntervalMs: MAX_INTERVAL_MS, now, startedAt: now() });
    const health = async () => {
      const res = await app.inject('/health');
      return { code: res.statusCode, body: res.json() };
    };
    try {
      // Migrations and seeds are pending and the first snapshot fails: there is no snapshot this run.
      assert.ok(db.$sync.status().pendingCommits > 0);
      await failures(db, 1);
      let h = await health();
      assert.equal(h.code, 200, JSON.stringify(h.body));
      assert.equal(h.body.status, 'degraded');
      assert.equal(h.body.sync.lastSnapshotAt, null);
      assert.equal(h.body.sync.lastError.code, 'STORE_UNREACHABLE');
      assert.ok(h.body.sync.snapshotsFailed >= 1);

      skew = 2 * MAX_INTERVAL_MS + 1_000; // measured from process start: no snapshot yet
      h = await health();
      assert.equal(h.code, 503, JSON.stringify(h.body));
      assert.equal(h.body.status, 'unhealthy');
      assert.ok(h.body.sync.pendingForMs > 2 * MAX_INTERVAL_MS);

      store.failing = false;
      await db.$sync.flush();
      h = await health();
      assert.equal(h.code, 200, JSON.stringify(h.body));
      assert.equal(h.body.status, 'ok', 'a success after the failure clears degraded');
      assert.equal(h.body.sync.pendingCommits, 0);

      // A write long after the last snapshot is not overdue: the clock starts at the commit.
      skew += 10 * MAX_INTERVAL_MS;
      store.failing = true;
      const failedSoFar = db.$sync.status().snapshotsFailed;
      assert.equal((await post(app, { type: 'mood', name: 'during outage', content: {} })).statusCode, 201);
      await failures(db, failedSoFar + 1);
      h = await health();
      assert.equal(h.code, 200, JSON.stringify(h.body));
      assert.equal(h.body.status, 'degraded');
      assert.ok(h.body.sync.lastSnapshotAgeMs > 2 * MAX_INTERVAL_MS, 'old last snapshot alone is not unhealthy');

      skew += 2 * MAX_INTERVAL_MS + 1_000;
      h = await health();
      assert.equal(h.code, 503, JSON.stringify(h.body));
      assert.equal(h.body.status, 'unhealthy');

      store.failing = false;
      await db.$sync.flush();
      h = await health();
      assert.equal(h.code, 200);
      assert.equal(h.body.status, 'ok');
    } finally {
      await app.close();
      await db.$sync.close().catch(() => undefined);
    }
  });

  test('unhealthy once another writer took over the store (state stopped); its writes are then 503', async () => {
    const storeDir = join(dir.path, 'conflict-store');
    const store = directoryStore({ dir: storeDir });
    const { db } = await openApp('conflict-a', store);
    await db.$sync.flush();
    const app = buildApp(db, { maxIntervalMs: MAX_INTERVAL_MS });
    try {
      assert.equal((await app.inject('/health')).statusCode, 200);
      // This instance's lease lapses (as in a long network partition) and another instance takes over and publishes.
      await rm(join(storeDir, 'manifest.json.lease'));
      const other = await openApp('conflict-b', store);
      await other.db.insert(documents).values({ id: 'mood:other-writer', type: 'mood', name: 'other writer', content: {}, createdAt: new Date(), updatedAt: new Date() });
      await other.db.$sync.close();

      assert.equal((await post(app, { type: 'mood', name: 'loses the race', content: {} })).statusCode, 201);
      const error = nextEvent(db.$sync, 'snapshot-error');
      await assert.rejects(db.$sync.flush(), (e: unknown) => e instanceof SyncError && e.code === 'LEASE_LOST');
      assert.equal((await error).code, 'LEASE_LOST');
      const res = await app.inject('/health');
      assert.equal(res.statusCode, 503, res.body);
      assert.equal(res.json().status, 'unhealthy');
      assert.equal(res.json().sync.state, 'stopped');
      const refused = await post(app, { type: 'mood', name: 'fenced', content: {} });
      assert.equal(refused.statusCode, 503, refused.body);
      assert.equal(refused.json().error, 'UNAVAILABLE');
    } finally {
      await app.close();
      await db.$sync.close().catch(() => undefined);
    }
  });

  test('a second instance during a deploy overlap serves reads as a replica; its writes are 503 with retry-after', async () => {
    const store = directoryStore({ dir: join(dir.path, 'overlap-store') });
    const writer = await openApp('overlap-a', store);
    await writer.db.$sync.flush();
    const { db, seeds } = await openDatabase({ databaseUrl: `file:${join(dir.path, 'overlap-b', 'app.db')}`, store, snapshot: MANUAL, log: false });
    const app = buildApp(db);
    try {
      assert.equal(seeds, null, 'a replica neither migrates nor seeds');
      assert.equal(db.$sync.status().role, 'replica');
      const list = await app.inject('/api/documents?limit=5');
      assert.equal(list.statusCode, 200, list.body);
      assert.equal(list.json().items.length, 5, "reads are served from the writer's snapshot");
      const refused = await post(app, { type: 'mood', name: 'on a replica', content: {} });
      assert.equal(refused.statusCode, 503, refused.body);
      assert.equal(refused.json().error, 'UNAVAILABLE');
      assert.match(refused.json().message, /read replica/);
      assert.equal(refused.headers['retry-after'], '5');
    } finally {
      await app.close();
      await db.$sync.close();
      await writer.db.$sync.close();
    }
  });

  test('writes during shutdown are 503; a closed database makes health unhealthy', async () => {
    const { db } = await openApp('closing', directoryStore({ dir: join(dir.path, 'closing-store') }));
    const app = buildApp(db);
    try {
      const closing = db.$sync.close();
      const refused = await post(app, { type: 'mood', name: 'too late', content: {} });
      assert.equal(refused.statusCode, 503, refused.body);
      assert.equal(refused.json().error, 'UNAVAILABLE');
      await closing;
      const res = await app.inject('/health');
      assert.equal(res.statusCode, 503, res.body);
      assert.equal(res.json().status, 'unhealthy');
      assert.equal(res.json().database.ok, false);
    } finally {
      await app.close();
    }
  });
});

describe('durable writes (DURABLE_WRITES)', () => {
  test('each write answers only once it is in the store; a store that does not answer in time gets a 503 saying the write is committed but not yet safe', async () => {
    const store = switchableStore(directoryStore({ dir: join(dir.path, 'durable-store') }));
    const { db } = await openApp('durable', store); // MANUAL: no scheduled snapshot would upload anything
    const app = buildApp(db, { durableWrites: true, durableTimeoutMs: 300 });
    try {
      const created = await post(app, { type: 'mood', name: 'durable', content: { n: 1 } });
      assert.equal(created.statusCode, 201, created.body);
      assert.equal(db.$sync.status().pendingCommits, 0, 'the 201 came before its commit was in the store');
      const id = created.json().id as string;
      const updated = await app.inject({ method: 'PUT', url: `/api/documents/${id}`, payload: { type: 'mood', name: 'durable', content: { n: 2 } } });
      assert.equal(updated.statusCode, 200, updated.body);
      assert.equal(db.$sync.status().pendingCommits, 0, 'the PUT answered before its commit was in the store');
      const other = await post(app, { type: 'mood', name: 'durable 2', content: {} });
      const removed = await app.inject({ method: 'DELETE', url: `/api/documents/${other.json().id}` });
      assert.equal(removed.statusCode, 204, removed.body);
      assert.equal(db.$sync.status().pendingCommits, 0, 'the DELETE answered before its commit was in the store');
      // Refused writes commit nothing and do not wait: 404 at once.
      assert.equal((await app.inject({ method: 'DELETE', url: '/api/documents/missing' })).statusCode, 404);

      store.failing = true;
      const started = performance.now();
      const stranded = await post(app, { type: 'mood', name: 'store down', content: {} });
      assert.ok(performance.now() - started >= 290, 'answered before durable() gave up');
      assert.equal(stranded.statusCode, 503, stranded.body);
      assert.equal(stranded.json().error, 'UNAVAILABLE');
      assert.match(stranded.json().message, /committed on this server but is not yet in the backup store/);
      assert.equal(stranded.headers['retry-after'], '5');
      const list = await listAll(app, 'type=mood&namePrefix=store%20down', 10);
      assert.equal(list.length, 1, 'the write is committed locally, as the 503 says');

      store.failing = false;
      await db.$sync.flush();
      assert.equal(db.$sync.status().pendingCommits, 0);
    } finally {
      await app.close();
      await db.$sync.close();
    }
  });
});
