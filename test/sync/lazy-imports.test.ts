/**
 * Cold start: drizzle() loads the OpenTelemetry API only when metrics can go somewhere (an SDK is
 * registered, or a meter is given); the Azure SDK only when an Azure store is made, and then its
 * CommonJS build (faster to load than its ESM one); never @libsql/client's remote clients for a local
 * file. Real child processes, so nothing else in the test runner loaded them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawnTs, waitForLine } from '../helpers/child.ts';
import { tempDir } from '../helpers/fixtures.ts';

interface Loaded {
  otel: boolean;
  azureSdk: boolean;
  remoteClient: boolean;
  azureSdkCommonJs: boolean;
}

async function loadedBy(withSdk: 'sdk' | 'none'): Promise<Loaded> {
  const dir = await tempDir('lazy-imports');
  try {
    const child = spawnTs('test/children/lazy-imports.ts', [dir.path, withSdk]);
    const line = await waitForLine(child, 'loaded ');
    await once(child, 'exit');
    return JSON.parse(line.slice('loaded '.length)) as Loaded;
  } finally {
    await dir.cleanup();
  }
}

test('OpenTelemetry API: not loaded without an SDK, loaded (and used) when the app registered one', async () => {
  assert.equal((await loadedBy('none')).otel, false);
  assert.equal((await loadedBy('sdk')).otel, true);
});

test('a local database on a directory store loads neither the Azure SDK nor the remote libSQL clients; an Azure store loads the SDK\'s CommonJS build', async () => {
  assert.deepEqual(await loadedBy('none'), { otel: false, azureSdk: false, remoteClient: false, azureSdkCommonJs: true });
});
