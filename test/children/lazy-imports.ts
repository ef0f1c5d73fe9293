/**
 * Child for test/sync/lazy-imports.test.ts: opens a database and prints which lazily loaded modules got
 * loaded. Modes:
 *   directory [sdk]           a new database on a directory store (optionally after registering an
 *                             OpenTelemetry MeterProvider); then makes an Azure store behind a proxy
 *                             and prepares it
 *   azure CONNECTION_STRING   a restore from the Azure store (container `lazy`, seeded by the test),
 *                             then a write and a snapshot
 * `ws` comes only with @libsql/client's remote (HTTP/WebSocket) clients; the Azure SDK's packages are
 * CommonJS once loaded: both show in require.cache when they are loaded at all.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { azureBlobStore, directoryStore, drizzle } from 'drizzle-libsql-blob';

const [dir, mode, arg] = process.argv.slice(2) as [string, string, string | undefined];
const has = (name: string) => Object.keys(createRequire(import.meta.url).cache).some((path) => path.includes(`/node_modules/${name}/`));
const options = { connection: { url: `file:${join(dir, 'app.db')}` }, log: false as const, shutdown: { signals: false as const } };

if (mode === 'directory') {
  if (arg === 'sdk') {
    const { MeterProvider } = await import('@opentelemetry/sdk-metrics');
    const { metrics } = await import('@opentelemetry/api');
    metrics.setGlobalMeterProvider(new MeterProvider());
  }
  const db = await drizzle({ ...options, store: directoryStore({ dir: join(dir, 'store') }) });
  await db.run('CREATE TABLE t (x)');
  await db.$sync.close();
  const before = { otel: has('@opentelemetry/api'), azureSdk: has('@azure/storage-blob'), remoteClient: has('ws') };
  // Behind a proxy (which only the SDK honours) the SDK does everything, and prepare() loads it. No request is made.
  process.env['HTTPS_PROXY'] = 'http://127.0.0.1:9';
  const store = azureBlobStore({ connectionString: 'UseDevelopmentStorage=true', container: 'lazy' });
  const afterStore = has('@azure/storage-blob');
  store.prepare?.();
  console.log('loaded ' + JSON.stringify({ ...before, azureSdkWithStore: afterStore, azureSdkCommonJsPrepared: has('@azure/storage-blob/dist/commonjs') }));
} else {
  const db = await drizzle({ ...options, store: azureBlobStore({ connectionString: arg!, container: 'lazy' }), restore: 'if-exists' });
  const atOpen = { restored: db.$sync.status().restoredFrom !== null, rows: (await db.all<{ n: number }>('SELECT count(*) AS n FROM t'))[0]!.n, azureSdk: has('@azure/storage-blob') };
  await new Promise((resolve) => setImmediate(resolve));
  await db.run("INSERT INTO t VALUES ('c')");
  const snapshot = await db.$sync.flush(); // an incremental snapshot: chunks, index, manifest, listing
  await db.$sync.close();
  console.log('loaded ' + JSON.stringify({ ...atOpen, snapshotSeq: snapshot?.seq ?? null, azureSdkAfterSnapshot: has('@azure/storage-blob') }));
}
