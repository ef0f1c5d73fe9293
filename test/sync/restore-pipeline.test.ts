/**
 * Issue 13: the restore pipeline. A persistent pool of file workers (started once, reused, replaced
 * when lost, never keeping the process alive), chunked restores fanned out over several workers, and
 * the critical path split: `check: 'none'` / `fsync: false` return once every chunk verified and was
 * written, `checkDatabase` and `syncFile` run the rest later. Real Azurite, real libSQL files, a real
 * child process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, open as openFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BlobServiceClient } from '@azure/storage-blob';
import { createClient } from '@libsql/client';
import { azureBlobStore, type ObjectStore } from 'drizzle-libsql-blob';
import { DECODE_WORKERS, checkDatabase, downloadSnapshot, restoreFanOut, syncFile } from '../../src/sync/restore.ts';
import { POOL_SIZE, idleWorkers, libsqlWarmWorkers, readyWorkers, runInWorker, stopIdleWorkers, warmWorkers, workerStarts, workersReady } from '../../src/sync/run-in-worker.ts';
import { compressFile } from '../../src/sync/codec.ts';
import { chunkAddress, encodeChunk, rootHash } from '../../src/sync/chunks/chunk-codec.ts';
import { chunkKey, encodeChunkIndex } from '../../src/sync/chunks/chunk-index.ts';
import type { SnapshotEntry } from '../../src/sync/manifest.ts';
import { isCode } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const fixture = useAzuriteAndTempDir('restore-pipeline');
const CHUNK_SIZE = 65_536;

async function freshStore(): Promise<ObjectStore> {
  const container = `pipe-${randomBytes(4).toString('hex')}`;
  await BlobServiceClient.fromConnectionString(fixture.azurite.connectionString).createContainer(container);
  return azureBlobStore({ connectionString: fixture.azurite.connectionString, container, prefix: 'app' });
}

/** A database of ~1.5 MB (a table whose root is an interior b-tree page); returns its path. */
async function makeDatabase(name: string): Promise<string> {
  const path = join(fixture.dir.path, name);
  await mkdir(fixture.dir.path, { recursive: true });
  const client = createClient({ url: pathToFileURL(path).href });
  try {
    await client.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
    await client.execute(`INSERT INTO t (body) SELECT 'row ' || value || ' ' || hex(randomblob(200)) FROM generate_series(1, 3000)`);
  } finally {
    client.close();
  }
  return path;
}

/** Points table t's root (an interior page) at a page past the end of the file: the chunks hash fine, quick_check fails. */
async function corruptInteriorPage(path: string): Promise<void> {
  const client = createClient({ url: pathToFileURL(path).href });
  let root: number;
  let pageSize: number;
  try {
    root = Number((await client.execute(`SELECT rootpage FROM sqlite_schema WHERE name = 't'`)).rows[0]![0]);
    pageSize = Number((await client.execute('PRAGMA page_size')).rows[0]![0]);
  } finally {
    client.close();
  }
  const file = await openFile(path, 'r+');
  try {
    const header = Buffer.alloc(12);
    await file.read(header, 0, 12, (root - 1) * pageSize);
    assert.equal(header[0], 0x05, 'the root of t is an interior table page');
    header.writeUInt32BE(0x7fff_ffff, 8); // the right-most child pointer
    await file.write(header, 0, 12, (root - 1) * pageSize);
  } finally {
    await file.close();
  }
}

/** Uploads a local file as a chunked snapshot (as the snapshotter stores one) and returns its manifest entry. */
async function uploadChunked(store: ObjectStore, path: string): Promise<SnapshotEntry & { chunks: string[] }> {
  const bytes = await readFile(path);
  const chunks: string[] = [];
  const stored: number[] = [];
  let compressedBytes = 0;
  for (let offset = 0; offset < bytes.length; offset += CHUNK_SIZE) {
    const plain = bytes.subarray(offset, offset + CHUNK_SIZE);
    const address = chunkAddress(plain, undefined);
    const encoded = encodeChunk(plain, undefined);
    if (!chunks.includes(address)) await store.uploadBuffer(chunkKey(address), encoded);
    chunks.push(address);
    stored.push(encoded.length);
    compressedBytes += encoded.length;
  }
  const index = encodeChunkIndex({ format: 1, bytes: bytes.length, pageSize: 4096, chunkSize: CHUNK_SIZE, chunks, stored });
  const key = `snapshots/test/${randomBytes(4).toString('hex')}.chunks.json`;
  await store.uploadBuffer(key, index);
  return {
    seq: 1,
    generation: 'test',
    key,
    kind: 'chunks',
    indexSha256: createHash('sha256').update(index).digest('hex'),
    codec: 'lz4',
    bytes: bytes.length,
    sha256: rootHash(bytes.length, CHUNK_SIZE, chunks),
    compressedBytes,
    createdAt: new Date().toISOString(),
    chunks,
  };
}

