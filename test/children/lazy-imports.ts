/**
 * Child for test/sync/lazy-imports.test.ts: opens a database on a directory store (optionally after
 * registering an OpenTelemetry MeterProvider) and prints which lazily loaded modules got loaded.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { azureBlobStore, directoryStore, drizzle } from 'drizzle-libsql-blob';

const [dir, withSdk] = process.argv.slice(2) as [string, string];
if (withSdk === 'sdk') {
  const { MeterProvider } = await import('@opentelemetry/sdk-metrics');
  const { metrics } = await import('@opentelemetry/api');
  metrics.setGlobalMeterProvider(new MeterProvider());
}
const db = await drizzle({ connection: { url: `file:${join(dir, 'app.db')}` }, store: directoryStore({ dir: join(dir, 'store') }), log: false, shutdown: { signals: false } });
await db.run('CREATE TABLE t (x)');
await db.$sync.close();
const loaded = () => Object.keys(createRequire(import.meta.url).cache);
const has = (name: string) => loaded().some((path) => path.includes(`/node_modules/${name}/`));
// `ws` comes only with @libsql/client's remote (HTTP/WebSocket) clients; the Azure SDK's packages are
// CommonJS once loaded, so both show in require.cache when they are loaded at all.
const before = { otel: has('@opentelemetry/api'), azureSdk: has('@azure/storage-blob'), remoteClient: has('ws') };
azureBlobStore({ connectionString: 'UseDevelopmentStorage=true', container: 'lazy' }); // no request is made
console.log('loaded ' + JSON.stringify({ ...before, azureSdkCommonJs: has('@azure/storage-blob/dist/commonjs') }));
