/**
 * `db.$sync` is the SyncHandle and nothing else at runtime: the controller's internal hooks (promote,
 * leaseLost, notePublishing, admitWrite, ...) are out of the app's reach.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { directoryStore } from 'drizzle-libsql-blob';
import { open, tempDir } from '../helpers/fixtures.ts';

test('db.$sync exposes only the SyncHandle methods, frozen', async (t) => {
  const dir = await tempDir('handle');
  t.after(() => dir.cleanup());
  const db = await open(join(dir.path, 'app.db'), directoryStore({ dir: join(dir.path, 'store') }));
  try {
    assert.deepEqual(Object.keys(db.$sync).sort(), ['close', 'durable', 'flush', 'off', 'on', 'once', 'status', 'verify']);
    for (const internal of ['promote', 'leaseLost', 'notePublishing', 'admitWrite', 'beforeWrite', 'committed', 'replicaUpdated', 'localPosition', 'start', 'leaseTaken']) {
      assert.equal(internal in db.$sync, false, `${internal} is not reachable from db.$sync`);
    }
    assert.ok(Object.isFrozen(db.$sync));
    const listener = () => {};
    assert.equal(db.$sync.on('snapshot', listener), db.$sync, 'on() chains on the handle itself');
    assert.equal(db.$sync.off('snapshot', listener), db.$sync);
    assert.equal(db.$sync.status().role, 'writer');
  } finally {
    await db.$sync.close();
  }
});