async function rowCount(path: string): Promise<number> {
  const client = createClient({ url: pathToFileURL(path).href });
  try {
    return Number((await client.execute('SELECT count(*) FROM t')).rows[0]![0]);
  } finally {
    client.close();
  }
}

/** Nothing installed: no database at the target, no temporary restore file left beside it. */
function assertNothingInstalled(dir: string, dbPath: string): void {
  assert.ok(!existsSync(dbPath), 'nothing was installed');
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.restore-')), [], 'no temporary file is left');
}

test('restoreFanOut: chunks in memory stay under the budget at every chunk size; at 1 MiB every pool worker decodes', () => {
  for (let chunkSize = 1 << 16; chunkSize <= 1 << 24; chunkSize *= 2) {
    for (const pool of [1, 2, 3, 4]) {
      const { workers, downloads, perWorker } = restoreFanOut(chunkSize, pool);
      assert.ok(workers >= 1 && workers <= pool && downloads >= 1 && perWorker >= 1, `${chunkSize}/${pool}`);
      // Downloading + queued in workers + one decoded chunk per worker (a stored chunk is at most a chunk + a few bytes).
      const held = (downloads + workers * perWorker + workers) * chunkSize;
      assert.ok(held <= 64 * 1024 * 1024, `${chunkSize} B chunks, pool ${pool}: ${held / 2 ** 20} MiB`);
    }
  }
  assert.deepEqual(restoreFanOut(1 << 20, 4), { workers: 4, downloads: 8, perWorker: 4 });
  assert.deepEqual(restoreFanOut(1 << 20, 2), { workers: 2, downloads: 8, perWorker: 4 });
  assert.equal(restoreFanOut(1 << 24, 4).workers, 1);
  // One decoding worker (2 cores: DECODE_WORKERS) gets the queue two would have shared.
  assert.deepEqual(restoreFanOut(4 << 20, 1), { workers: 1, downloads: 3, perWorker: 4 });
  assert.deepEqual(restoreFanOut(4 << 20, 2), { workers: 2, downloads: 3, perWorker: 1 });
});

test('the pool: two operations start one worker; a failed request does not poison the next; a lost worker is replaced', async () => {
  const good = await makeDatabase('pool-good.db');
  warmWorkers();
  const first = await checkDatabase(good); // may start one if warmWorkers' is busy elsewhere: not in this file
  const started = workerStarts();
  assert.ok(first.durationMs >= 0);
  await checkDatabase(good);
  await syncFile(good);
  assert.equal(workerStarts(), started, 'later operations reuse the running worker');

  const corrupt = await makeDatabase('pool-corrupt.db');
  await corruptInteriorPage(corrupt);
  await assert.rejects(checkDatabase(corrupt), isCode('SNAPSHOT_CORRUPT'));
  await checkDatabase(good);
  assert.equal(workerStarts(), started, 'a failed request left its worker serving');

  await stopIdleWorkers(); // as if the workers had crashed or been terminated
  await checkDatabase(good);
  assert.equal(workerStarts(), started + 1, 'one replacement started on next use');
  const after = workerStarts();
  await runInWorker({ op: 'fsync', path: good, directory: true });
  assert.equal(workerStarts(), after);
});

test('a chunked restore, twice, reuses the workers; checkDatabase runs while this thread reads the file', async () => {
  const store = await freshStore();
  const entry = await uploadChunked(store, await makeDatabase('reuse-source.db'));
  const dir = join(fixture.dir.path, 'reuse');
  await mkdir(dir, { recursive: true });
  warmWorkers(POOL_SIZE); // a small restore starts no worker of its own for its few chunks, but uses every idle one
  // Allowed every pool worker (by default a restore leaves one core to this thread: DECODE_WORKERS).
  const first = await downloadSnapshot(store, entry, join(dir, 'a.db'), { decodeWorkers: POOL_SIZE });
  assert.ok(first.decodeWorkers! >= 2, `the restore fans out: ${first.decodeWorkers} workers`);
  const started = workerStarts();
  const second = await downloadSnapshot(store, entry, join(dir, 'b.db'), { check: 'none', fsync: false, decodeWorkers: POOL_SIZE });
  assert.equal(workerStarts(), started, 'the second restore started no worker');
  assert.equal(second.decodeWorkers, first.decodeWorkers);
  assert.equal(await rowCount(join(dir, 'b.db')), 3000);
  const byDefault = await downloadSnapshot(store, entry, join(dir, 'c.db'), { check: 'none', fsync: false });
  assert.equal(byDefault.decodeWorkers, Math.min(DECODE_WORKERS, first.decodeWorkers!), `by default one core is left to this thread: ${byDefault.decodeWorkers} of ${POOL_SIZE}`);

  const client = createClient({ url: pathToFileURL(join(dir, 'b.db')).href });
  try {
    const reading = client.execute('SELECT count(*) FROM t');
    const [{ durationMs }] = await Promise.all([checkDatabase(join(dir, 'b.db')), reading]);
    assert.ok(durationMs >= 0);
    assert.equal(Number((await client.execute('SELECT count(*) FROM t')).rows[0]![0]), 3000);
  } finally {
    client.close();
  }
  await syncFile(join(dir, 'b.db'));
});

