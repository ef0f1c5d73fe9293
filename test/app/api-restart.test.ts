/**
 * The real server as a child process: documents created over HTTP survive SIGTERM (exit 0 after the
 * final snapshot) and a restart on an empty disk, as on a container that lost its filesystem.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadSeeds } from '../../seeds/runner.ts';
import { DOCUMENT_TYPES } from '../../schema/documents.ts';
import { killAndWait, spawnTs, waitForLine } from '../helpers/child.ts';
import { tempDir } from '../helpers/fixtures.ts';

type Doc = { id: string; type: string; name: string; content: Record<string, unknown>; version: number; createdAt: string; updatedAt: string };

let dir: Awaited<ReturnType<typeof tempDir>>;
const children = new Set<ChildProcess>();
before(async () => (dir = await tempDir('api-restart')));
after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await dir.cleanup();
});

/** Only the variables this test means: an Azure store or other settings in the caller's env must not leak in. */
function serverEnv(overrides: Record<string, string>): Record<string, string> {
  const blank = ['HOST', 'DB_ROLE', 'DATABASE_URL', 'BACKUP_DIR', 'SKIP_RESTORE', 'AZURE_STORAGE_CONNECTION_STRING', 'AZURE_STORAGE_CONTAINER_URL', 'AZURE_STORAGE_ACCOUNT_URL', 'AZURE_STORAGE_ACCOUNT_NAME', 'AZURE_STORAGE_CONTAINER', 'AZURE_STORAGE_PREFIX', 'SNAPSHOT_DEBOUNCE_MS', 'SNAPSHOT_MAX_INTERVAL_MS', 'SNAPSHOT_MAX_COMMITS', 'DURABLE_WRITES', 'DURABLE_TIMEOUT_MS'];
  return { ...Object.fromEntries(blank.map((k) => [k, ''])), PORT: '0', LOG_LEVEL: 'warn', ...overrides };
}

async function startServer(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawnTs('app/server.ts', [], env);
  children.add(child);
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const line = await waitForLine(child, 'LISTENING ', 60_000);
  return { child, url: line.slice('LISTENING '.length).trim(), output: () => output };
}

async function request(url: string, init: RequestInit & { json?: unknown } = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    ...init,
    headers: init.json === undefined ? init.headers : { 'content-type': 'application/json', ...init.headers },
    body: init.json === undefined ? init.body : JSON.stringify(init.json),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function listAll(base: string): Promise<Doc[]> {
  const items: Doc[] = [];
  for (let cursor: string | null = null, page = 0; page < 100; page++) {
    const res = await request(`${base}/api/documents?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    assert.equal(res.status, 200);
    items.push(...res.body.items);
    cursor = res.body.nextCursor;
    if (cursor === null) return items;
  }
  throw new Error('pagination did not end');
}

test('documents created over HTTP survive SIGTERM and a restart on an empty disk', { timeout: 180_000 }, async () => {
  const dataDir = join(dir.path, 'data');
  const env = serverEnv({ DATABASE_URL: `file:${join(dataDir, 'app.db')}`, BACKUP_DIR: join(dir.path, 'backups') });
  const seeds = await loadSeeds();

  const first = await startServer(env);
  const created = new Map<string, Doc>();
  for (const type of DOCUMENT_TYPES) {
    for (let i = 1; i <= 3; i++) {
      const res = await request(`${first.url}/api/documents`, { method: 'POST', json: { type, name: `restart ${type} ${i}`, content: { i, nested: { type } } } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      created.set(res.body.id, res.body);
    }
  }
  const [updatedId, deletedId] = [...created.keys()];
  const put = await request(`${first.url}/api/documents/${updatedId}`, { method: 'PUT', headers: { 'if-match': '"1"' }, json: { type: 'persona', name: 'restart updated', content: { updated: true } } });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  created.set(updatedId!, put.body);
  assert.equal((await request(`${first.url}/api/documents/${deletedId}`, { method: 'DELETE' })).status, 204);
  created.delete(deletedId!);
  const health = await request(`${first.url}/health`);
  assert.equal(health.status, 200);
  assert.ok(health.body.sync.pendingCommits > 0, 'the writes are not snapshotted yet (2 s debounce): the final snapshot must carry them');

  const exit = await killAndWait(first.child, 'SIGTERM');
  assert.deepEqual(exit, { code: 0, signal: null }, first.output());
  assert.match(first.output(), /final snapshot done/);

  await rm(dataDir, { recursive: true, force: true });
  const second = await startServer(env);
  try {
    for (const [id, doc] of created) {
      const res = await request(`${second.url}/api/documents/${id}`);
      assert.equal(res.status, 200, `${id} after restart: ${JSON.stringify(res.body)}`);
      assert.deepEqual(res.body, doc);
    }
    assert.equal((await request(`${second.url}/api/documents/${deletedId}`)).status, 404, 'the delete survived too');
    const all = await listAll(second.url);
    assert.equal(all.length, seeds.length + created.size);
    const ids = new Set(all.map((d) => d.id));
    for (const seed of seeds) assert.ok(ids.has(seed.id), `seeded ${seed.id} served`);
    const after = await request(`${second.url}/health`);
    assert.equal(after.status, 200);
    assert.equal(after.body.status, 'ok');
    assert.notEqual(after.body.sync.restoredFrom, null, 'hydrated from the store');
    // Seeds find nothing to change; drizzle's migrator still issues its CREATE TABLE IF NOT EXISTS
    // bookkeeping, which the library counts as one commit (its snapshot is unchanged, so not uploaded).
    assert.match(second.output(), /seeds unchanged/);
    assert.ok(after.body.sync.pendingCommits <= 1, `pending after restart: ${after.body.sync.pendingCommits}`);
  } finally {
    const exit2 = await killAndWait(second.child, 'SIGTERM');
    assert.deepEqual(exit2, { code: 0, signal: null }, second.output());
  }
});
