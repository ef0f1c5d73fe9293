/**
 * Cold start: drizzle() loads the OpenTelemetry API only when metrics can go somewhere (an SDK is
 * registered, or a meter is given); never @libsql/client's remote clients for a local file; the Azure
 * SDK only for what the plain signed requests do not do (whole-file uploads, or everything behind a
 * proxy), so a start that restores from Azure and the snapshots after it wait for none of it; and then
 * its CommonJS build, faster to load than its ESM one. Real child processes, so nothing else in the test runner loaded them.
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

test('a local database on a directory store loads neither the Azure SDK nor the remote libSQL clients; making an Azure store does not load the SDK; behind a proxy, preparing it loads its CommonJS build', async () => {
  assert.deepEqual(await loaded(['directory']), { otel: false, azureSdk: false, remoteClient: false, azureSdkWithStore: false, azureSdkCommonJsPrepared: true });
});

const fixture = useAzuriteAndTempDir('lazy-imports');

test('a writer that restores from Azure, writes and snapshots (incremental) never loads the SDK: every request is a plain signed one', async () => {
  const seedDir = join(fixture.dir.path, 'seed');
  const seed = await drizzle({ connection: { url: `file:${join(seedDir, 'app.db')}` }, store: azureBlobStore({ connectionString: fixture.azurite.connectionString, container: 'lazy', createContainer: true }), log: false, shutdown: { signals: false } });
  await seed.run('CREATE TABLE t (x)');
  await seed.run("INSERT INTO t VALUES ('a'), ('b')");
  await seed.$sync.close();
  assert.deepEqual(await loaded(['azure', fixture.azurite.connectionString]), { restored: true, rows: 2, azureSdk: false, snapshotSeq: 2, azureSdkAfterSnapshot: false });
});
