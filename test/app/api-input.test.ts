/**
 * The reference API refuses what it cannot store faithfully, over a real library db (temp libSQL file,
 * directoryStore, the repo's migrations and seeds): bodies nested too deep (once a stack overflow and a
 * 500), and strings the database would not give back as sent (a NUL cut the text short, a lone
 * surrogate came back as U+FFFD) — in any body string or key, URL parameter, query parameter or cursor.
 * Bodies are sent as raw JSON text, so the escapes (`\u0000`, `\ud800`) really reach the server.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { count, eq } from 'drizzle-orm';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { directoryStore } from 'drizzle-libsql-blob';
import { openDatabase, type AppDatabase } from '../../app/database.ts';
import { buildApp } from '../../app/server.ts';
import { documents } from '../../schema/documents.ts';
import { JSON_DEPTH_MAX, STRING_PROBLEMS_MAX } from '../../schema/validation.ts';
import { tempDir } from '../helpers/fixtures.ts';

type Json = Record<string, any>;

/** `{"a":{"a":...1...}}`, `levels` objects deep, as text (JSON.stringify itself would overflow). */
function nestedObjects(levels: number): string {
  return '{"a":'.repeat(levels - 1) + '{"a":1}' + '}'.repeat(levels - 1);
}

function nestedArrays(levels: number): string {
  return '['.repeat(levels) + ']'.repeat(levels);
}

