import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { azureBlobStore, directoryStore, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { notes, open } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const fixture = useAzuriteAndTempDir('restart');

/** write, close(), delete the local file, drizzle() again: every row is back, 10 times in a row. */
async function restartCycles(name: string, store: SnapshotStore) {
  const dataDir = join(fixture.dir.path, name, 'data');
  const dbPath = join(dataDir, 'app.db');
  const expected: string[] = [];
  for (let cycle = 0; cycle < 10; cycle++) {
    const db = await open(dbPath, store);
    const status = db.$sync.status();
    if (cycle > 0) assert.ok(status.restoredFrom, `cycle ${cycle}: restored from a snapshot`);
    else assert.equal(status.restoredFrom, null, 'first start: nothing to restore');
    const rows = await db.select().from(notes).orderBy(notes.id);
    assert.deepEqual(rows.map((r) => r.body), expected, `cycle ${cycle}: every earlier row is back`);
    for (let i = 0; i < 3; i++) {
      const body = `cycle ${cycle} row ${i}`;
      await db.insert(notes).values({ body });
      expected.push(body);
    }
    await db.$sync.close();
    await rm(dataDir, { recursive: true, force: true });
    assert.equal(existsSync(dbPath), false);
  }
}

describe('restart cycle', () => {
  test('directoryStore: 10 cycles lose nothing', () => restartCycles('dir', directoryStore({ dir: join(fixture.dir.path, 'dir', 'store') })));
  test('Azure Blob (Azurite): 10 cycles lose nothing', () =>
    restartCycles('azure', azureBlobStore({ connectionString: fixture.azurite.connectionString, container: 'restart-cycle', prefix: 'app', createContainer: true })));
});
