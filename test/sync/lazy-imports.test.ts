/**
 * Cold start: drizzle() loads the OpenTelemetry API only when metrics can go somewhere (an SDK is
 * registered, or a meter is given); never @libsql/client's remote clients for a local file; the Azure
 * SDK only when an operation needs it or the store is prepared (a writer's first idle moment after its
 * start), so a start that restores from Azure waits for none of it; and then its CommonJS build, faster
 * to load than its ESM one. Real child processes, so nothing else in the test runner loaded them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { azureBlobStore, drizzle } from 'drizzle-libsql-blob';
import { spawnTs, waitForLine } from '../helpers/child.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

async function loaded(args: string[]): Promise<Record<string, unknown>> {
  const dir = await tempDir('lazy-imports');
  try {
    const child = spawnTs('test/children/lazy-imports.ts', [dir.path, ...args]);
    const line = await waitForLine(child, 'loaded ');
    await once(child, 'exit');
    return JSON.parse(line.slice('loaded '.length)) as Record<string, unknown>;
  } finally {
    await dir.cleanup();
  }
}

test('OpenTelemetry API: not loaded without an SDK, loaded (and used) when the app registered one', async () => {
  assert.equal((await loaded(['directory'])).otel, false);
  assert.equal((await loaded(['directory', 'sdk'])).otel, true);
});

test('a local database on a directory store loads neither the Azure SDK nor the remote libSQL clients; making an Azure store does not load the SDK, preparing it loads its CommonJS build', async () => {
  assert.deepEqual(await loaded(['directory']), { otel: false, azureSdk: false, remoteClient: false, azureSdkWithStore: false, azureSdkCommonJsPrepared: true });
});

const fixture = useAzuriteAndTempDir('lazy-imports');

test('a writer that restores from Azure has not loaded the SDK when drizzle() resolves (every start-up request is a plain signed one); it loads at the next idle moment', async () => {
  const seedDir = join(fixture.dir.path, 'seed');
  const seed = await drizzle({ connection: { url: `file:${join(seedDir, 'app.db')}` }, store: azureBlobStore({ connectionString: fixture.azurite.connectionString, container: 'lazy', createContainer: true }), log: false, shutdown: { signals: false } });
  await seed.run('CREATE TABLE t (x)');
  await seed.run("INSERT INTO t VALUES ('a'), ('b')");
  await seed.$sync.close();
  assert.deepEqual(await loaded(['azure', fixture.azurite.connectionString]), { restored: true, rows: 2, azureSdk: false, azureSdkCommonJs: true });
});
