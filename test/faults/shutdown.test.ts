/**
 * The unhappy shutdown, on a real Azurite behind a real TCP proxy: the store stops answering
 * (blackhole: connections accepted, nothing ever comes back) while commits are pending, and the app
 * closes. README "Shutdown": close() takes the final snapshot within `shutdown.timeoutMs`; commits left
 * unsnapshotted are logged loudly and remain dirty in the local file, and the lease is kept until it
 * expires, so a restart on the same disk re-takes it and uploads them before anyone else can publish.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { asc } from 'drizzle-orm';
import { azureBlobStore, drizzle, type SyncLogger } from 'drizzle-libsql-blob';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { notes, open, readManifest, schema } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const fixture = useAzuriteAndTempDir('shutdown');
let proxy: TcpProxy | undefined;
after(() => proxy?.close());

interface Line {
  level: 'info' | 'warn' | 'error';
  fields: object;
  message: string;
}

/** A pino-like logger that keeps every line. */
function capturingLog(): SyncLogger & { lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: Line['level']) => (fields: object, message?: string) => void lines.push({ level, fields, message: message ?? '' });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

const CONTAINER = 'shutdown';
const PENDING = 5;
const TIMEOUT_MS = 1_500;

test('store blackholed at close: the deadline holds, the loss is logged, the file stays dirty, the lease is kept, and a restart uploads the commits', async () => {
  const dbPath = join(fixture.dir.path, 'app.db');
  proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: fixture.azurite.port });
  const viaProxy = fixture.azurite.connectionString.replace(`:${fixture.azurite.port}/`, `:${proxy.port}/`);
  const faulty = azureBlobStore({ connectionString: viaProxy, container: CONTAINER, prefix: 'app', createContainer: true, requestTimeoutMs: 10_000 });
  const healthy = azureBlobStore({ connectionString: fixture.azurite.connectionString, container: CONTAINER, prefix: 'app' });
  assert.equal(faulty.location, healthy.location, 'the same store, whichever way it is reached');

  const log = capturingLog();
  const db = await open(dbPath, faulty, {
    log,
    snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 },
    shutdown: { signals: false, timeoutMs: TIMEOUT_MS },
    retry: { retries: 0 },
  });
  await db.insert(notes).values({ body: 'durable' });
  const durable = await db.$sync.flush();
  assert.ok(durable?.uploaded);

  for (let i = 0; i < PENDING; i++) await db.insert(notes).values({ body: `pending ${i}` });
  assert.equal(db.$sync.status().pendingCommits, PENDING);
  proxy.setMode('blackhole');

  const started = performance.now();
  const closeError = await db.$sync.close().then(
    () => undefined,
    (error: unknown) => error,
  );
  const elapsed = performance.now() - started;
  assert.ok(elapsed < TIMEOUT_MS + 1_000, `close() took ${Math.round(elapsed)} ms with shutdown.timeoutMs ${TIMEOUT_MS}`);
  assert.ok(closeError instanceof Error, 'close() reports that the final snapshot did not make it');
  assert.equal(db.$sync.status().state, 'closed');
  assert.equal(db.$sync.status().pendingCommits, PENDING);

  const loud = log.lines.filter((l) => l.level === 'error' && l.message.includes(`CLOSED WITH ${PENDING} COMMIT(S) NOT IN THE STORE`));
  assert.equal(loud.length, 1, `the loss is logged once as an error; log:\n${log.lines.map((l) => `${l.level} ${l.message}`).join('\n')}`);
  assert.match(loud[0]!.message, new RegExp(dbPath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')), 'the message names the local file that holds them');

  const sidecar = JSON.parse(readFileSync(`${dbPath}.sync.json`, 'utf8')) as { dirty: boolean; seq: number };
  assert.equal(sidecar.dirty, true, 'the sidecar still marks the file dirty');
  assert.equal(sidecar.seq, durable.seq, 'the sidecar is still at the last snapshot that made it');

  // Read straight away through a healthy client: the lease was kept, not released.
  const manifest = await healthy.readSmall(MANIFEST_KEY);
  assert.equal(manifest?.leased, true, 'the writer lease was released although commits are missing from the store');
  assert.equal((await readManifest(healthy)).seq, durable.seq, 'nothing newer reached the store');

  // Restart on the same disk with the store healthy: it re-takes its own lease and uploads the commits.
  proxy.setMode('pass');
  const restarted = await open(dbPath, healthy, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 } });
  assert.equal(restarted.$sync.status().role, 'writer', 'the restart re-took its own lease at once');
  assert.ok(restarted.$sync.status().pendingCommits > 0, 'the restart knows the file holds commits the store has not seen');
  const uploaded = await restarted.$sync.flush();
  assert.ok(uploaded && uploaded.seq > durable.seq && uploaded.uploaded, 'the restart uploaded a newer snapshot');
  await restarted.$sync.close();

  // A wiped disk restores every row.
  const fresh = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'fresh', 'app.db')}` }, schema, store: healthy, log: false, restore: 'required', role: 'replica', shutdown: { signals: false } });
  const bodies = (await fresh.select({ body: notes.body }).from(notes).orderBy(asc(notes.id))).map((r) => r.body);
  await fresh.$sync.close();
  assert.deepEqual(bodies, ['durable', ...Array.from({ length: PENDING }, (_, i) => `pending ${i}`)]);
});
