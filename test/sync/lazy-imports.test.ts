/**
 * Cold start: drizzle() loads the OpenTelemetry API only when metrics can go somewhere (an SDK is
 * registered, or a meter is given). Real child processes, so nothing else in the test runner loaded it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawnTs, waitForLine } from '../helpers/child.ts';
import { tempDir } from '../helpers/fixtures.ts';

async function loadedBy(withSdk: 'sdk' | 'none'): Promise<{ otel: boolean }> {
  const dir = await tempDir('lazy-imports');
  try {
    const child = spawnTs('test/children/lazy-imports.ts', [dir.path, withSdk]);
    const line = await waitForLine(child, 'loaded ');
    await once(child, 'exit');
    return JSON.parse(line.slice('loaded '.length)) as { otel: boolean };
  } finally {
    await dir.cleanup();
  }
}

test('OpenTelemetry API: not loaded without an SDK, loaded (and used) when the app registered one', async () => {
  assert.deepEqual(await loadedBy('none'), { otel: false });
  assert.deepEqual(await loadedBy('sdk'), { otel: true });
});
