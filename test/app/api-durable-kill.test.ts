/**
 * DURABLE_WRITES=true: an acknowledged write survives losing the container. The real server runs as a
 * child on a real Azurite, with the schedule pushed out of reach (10-minute debounce and ceiling), so
 * only durable() can have put a write in the store. Each cycle: start on an EMPTY disk (restore from the
 * store), check that every write acknowledged so far is there exactly as acknowledged, make one more
 * write (POST, PUT or DELETE), SIGKILL the child the moment its answer arrives, wipe the disk.
 * The dead writer's lease is broken before the next start, as its expiry would (15-60 s later) on a
 * real platform; the data is what is under test here.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { startAzurite, type Azurite } from '../helpers/azurite.ts';
import { killAndWait, spawnTs, waitForLine } from '../helpers/child.ts';
import { tempDir } from '../helpers/fixtures.ts';

const CYCLES = Number(process.env.DURABLE_KILL_CYCLES ?? 20);
const CONTAINER = 'durable-api';

let azurite: Azurite;
let dir: Awaited<ReturnType<typeof tempDir>>;
const children = new Set<ChildProcess>();
before(async () => {
  [azurite, dir] = await Promise.all([startAzurite(), tempDir('api-durable')]);
  await BlobServiceClient.fromConnectionString(azurite.connectionString).createContainer(CONTAINER);
});
after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await azurite?.stop();
  await dir?.cleanup();
});

/** Only the variables this test means (the caller's store or snapshot settings must not leak in). */
function serverEnv(durable: string): Record<string, string> {
  const blank = ['HOST', 'DB_ROLE', 'BACKUP_DIR', 'SKIP_RESTORE', 'DURABLE_TIMEOUT_MS', 'AZURE_STORAGE_CONTAINER_URL', 'AZURE_STORAGE_ACCOUNT_URL', 'AZURE_STORAGE_ACCOUNT_NAME', 'AZURE_STORAGE_PREFIX', 'SNAPSHOT_MAX_COMMITS', 'SNAPSHOT_RETAIN'];
  return {
    ...Object.fromEntries(blank.map((k) => [k, ''])),
    PORT: '0',
    LOG_LEVEL: 'warn',
    DATABASE_URL: `file:${join(dir.path, 'data', 'app.db')}`,
    AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    AZURE_STORAGE_CONTAINER: CONTAINER,
    SNAPSHOT_DEBOUNCE_MS: '600000',
    SNAPSHOT_MAX_INTERVAL_MS: '600000',
    DURABLE_WRITES: durable,
  };
}

type Doc = { id: string; version: number; name: string };

async function call(url: string, method: string, json?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { method, headers: json === undefined ? headers : { 'content-type': 'application/json', ...headers }, body: json === undefined ? undefined : JSON.stringify(json) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function listAll(base: string): Promise<Map<string, Doc>> {
  const docs = new Map<string, Doc>();
  for (let cursor: string | null = null, page = 0; page < 200; page++) {
    const res = await call(`${base}/api/documents?type=scenario&namePrefix=durable%20&limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, 'GET');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    for (const d of res.body.items as Doc[]) docs.set(d.id, { id: d.id, version: d.version, name: d.name });
    cursor = res.body.nextCursor;
    if (cursor === null) return docs;
  }
  throw new Error('pagination did not end');
}

test(`DURABLE_WRITES=true: every write acknowledged before a SIGKILL is there after a restart on a wiped disk (${CYCLES} cycles)`, { timeout: 600_000 }, async () => {
  const manifest = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(CONTAINER).getBlobClient('manifest.json'); // AZURE_STORAGE_PREFIX is blank here: no prefix
  const acknowledged = new Map<string, Doc>(); // what the clients were told, as they were told it
  const deleted = new Set<string>();
  const kinds = { POST: 0, PUT: 0, DELETE: 0 };
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    await rm(join(dir.path, 'data'), { recursive: true, force: true }); // the container's disk is gone
    // What the lease's expiry does. No manifest (404) or no lease on it (409): nothing to break, and the check below says what is missing.
    if (cycle > 0) await manifest.getBlobLeaseClient().breakLease(0).catch((e: { statusCode?: number }) => assert.ok(e.statusCode === 404 || e.statusCode === 409, String(e)));
    const child = spawnTs('app/server.ts', [], serverEnv('true'));
    children.add(child);
    const line = await waitForLine(child, 'LISTENING ', 90_000);
    const base = line.slice('LISTENING '.length).trim();

    const found = await listAll(base);
    for (const [id, doc] of acknowledged) {
      assert.deepEqual(found.get(id), doc, `cycle ${cycle}: acknowledged ${doc.name} (version ${doc.version}) is ${found.has(id) ? `at version ${found.get(id)!.version}` : 'missing'} after the restart`);
    }
    for (const id of deleted) assert.equal(found.has(id), false, `cycle ${cycle}: ${id} was deleted (204) and is back`);

    // One write, then SIGKILL the moment its answer is in: no SIGTERM, no final snapshot.
    const live = [...acknowledged.keys()];
    const kind = cycle % 4 === 1 && live.length > 0 ? 'PUT' : cycle % 4 === 3 && live.length > 1 ? 'DELETE' : 'POST';
    let res: { status: number; body: any };
    if (kind === 'POST') {
      res = await call(`${base}/api/documents`, 'POST', { type: 'scenario', name: `durable ${cycle}`, content: { cycle } });
    } else if (kind === 'PUT') {
      const id = live[cycle % live.length]!;
      res = await call(`${base}/api/documents/${id}`, 'PUT', { type: 'scenario', name: `durable ${cycle} (updated)`, content: { cycle, updated: true } }, { 'if-match': `"${acknowledged.get(id)!.version}"` });
    } else {
      res = await call(`${base}/api/documents/${live[0]!}`, 'DELETE');
    }
    child.kill('SIGKILL');
    kinds[kind]++;
    await killAndWait(child, 'SIGKILL');
    children.delete(child);
    if (kind === 'DELETE') {
      assert.equal(res.status, 204, JSON.stringify(res.body));
      acknowledged.delete(live[0]!);
      deleted.add(live[0]!);
    } else {
      assert.equal(res.status, kind === 'POST' ? 201 : 200, JSON.stringify(res.body));
      acknowledged.set(res.body.id, { id: res.body.id, version: res.body.version, name: res.body.name });
    }
  }
  assert.ok(kinds.POST > 0 && kinds.PUT > 0 && kinds.DELETE > 0, `every kind of write was acknowledged before a kill: ${JSON.stringify(kinds)}`);
});