test('a corrupt chunk in a multi-worker restore: SNAPSHOT_CORRUPT, nothing installed, the pool still serves', async () => {
  const store = await freshStore();
  const entry = await uploadChunked(store, await makeDatabase('corrupt-chunk-source.db'));
  assert.ok(entry.chunks.length >= 16, `${entry.chunks.length} chunks`);
  // A chunk in the middle replaced by valid lz4 of other bytes: it decodes, but not to its address.
  const victim = entry.chunks[Math.floor(entry.chunks.length / 2)]!;
  await store.uploadBuffer(chunkKey(victim), encodeChunk(Buffer.alloc(CHUNK_SIZE, 7), undefined));
  const dir = join(fixture.dir.path, 'corrupt-chunk');
  await mkdir(dir, { recursive: true });
  warmWorkers(POOL_SIZE); // several workers decode (as the test above shows)
  for (const options of [{ decodeWorkers: POOL_SIZE }, { check: 'none', fsync: false, decodeWorkers: POOL_SIZE } as const]) {
    await assert.rejects(downloadSnapshot(store, entry, join(dir, 'app.db'), options), (error: Error) => {
      assert.ok(isCode('SNAPSHOT_CORRUPT')(error), String(error));
      assert.match(error.message, /does not match its address/);
      return true;
    });
    assertNothingInstalled(dir, join(dir, 'app.db'));
  }
  const started = workerStarts();
  await checkDatabase(await makeDatabase('corrupt-chunk-after.db'));
  assert.equal(workerStarts(), started, 'the failed restore left its workers serving');
});

test('a start-up restore verifies and writes chunks on its own thread until a worker has booted; corrupt ones fail there the same way', async () => {
  const store = await freshStore();
  const entry = await uploadChunked(store, await makeDatabase('here-source.db'));
  const dir = join(fixture.dir.path, 'here');
  await mkdir(dir, { recursive: true });
  // No worker at all: one starts now and boots (from source, through tsx: hundreds of ms) while the
  // chunks arrive in a few ms each.
  await stopIdleWorkers();
  const here = await downloadSnapshot(store, entry, join(dir, 'app.db'), { decodeHereUntilWorkersBoot: true });
  assert.ok(here.decodedHere! >= 1, `chunks decoded here: ${here.decodedHere}, in ${here.decodeWorkers} workers`);
  assert.equal(await rowCount(join(dir, 'app.db')), 3000);
  // Every chunk replaced by valid lz4 of other bytes: whichever thread decodes one, it fails its address.
  for (const address of new Set(entry.chunks)) await store.uploadBuffer(chunkKey(address), encodeChunk(Buffer.alloc(CHUNK_SIZE, 7), undefined));
  await stopIdleWorkers();
  await assert.rejects(downloadSnapshot(store, entry, join(dir, 'bad.db'), { decodeHereUntilWorkersBoot: true }), (error: Error) => {
    assert.ok(isCode('SNAPSHOT_CORRUPT')(error), String(error));
    assert.match(error.message, /does not match its address/);
    return true;
  });
  assertNothingInstalled(dir, join(dir, 'bad.db'));
});

test('a chunk missing from the store: NOT_FOUND, nothing installed, every worker released', async () => {
  const store = await freshStore();
  const entry = await uploadChunked(store, await makeDatabase('missing-chunk-source.db'));
  await store.delete(chunkKey(entry.chunks[entry.chunks.length - 2]!));
  const dir = join(fixture.dir.path, 'missing-chunk');
  await mkdir(dir, { recursive: true });
  warmWorkers(POOL_SIZE);
  await assert.rejects(downloadSnapshot(store, entry, join(dir, 'app.db'), { check: 'none', fsync: false, decodeWorkers: POOL_SIZE }), isCode('NOT_FOUND'));
  assertNothingInstalled(dir, join(dir, 'app.db'));
  assert.equal(idleWorkers(), POOL_SIZE, 'the aborted jobs let their workers go');
});