describe('API input the database cannot store as sent', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let db: AppDatabase;
  let app: FastifyInstance;

  before(async () => {
    dir = await tempDir('api-input');
    ({ db } = await openDatabase({
      databaseUrl: `file:${join(dir.path, 'app.db')}`,
      store: directoryStore({ dir: join(dir.path, 'store') }),
      snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 },
      log: false,
    }));
    app = buildApp(db);
    await app.ready();
  });
  after(async () => {
    await app?.close();
    await db?.$sync.close();
    await dir?.cleanup();
  });

  async function rowCount(): Promise<number> {
    const [row] = await db.select({ n: count() }).from(documents);
    return row!.n;
  }

  function send(method: 'POST' | 'PUT', url: string, rawJson: string) {
    return app.inject({ method, url, headers: { 'content-type': 'application/json' }, payload: rawJson });
  }

  /** Asserts a 400 VALIDATION naming `field`, with no row added and no commit counted. */
  async function assertRefused(label: string, request: () => Promise<LightMyRequestResponse>, field: string, message?: RegExp): Promise<Json> {
    const rows = await rowCount();
    const commits = db.$sync.status().commits;
    const res = await request();
    assert.equal(res.statusCode, 400, `${label}: ${res.body.slice(0, 500)}`);
    const body = res.json();
    assert.equal(body.error, 'VALIDATION', label);
    const problem = body.problems.find((p: Json) => p.field === field);
    assert.ok(problem, `${label}: problems ${JSON.stringify(body.problems).slice(0, 500)} name ${field}`);
    if (message) assert.match(problem.message, message, label);
    assert.equal(await rowCount(), rows, `${label}: no row written`);
    assert.equal(db.$sync.status().commits, commits, `${label}: no commit counted`);
    return body;
  }

  test('a body nested 100k levels deep is a 400 naming content, not a 500, and writes nothing', async () => {
    for (const [shape, nested] of [['objects', nestedObjects(100_000)], ['arrays', nestedArrays(100_000)]] as const) {
      const raw = `{"type":"mood","name":"deep ${shape}","content":{"x":${nested}}}`;
      assert.ok(raw.length > 190_000 && raw.length < 1024 * 1024, `under the 1 MB body limit (${raw.length})`);
      await assertRefused(`POST ${shape}`, () => send('POST', '/api/documents', raw), 'content', new RegExp(`more than ${JSON_DEPTH_MAX} levels`));
    }
    // A whole body of nothing but brackets, close to the 1 MB limit: Fastify's JSON parse copes, the schema refuses it.
    await assertRefused('top-level array', () => send('POST', '/api/documents', nestedArrays(500_000)), '(body)');
    const existing = (await send('POST', '/api/documents', '{"type":"mood","name":"deep put target","content":{}}')).json();
    await assertRefused('PUT', () => send('PUT', `/api/documents/${existing.id}`, `{"type":"mood","name":"deep put target","content":${nestedObjects(100_000)}}`), 'content');
    assert.deepEqual((await app.inject(`/api/documents/${existing.id}`)).json(), existing, 'the refused PUT left the document alone');
  });

  test(`content nested exactly ${JSON_DEPTH_MAX} levels is stored; one more is refused`, async () => {
    const atLimit = await send('POST', '/api/documents', `{"type":"mood","name":"deep at limit","content":${nestedObjects(JSON_DEPTH_MAX)}}`);
    assert.equal(atLimit.statusCode, 201, atLimit.body);
    assert.deepEqual(atLimit.json().content, JSON.parse(nestedObjects(JSON_DEPTH_MAX)));
    await assertRefused('one level more', () => send('POST', '/api/documents', `{"type":"mood","name":"deep over limit","content":${nestedObjects(JSON_DEPTH_MAX + 1)}}`), 'content');
    await assertRefused('arrays one level more', () => send('POST', '/api/documents', `{"type":"mood","name":"deep over limit","content":{"l":${nestedArrays(JSON_DEPTH_MAX)}}}`), 'content');
  });

  test('a NUL or a lone surrogate in any body string or key is a 400 naming the field, and writes nothing', async () => {
    const existing = (await send('POST', '/api/documents', '{"type":"persona","name":"string put target","content":{"v":1}}')).json();
    const cases: { label: string; raw: string; field: string; message?: RegExp }[] = [
      { label: 'NUL in name', raw: '{"type":"mood","name":"Nul\\u0000Name","content":{}}', field: 'name', message: /NUL/ },
      { label: 'NUL at the end of name', raw: '{"type":"mood","name":"Nul end\\u0000","content":{}}', field: 'name', message: /NUL/ },
      { label: 'lone high surrogate in name', raw: '{"type":"mood","name":"Lone \\ud800 high","content":{}}', field: 'name', message: /lone UTF-16 surrogate \(U\+D800\)/ },
      { label: 'lone low surrogate in name', raw: '{"type":"mood","name":"Lone \\udc00 low","content":{}}', field: 'name', message: /U\+DC00/ },
      { label: 'swapped pair in name', raw: '{"type":"mood","name":"Swapped \\ude00\\ud83d","content":{}}', field: 'name', message: /surrogate/ },
      { label: 'NUL in a content value', raw: '{"type":"mood","name":"c1","content":{"greeting":"hi\\u0000there"}}', field: 'content.greeting', message: /NUL/ },
      { label: 'lone surrogate deep in content', raw: '{"type":"mood","name":"c2","content":{"a":{"list":["ok","\\ud83d"]}}}', field: 'content.a.list[1]', message: /surrogate/ },
      { label: 'NUL in a content key', raw: '{"type":"mood","name":"c3","content":{"k\\u0000":1}}', field: 'content["k\\u0000"]', message: /^has a key that contains a NUL/ },
      { label: 'lone surrogate in a content key', raw: '{"type":"mood","name":"c4","content":{"x":{"\\udfff":true}}}', field: 'content.x["\\udfff"]', message: /^has a key that contains a lone/ },
      // The id pattern (JSON Schema, before the handler) already refuses it.
      { label: 'NUL in id', raw: '{"id":"mood:a\\u0000b","type":"mood","name":"c5","content":{}}', field: 'id' },
    ];
    for (const c of cases) {
      await assertRefused(`POST ${c.label}`, () => send('POST', '/api/documents', c.raw), c.field, c.message);
      await assertRefused(`PUT ${c.label}`, () => send('PUT', `/api/documents/${existing.id}`, c.raw), c.field, c.message);
    }
    assert.deepEqual((await app.inject(`/api/documents/${existing.id}`)).json(), existing, 'the refused PUTs left the document alone');

    const manyBad = `{"type":"mood","name":"many","content":{${Array.from({ length: 50 }, (_, i) => `"k${i}":"\\u0000"`).join(',')}}}`;
    const body = await assertRefused('50 bad strings', () => send('POST', '/api/documents', manyBad), 'content.k0');
    assert.equal(body.problems.length, STRING_PROBLEMS_MAX, 'the first few are named, not all 50');
  });

  test('a NUL or lone surrogate in a URL or query parameter is a 400, and deletes nothing', async () => {
    const doc = (await send('POST', '/api/documents', '{"type":"scenario","name":"param target","content":{}}')).json();
    const idWithNul = `${encodeURIComponent(doc.id)}%00x`;
    for (const method of ['GET', 'DELETE'] as const) {
      await assertRefused(`${method} id with NUL`, () => app.inject({ method, url: `/api/documents/${idWithNul}` }), 'id', /NUL/);
    }
    await assertRefused('PUT id with NUL', () => send('PUT', `/api/documents/${idWithNul}`, '{"type":"scenario","name":"param target","content":{}}'), 'id', /NUL/);
    assert.equal((await app.inject(`/api/documents/${encodeURIComponent(doc.id)}`)).statusCode, 200, 'the document is still there');

    await assertRefused('namePrefix with NUL', () => app.inject(`/api/documents?namePrefix=${encodeURIComponent('param\u0000')}`), 'namePrefix', /NUL/);
    const forged = Buffer.from(JSON.stringify(['n', 'param\u0000', doc.id])).toString('base64url');
    await assertRefused('cursor holding a NUL', () => app.inject(`/api/documents?namePrefix=param&cursor=${forged}`), 'cursor');
    const forgedId = Buffer.from(JSON.stringify([Date.now(), '\udc00'])).toString('base64url');
    await assertRefused('cursor holding a lone surrogate', () => app.inject(`/api/documents?cursor=${forgedId}`), 'cursor');
  });

  test('astral characters and ordinary unicode round-trip exactly, in names, content values and keys', async () => {
    const names = ['Grin \u{1F600} face', 'Ünïcödé façade', '日本語の名前', 'עברית ltr mix', 'e\u0301 combining', 'max BMP \uFFFF', 'last plane \u{10FFFF}', 'flag \u{1F1EF}\u{1F1F5} zwj \u{1F468}\u200D\u{1F469}'];
    for (const name of names) {
      const content = { [`key ${name}`]: name, nested: { list: [name, '\u{1D54F}'] } };
      const created = await send('POST', '/api/documents', JSON.stringify({ type: 'template', name, content }));
      assert.equal(created.statusCode, 201, `${name}: ${created.body}`);
      const doc = created.json();
      assert.equal(doc.name, name);
      assert.deepEqual(doc.content, content);
      const got = (await app.inject(`/api/documents/${encodeURIComponent(doc.id)}`)).json();
      assert.equal(got.name, name, 'GET returns the name as sent');
      assert.deepEqual(got.content, content, 'GET returns the content as sent');
      const stored = await db.select().from(documents).where(eq(documents.id, doc.id)).get();
      assert.equal(stored!.name, name, 'the database holds the name as sent');
      const listed = (await app.inject({ method: 'GET', url: '/api/documents', query: { namePrefix: name } })).json();
      assert.deepEqual(listed.items.map((d: Json) => d.name), [name], 'the name is found by itself as a prefix');
      const put = await send('PUT', `/api/documents/${encodeURIComponent(doc.id)}`, JSON.stringify({ type: 'template', name: `${name} v2`, content }));
      assert.equal(put.statusCode, 200, put.body);
      assert.equal(put.json().name, `${name} v2`);
    }
  });
});
