/**
 * verifyLatest(store): the restore drill an app can schedule. Downloads and verifies the latest
 * snapshot into a temporary directory, removes it, never touches the live database or the store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { directoryStore } from 'drizzle-libsql-blob';
import { decodeChunkIndex, chunkKey } from '../../src/sync/chunks/chunk-index.ts';
import { verifyLatest } from '../../src/sync/restore.ts';
import { isCode, notes, open, readManifest, tempDir } from '../helpers/fixtures.ts';

for (const mode of ['incremental', 'full'] as const) {
  test(`verifyLatest (${mode}): null on an empty store, the latest's seq when it restores, SNAPSHOT_CORRUPT when it would not; never touches the live database`, async () => {
    const dir = await tempDir('verify-latest');
    try {
      const root = join(dir.path, 'store');
      const store = directoryStore({ dir: root });
      await store.probe();
      const scratch = join(dir.path, 'scratch');
      await mkdir(scratch);
      assert.equal(await verifyLatest(store, { tempDir: scratch }), null);

      await mkdir(join(dir.path, 'live'));
      const db = await open(join(dir.path, 'live', 'app.db'), store, { snapshot: { mode, chunkSize: 65_536, debounceMs: 600_000, maxIntervalMs: 600_000 } });
      await db.run(sql`INSERT INTO notes (body) SELECT hex(randomblob(200)) FROM generate_series(1, 1000)`);
      const info = await db.$sync.flush();
      const liveFiles = (await readdir(join(dir.path, 'live'))).sort();
      const storeFiles = (await readdir(root, { recursive: true })).sort();

      const verified = await verifyLatest(store, { tempDir: scratch });
      assert.equal(verified?.seq, info!.seq);
      assert.equal((await db.$sync.verify())?.seq, info!.seq, 'the drill the app schedules: db.$sync.verify()');
      assert.equal(verified?.bytes, info!.bytes);
      assert.deepEqual(await readdir(scratch), [], 'the temporary copy is removed');
      assert.deepEqual((await readdir(join(dir.path, 'live'))).sort(), liveFiles, 'nothing written beside the live database');
      assert.deepEqual((await readdir(root, { recursive: true })).sort(), storeFiles, 'nothing written to the store');

      // Damage what the latest snapshot needs: a chunk, or the full snapshot blob.
      const entry = (await readManifest(store)).snapshots[0]!;
      const victim = mode === 'incremental' ? chunkKey(decodeChunkIndex((await store.readSmall(entry.key))!.body, entry.key).chunks[1]!) : entry.key;
      await writeFile(join(root, victim), 'damaged');
      await assert.rejects(verifyLatest(store, { tempDir: scratch, retry: { retries: 0, minTimeoutMs: 1, maxTimeoutMs: 1 } }), isCode('SNAPSHOT_CORRUPT'));
      assert.deepEqual(await readdir(scratch), [], 'removed after a failure too');
      await assert.rejects(db.$sync.verify(), isCode('SNAPSHOT_CORRUPT'));
      assert.equal((await db.select().from(notes)).length, 1000, 'the live database is untouched');
      await db.$sync.close();
    } finally {
      await dir.cleanup();
    }
  });
}