test("check: 'none' installs a snapshot whose chunks verify but whose b-tree is corrupt; checkDatabase then rejects it", async () => {
  const store = await freshStore();
  const source = await makeDatabase('btree-source.db');
  await corruptInteriorPage(source); // before chunking: every chunk's address is of the corrupt bytes
  const entry = await uploadChunked(store, source);
  const dir = join(fixture.dir.path, 'btree');
  await mkdir(dir, { recursive: true });

  await assert.rejects(downloadSnapshot(store, entry, join(dir, 'checked.db')), (error: Error) => {
    assert.ok(isCode('SNAPSHOT_CORRUPT')(error), String(error));
    assert.match(error.message, /^Restored database (failed PRAGMA quick_check|cannot be opened by SQLite)/);
    return true;
  });
  assertNothingInstalled(dir, join(dir, 'checked.db'));

  const fast = join(dir, 'fast.db');
  await downloadSnapshot(store, entry, fast, { check: 'none', fsync: false });
  assert.deepEqual(await readFile(fast), await readFile(source), 'the file is the snapshot, byte for byte');
  await assert.rejects(checkDatabase(fast), (error: Error) => {
    assert.ok(isCode('SNAPSHOT_CORRUPT')(error), String(error));
    assert.match(error.message, /^Restored database (failed PRAGMA quick_check|cannot be opened by SQLite)/);
    return true;
  });
});

test("a full snapshot: check 'none' skips quick_check, the default runs it", async () => {
  const store = await freshStore();
  const source = await makeDatabase('full-source.db');
  await corruptInteriorPage(source);
  const compressed = join(fixture.dir.path, 'full-source.db.lz4');
  const result = await compressFile(source, compressed, 'lz4');
  const key = 'snapshots/test/full.db.lz4';
  await store.uploadBuffer(key, await readFile(compressed));
  const entry: SnapshotEntry = { seq: 1, generation: 'test', key, kind: 'full', codec: 'lz4', bytes: result.rawBytes, sha256: result.sha256, compressedBytes: result.compressedBytes, createdAt: new Date().toISOString() };
  const dir = join(fixture.dir.path, 'full');
  await mkdir(dir, { recursive: true });
  await assert.rejects(downloadSnapshot(store, entry, join(dir, 'checked.db')), isCode('SNAPSHOT_CORRUPT'));
  assertNothingInstalled(dir, join(dir, 'checked.db'));
  await downloadSnapshot(store, entry, join(dir, 'fast.db'), { check: 'none', fsync: false });
  assert.deepEqual(await readFile(join(dir, 'fast.db')), await readFile(source));
  await assert.rejects(checkDatabase(join(dir, 'fast.db')), isCode('SNAPSHOT_CORRUPT'));
});

for (const [label, body] of [
  // Two operations (two workers at once), then nothing: the idle, unref'd workers must not hold the process.
  ['after two operations', (db: string) => `await Promise.all([runInWorker({ op: 'quick-check', path: ${JSON.stringify(db)} }), runInWorker({ op: 'fsync', path: ${JSON.stringify(db)}, directory: false })]);`],
  // drizzle() warms a worker that may never get a job (a start with nothing to restore, then close()).
  ['with a warmed worker that never got a job', () => `warmWorkers(1);`],
] as const) test(`a process whose pool is idle exits promptly (${label})`, async () => {
  const db = await makeDatabase(`exit-${label.length}.db`);
  const pool = pathToFileURL(fileURLToPath(new URL('../../src/sync/run-in-worker.ts', import.meta.url))).href;
  const script = `
    const { runInWorker, warmWorkers } = await import(${JSON.stringify(pool)});
    ${body(db)}
    console.log('done');
  `;
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  try {
    const [code, signal] = await exited;
    assert.equal(signal, null, `the child was killed after 20 s: it did not exit by itself (stdout: ${stdout}; stderr: ${stderr})`);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /done/);
  } finally {
    clearTimeout(timer);
  }
});

test("warm workers with the driver: each loads @libsql/client/sqlite3 before any job, readiness waits for it, and workers started later load it too", async () => {
  await stopIdleWorkers();
  warmWorkers(POOL_SIZE);
  await workersReady(POOL_SIZE, 30_000);
  assert.equal(libsqlWarmWorkers(), 0, 'not asked for: a worker loads the driver on its first job that needs it');
  warmWorkers(POOL_SIZE, { libsql: true });
  assert.equal(readyWorkers(), libsqlWarmWorkers(), 'once asked for, a worker is ready only with the driver loaded');
  await workersReady(POOL_SIZE, 30_000);
  assert.equal(libsqlWarmWorkers(), POOL_SIZE);
  await stopIdleWorkers();
  warmWorkers(1); // a later start, not asking again
  await workersReady(1, 30_000);
  assert.equal(libsqlWarmWorkers(), 1, 'a worker started after the request loads the driver at boot');
});
