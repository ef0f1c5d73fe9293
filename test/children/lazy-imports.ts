/**
 * Child for test/sync/lazy-imports.test.ts: opens a database on a directory store (optionally after
 * registering an OpenTelemetry MeterProvider) and prints which lazily loaded modules got loaded.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { directoryStore, drizzle } from 'drizzle-libsql-blob';

const [dir, withSdk] = process.argv.slice(2) as [string, string];
if (withSdk === 'sdk') {
  const { MeterProvider } = await import('@opentelemetry/sdk-metrics');
  const { metrics } = await import('@opentelemetry/api');
  metrics.setGlobalMeterProvider(new MeterProvider());
}
const db = await drizzle({ connection: { url: `file:${join(dir, 'app.db')}` }, store: directoryStore({ dir: join(dir, 'store') }), log: false, shutdown: { signals: false } });
await db.run('CREATE TABLE t (x)');
await db.$sync.close();
const loaded = Object.keys(createRequire(import.meta.url).cache);
const has = (name: string) => loaded.some((path) => path.includes(`/node_modules/${name}/`));
console.log('loaded ' + JSON.stringify({ otel: has('@opentelemetry/api') }));
